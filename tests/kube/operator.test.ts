// The operator against a real kube-apiserver and real Gantry services: Webhooks converge (status,
// Secret, registration, finalizer), invalid resources are refused by the API server, an outage of
// the webhooks service heals by itself, two operators elect one leader that a standby replaces
// when it is killed, and ten such kills under a load of writes lose none of them (issue 20). The
// CRDs are cluster-wide, so every test that needs them lives in this file (node:test runs files in
// parallel, the tests of one file in order).
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { bearerMetadata, clientCredentials, clientOptions, devPkiPaths, FlagsClient, unary, type ClientTls } from '@gantry/kit';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { FEATURE_FLAGS, type Operator } from '@gantry/operator';
import { settlementv1, webhooksv1 } from '@gantry/proto';
import { settlementService } from '@gantry/settlement';
import { SettlementWallet } from '@gantry/settlement/client';
import { webhooksService } from '@gantry/webhooks';
import { verifyWebhook } from '@gantry/webhooks/client';
import { eventually, grpcError, tokenFor } from '@gantry/test-support/clients';
import { freshPostgresDatabase, postgresSkip } from '@gantry/test-support/databases';
import { Receiver } from '../platform/support.js';
import { ok, testKube, type TestKube } from '../support/kube.js';
import { KILLS, spread } from '../faults/support.js';
import { CustomResourceLoad, type ServiceView } from './operator-load.js';
import { condition, customObjects, deleteCrds, getObject, installCrds, LEASE, operatorInProcess, OperatorReplicas, Services, type Conditioned, type OperatorSettings } from './operator-support.js';

const WAIT_MS = 30_000;
/** What a handover bound allows beyond the lease duration on a busy shared 2-core machine (a retry period, API calls, a reconcile). */
const SLOW_MACHINE_MS = 2000;
/** The kill test's load: Webhook and FeatureFlag names, writers, and the writes each leader sees before its kill. */
const KILL_LOAD = { webhooks: 10, flags: 6, workers: 3, pauseMs: 50, writesPerLeader: 15 };

interface WebhookObject extends Conditioned {
  spec: { url: string; paused?: boolean };
  status?: Conditioned['status'] & { webhookId?: string; secretName?: string };
}

interface SecretObject {
  metadata: { uid: string; ownerReferences?: { uid: string; kind: string; controller?: boolean }[] };
  data?: Record<string, string>;
}

const webhookManifest = (ns: string, name: string, spec: object) => JSON.stringify({ apiVersion: 'gantry.dev/v1alpha1', kind: 'Webhook', metadata: { name, namespace: ns }, spec });

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = WAIT_MS): Promise<T> {
  let last: T | undefined | false;
  const done = await eventually(async () => Boolean((last = await probe())), timeoutMs, 100);
  assert.ok(done, `timed out after ${timeoutMs} ms waiting for ${what}`);
  return last as T;
}

describe('the operator on a real API server', () => {
  let k: TestKube;
  let skip: string | undefined;
  const receiver = new Receiver();
  let webhooks: Services;
  let client: webhooksv1.WebhooksServiceClient;
  let tls: ClientTls;
  const operators: Operator[] = [];

  before(async () => {
    const kube = await testKube();
    if (typeof kube === 'string') {
      skip = kube;
      return;
    }
    k = kube;
    await deleteCrds(k); // left by an interrupted run
    await installCrds(k);
    await receiver.start();
    webhooks = new Services([webhooksService], { webhooks: { allowedCidrs: ['127.0.0.1/32'], pollIntervalMs: 50 } });
    await webhooks.start();
    const pki = devPkiPaths(`${webhooks.dataDir}/pki`);
    tls = { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile, serverName: 'localhost' };
    client = new webhooksv1.WebhooksServiceClient(webhooks.address, clientCredentials(tls), clientOptions(tls));
  });
  after(async () => {
    for (const o of operators) await o.stop();
    client?.close();
    await webhooks?.close();
    await receiver.stop();
    if (k) await deleteCrds(k);
  });

  const admin = () => bearerMetadata(tokenFor(webhooks.dataDir, 'platform-admin', ['webhooks.read', 'webhooks.manage', 'webhooks.admin']));
  const remote = (id: string) => unary(client.getWebhook, client, { webhookId: id }, admin());
  const startOperator = async (namespace: string, extra: { resyncMs?: number; peers?: OperatorSettings['peers'] } = {}) => {
    const op = await operatorInProcess(k, { namespace, dataDir: webhooks.dataDir, leaseName: `op-${namespace}`, ...extra, peers: { webhooks: webhooks.address, ...extra.peers } });
    operators.push(op);
    await until('the operator to lead', async () => op.isLeader);
    return op;
  };

  test('invalid Webhooks and FeatureFlags are refused by the API server (schema and CEL rules) and nothing is stored', async (t) => {
    if (skip) return t.skip(skip);
    const ns = await k.namespace(t, 'crds');
    const refused = await k.kubectl(['create', '-f', '-'], webhookManifest(ns, 'bad', { url: 'ftp://hooks.example.com/orders', eventTypes: ['*'] }));
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /url must be an http\(s\) URL/);
    const flag = (spec: object) => JSON.stringify({ apiVersion: 'gantry.dev/v1alpha1', kind: 'FeatureFlag', metadata: { name: 'draws', namespace: ns }, spec });
    const valid = { state: 'ENABLED', type: 'boolean', variants: { on: true, off: false }, defaultVariant: 'on', targets: ['settlement'], targeting: { fractional: [['on', 50], ['off', 50]] } };
    for (const [bad, pattern] of [
      [{ ...valid, state: 'ON' }, /spec\.state: Unsupported value: "ON"/],
      [{ ...valid, targets: ['billing'] }, /spec\.targets\[0\]: Unsupported value: "billing"/],
      [{ ...valid, targets: [] }, /spec\.targets: Invalid value: .*should have at least 1 items/],
      [{ ...valid, variants: {} }, /spec\.variants: Invalid value: .*should have at least 1 properties/],
    ] as const) {
      const r = await k.kubectl(['create', '-f', '-'], flag(bad));
      assert.notEqual(r.code, 0, `accepted ${JSON.stringify(bad)}`);
      assert.match(r.stderr, pattern);
    }
    assert.equal(ok(await k.kubectl(['get', 'webhooks,featureflags', '--namespace', ns, '-o', 'name']), 'kubectl get').trim(), '');
    ok(await k.kubectl(['create', '-f', '-'], flag(valid)), 'a valid FeatureFlag is stored');
    assert.match(ok(await k.kubectl(['get', 'ff', 'draws', '--namespace', ns, '-o', 'jsonpath={.spec.variants.off}']), 'kubectl get ff'), /false/);
  });

  test('a Webhook converges: registered once under its uid, its signing secret in a Secret it owns, Ready and Synced for its generation; edits and drift are corrected; deletion deregisters and releases the finalizer', async (t) => {
    if (skip) return t.skip(skip);
    const ns = await k.namespace(t, 'op-webhook');
    await startOperator(ns, { resyncMs: 1500 });
    ok(await k.kubectl(['create', '-f', '-'], webhookManifest(ns, 'orders', { url: receiver.url, eventTypes: ['orders.created'], headers: { 'X-Team': 'payments' }, description: 'orders feed' })), 'create Webhook');

    const ready = await until('Webhook orders Ready', async () => {
      const wh = await getObject<WebhookObject>(k, 'webhook', 'orders', ns);
      return condition(wh, 'Ready')?.status === 'True' && condition(wh, 'Synced')?.status === 'True' ? wh : undefined;
    });
    assert.deepEqual(ready.metadata.finalizers, ['gantry.dev/cleanup']);
    assert.equal(ready.status!.observedGeneration, 1);
    const id = ready.status!.webhookId!;
    const registered = (await remote(id)).webhook!;
    assert.equal(registered.externalId, `k8s:${ready.metadata.uid}`);
    assert.equal(registered.spec!.url, receiver.url);
    // Header values are write-only in the service: it shows the names.
    assert.deepEqual(registered.headerNames, ['x-team']);
    assert.deepEqual(registered.spec!.labels, { 'k8s.namespace': ns, 'k8s.name': 'orders' });

    // The Secret is owned by the Webhook and holds the secret deliveries are signed with.
    const secret = (await getObject<SecretObject>(k, 'secret', 'orders-webhook', ns))!;
    assert.equal(ready.status!.secretName, 'orders-webhook');
    assert.deepEqual(secret.metadata.ownerReferences?.map((o) => [o.kind, o.uid, o.controller]), [['Webhook', ready.metadata.uid, true]]);
    const signingSecret = Buffer.from(secret.data!.secret!, 'base64').toString();
    // As the operator, the endpoint's owner: its workload certificate and no token.
    const pki = devPkiPaths(`${webhooks.dataDir}/pki`);
    const operatorTls = { caFile: pki.caFile, certFile: pki.operatorCertFile, keyFile: pki.operatorKeyFile, serverName: 'localhost' };
    const asOperator = new webhooksv1.WebhooksServiceClient(webhooks.address, clientCredentials(operatorTls), clientOptions(operatorTls));
    t.after(() => asOperator.close());
    await unary(asOperator.triggerWebhook, asOperator, { webhookId: id, eventType: 'orders.created', payload: Buffer.from('{"order":1}') }, bearerMetadata(undefined));
    await until('the test delivery', async () => receiver.requests.length > 0);
    const delivery = receiver.requests.at(-1)!;
    assert.doesNotThrow(() => verifyWebhook(delivery.headers, delivery.body, signingSecret), 'the delivery verifies with the Secret');

    // An edit: the registration follows, and status names the new generation.
    ok(await k.kubectl(['patch', 'webhook', 'orders', '--namespace', ns, '--type=merge', '-p', JSON.stringify({ spec: { paused: true, description: 'paused for maintenance' } })]), 'patch Webhook');
    await until('the edit to reach the webhooks service', async () => {
      const w = (await remote(id)).webhook!;
      const wh = await getObject<WebhookObject>(k, 'webhook', 'orders', ns);
      return w.spec!.paused && w.spec!.description === 'paused for maintenance' && wh!.status!.observedGeneration === 2 && condition(wh, 'Ready')?.reason === 'Paused';
    });

    // Drift: a change made behind the operator's back is undone on resync.
    await unary(client.updateWebhook, client, { webhookId: id, spec: { ...registered.spec!, url: 'https://elsewhere.example.com/x', paused: true, description: 'paused for maintenance' }, updateMask: ['url'], reenable: false }, admin());
    await until('the drifted URL to be corrected', async () => (await remote(id)).webhook!.spec!.url === receiver.url);

    // A deleted Secret comes back with a rotated secret (the old one cannot be read back).
    ok(await k.kubectl(['delete', 'secret', 'orders-webhook', '--namespace', ns]), 'delete Secret');
    const rewritten = await until('the Secret to be written again', async () => {
      const s = await getObject<SecretObject>(k, 'secret', 'orders-webhook', ns);
      return s?.data?.secret ? s : undefined;
    });
    assert.notEqual(Buffer.from(rewritten.data!.secret!, 'base64').toString(), signingSecret, 'a new secret after rotation');

    // Deletion: deregistered, Secret gone, finalizer released so the object disappears.
    ok(await k.kubectl(['delete', 'webhook', 'orders', '--namespace', ns, '--wait=false']), 'delete Webhook');
    await until('the Webhook to be gone', async () => (await getObject(k, 'webhook', 'orders', ns)) === undefined);
    assert.equal((await grpcError(remote(id))).code, GrpcStatus.NOT_FOUND);
    assert.equal(await getObject(k, 'secret', 'orders-webhook', ns), undefined);
  });

  test('with the webhooks service down a Webhook says WebhooksUnavailable, and converges by itself once the service is back', async (t) => {
    if (skip) return t.skip(skip);
    const ns = await k.namespace(t, 'op-outage');
    await startOperator(ns);
    await webhooks.stop();
    try {
      ok(await k.kubectl(['create', '-f', '-'], webhookManifest(ns, 'late', { url: receiver.url, eventTypes: ['*'] })), 'create Webhook');
      const waiting = await until('Synced=False WebhooksUnavailable', async () => {
        const wh = await getObject<WebhookObject>(k, 'webhook', 'late', ns);
        return condition(wh, 'Synced')?.reason === 'WebhooksUnavailable' ? wh : undefined;
      });
      assert.equal(condition(waiting, 'Ready')?.status, 'False');
      assert.match(condition(waiting, 'Synced')!.message, /cannot be reached.*retrying/);
    } finally {
      await webhooks.start();
    }
    const ready = await until('Ready after the outage', async () => {
      const wh = await getObject<WebhookObject>(k, 'webhook', 'late', ns);
      return condition(wh, 'Ready')?.status === 'True' ? wh : undefined;
    });
    assert.equal((await remote(ready.status!.webhookId!)).webhook!.externalId, `k8s:${ready.metadata.uid}`);

    // This operator resyncs once a minute: a Secret put back within seconds was woken by the
    // watch on the Secrets it owns, mapped to their Webhook.
    ok(await k.kubectl(['delete', 'secret', 'late-webhook', '--namespace', ns]), 'delete Secret');
    const deletedAt = Date.now();
    await until('the owned Secret to be written again', async () => Boolean((await getObject<SecretObject>(k, 'secret', 'late-webhook', ns))?.data?.secret), 10_000);
    t.diagnostic(`owned Secret re-created ${Date.now() - deletedAt} ms after its deletion (resync: 60 s)`);
  });

  test('two operators elect one leader; killing the leader with SIGKILL hands over within the lease duration, and the new leader reconciles', async (t) => {
    if (skip) return t.skip(skip);
    const ns = await k.namespace(t, 'op-lease');
    const replicas = await OperatorReplicas.create(k, { namespace: ns, dataDir: webhooks.dataDir, peers: { webhooks: webhooks.address }, leaseName: 'gantry-operator' });
    t.after(() => replicas.close());
    replicas.start('op-a');
    replicas.start('op-b');
    const first = await until('a leader', () => replicas.holder());
    assert.ok(first === 'op-a' || first === 'op-b', `holder ${first}`);
    const standby = first === 'op-a' ? 'op-b' : 'op-a';
    ok(await k.kubectl(['create', '-f', '-'], webhookManifest(ns, 'first', { url: receiver.url, eventTypes: ['*'] })), 'create Webhook');
    await until('the leader to reconcile', async () => condition(await getObject<WebhookObject>(k, 'webhook', 'first', ns), 'Ready')?.status === 'True');

    const killedAt = Date.now();
    await replicas.kill(first);
    await until('the standby to take the lease', async () => (await replicas.holder()) === standby, 10_000);
    const handoverMs = Date.now() - killedAt;
    t.diagnostic(`handover after SIGKILL: ${handoverMs} ms (lease duration ${LEASE.durationMs} ms)`);
    assert.ok(handoverMs < LEASE.durationMs + SLOW_MACHINE_MS, `handover took ${handoverMs} ms`);
    ok(await k.kubectl(['create', '-f', '-'], webhookManifest(ns, 'second', { url: receiver.url, eventTypes: ['*'] })), 'create Webhook');
    await until('the new leader to reconcile', async () => condition(await getObject<WebhookObject>(k, 'webhook', 'second', ns), 'Ready')?.status === 'True');

    // A graceful stop releases the lease at once (nobody else is left to take it).
    const survivor = replicas.byIdentity.get(standby)!;
    survivor.child.kill('SIGTERM');
    assert.equal(await survivor.exited, 0, survivor.logs.join(''));
    assert.ok(!(await replicas.holder()), 'the lease was released');
  });

  test('the leading operator SIGKILLed ten times under Webhook and FeatureFlag writes: each time a standby takes the Lease once it runs out and resumes reconciling within the lease duration, and afterwards every acknowledged write is in the webhooks service once, with status for its generation', async (t) => {
    if (skip) return t.skip(skip);
    const ns = await k.namespace(t, 'op-kill');
    const replicas = await OperatorReplicas.create(k, { namespace: ns, dataDir: webhooks.dataDir, peers: { webhooks: webhooks.address }, leaseName: 'gantry-operator' }, { bundled: true });
    t.after(() => replicas.close());
    const api = customObjects(k);
    const flags = new FlagsClient(webhooks.address, clientCredentials(tls), clientOptions(tls), () => bearerMetadata(tokenFor(webhooks.dataDir, 'sre', ['flags.read'])));
    t.after(() => flags.close());
    const load = new CustomResourceLoad(k, api, ns, { webhooks: KILL_LOAD.webhooks, flags: KILL_LOAD.flags, webhookUrl: receiver.url, pauseMs: KILL_LOAD.pauseMs });

    // The probe: a FeatureFlag changed right after each kill; its status for the new generation
    // says when reconciling resumed under the next leader.
    const probe = { group: FEATURE_FLAGS.group, version: FEATURE_FLAGS.version, plural: FEATURE_FLAGS.plural, namespace: ns };
    const probeSpec = (on: boolean) => ({ state: 'ENABLED', type: 'boolean', variants: { on: true, off: false }, defaultVariant: on ? 'on' : 'off', targets: ['webhooks'] });
    await api.createNamespacedCustomObject({ ...probe, body: { apiVersion: `${FEATURE_FLAGS.group}/${FEATURE_FLAGS.version}`, kind: FEATURE_FLAGS.kind, metadata: { name: 'probe' }, spec: probeSpec(false) } });
    const probeSynced = async (generation: number) => {
      const o = (await api.getNamespacedCustomObject({ ...probe, name: 'probe' })) as Conditioned;
      return o.metadata.generation === generation && condition(o, 'Synced')?.status === 'True';
    };
    const toggleProbe = async (on: boolean) => {
      const o = (await api.patchNamespacedCustomObject({ ...probe, name: 'probe', body: { spec: probeSpec(on) } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))) as Conditioned;
      return o.metadata.generation;
    };

    let started = 0;
    const startReplica = () => {
      const id = `op-${started++}`;
      replicas.start(id);
      return id;
    };
    const [a, b] = [startReplica(), startReplica()];
    let leader = await until('a leader', () => replicas.holder(), 60_000);
    let standby = leader === a ? b : a;
    await until(`${standby} to see ${leader} lead`, async () => replicas.observes(standby, leader), 60_000);
    await until('the probe to be synced', () => probeSynced(1));

    let stopping = false;
    const workers = load.run(KILL_LOAD.workers, () => stopping);
    const handoverMs: number[] = [];
    const resumedMs: number[] = [];
    const standbyReadyMs: number[] = [];
    const steadyMs: number[] = [];
    let writes = load.writes;
    try {
      for (let kill = 1; kill <= KILLS; kill++) {
        // Let the load run on this leader for a while (since it took over), then kill it mid-reconcile.
        await until(`${KILL_LOAD.writesPerLeader} writes under ${leader}`, async () => load.writes >= writes + KILL_LOAD.writesPerLeader, 60_000);
        // The probe's round trip under this leader: what a reconcile takes on this machine now.
        const changedAt = performance.now();
        const steady = await toggleProbe(kill % 2 === 0);
        await until(`the probe to be reconciled at generation ${steady} under ${leader}`, () => probeSynced(steady), 15_000);
        steadyMs.push(performance.now() - changedAt);
        assert.equal(await replicas.holder(), leader, `kill ${kill}: the Lease moved without a kill`);
        const killedAt = performance.now();
        await replicas.kill(leader);
        const generation = await toggleProbe(kill % 2 === 1);
        await until(`kill ${kill}: ${standby} to take the Lease`, async () => (await replicas.holder()) === standby, 15_000);
        const takenAt = performance.now();
        writes = load.writes;
        await until(`kill ${kill}: the probe to be reconciled at generation ${generation}`, () => probeSynced(generation), 15_000);
        handoverMs.push(takenAt - killedAt);
        resumedMs.push(performance.now() - takenAt);
        // The killed replica comes back under a name of its own, as a Deployment's new pod would. It
        // starts once the handover is measured: its start-up takes a core of this 2-core machine.
        leader = standby;
        standby = startReplica();
        await until(`${standby} to see ${leader} lead`, async () => replicas.observes(standby, leader), 60_000);
        standbyReadyMs.push(performance.now() - killedAt);
      }
      await until('the load to run on the last leader', async () => load.writes >= writes + KILL_LOAD.writesPerLeader, 60_000);
    } finally {
      stopping = true;
      await Promise.all(workers);
    }
    t.diagnostic(
      `${KILLS} kills: the Lease taken ${spread(handoverMs)} after the kill (lease duration ${LEASE.durationMs} ms, retry period ${LEASE.retryPeriodMs} ms, polled every 100 ms); ` +
        `the probe changed at the kill reconciled ${spread(resumedMs)} after that (a change under a steady leader: ${spread(steadyMs)}); the replacement a standby ${spread(standbyReadyMs)} after the kill`,
    );
    // The standby cannot take the Lease before the renewal it last saw has run out (the lease
    // duration, give or take a retry period); from then on, reconciling resumes within the lease
    // duration. Both bounds allow SLOW_MACHINE_MS, as the single handover above does.
    for (const [i, ms] of handoverMs.entries()) assert.ok(ms < LEASE.durationMs + SLOW_MACHINE_MS, `kill ${i + 1}: the Lease was taken ${Math.round(ms)} ms after it`);
    for (const [i, ms] of resumedMs.entries()) assert.ok(ms < LEASE.durationMs + SLOW_MACHINE_MS, `kill ${i + 1}: reconciling resumed ${Math.round(ms)} ms after the Lease was taken`);

    const view: ServiceView = {
      registrations: async () => {
        const all: webhooksv1.Webhook[] = [];
        let pageToken = '';
        do {
          const page = await unary(client.listWebhooks, client, { owner: '', status: webhooksv1.WebhookStatus.WEBHOOK_STATUS_UNSPECIFIED, externalId: '', pageSize: 500, pageToken }, admin());
          all.push(...page.webhooks);
          pageToken = page.nextPageToken;
        } while (pageToken);
        return all;
      },
      flags: async () => (await flags.list()).flags,
    };
    const stoppedAt = performance.now();
    let problems: string[] = [];
    const converged = await eventually(async () => (problems = await load.divergences(view)).length === 0, 60_000, 250);
    assert.ok(converged, `60 s after the load stopped, the operator has not converged:\n${problems.join('\n')}\n${replicas.logs().slice(-30_000)}`);
    const live = (kind: 'webhook' | 'flag') => [...load.acked[kind].values()].filter((x) => x !== 'deleted').length;
    t.diagnostic(
      `load: ${load.counts.creates} creates, ${load.counts.updates} updates, ${load.counts.deletes} deletes acknowledged (${load.counts.refused} creates refused while the name was terminating); ` +
        `converged ${Math.round(performance.now() - stoppedAt)} ms after the load stopped: ${live('webhook')} Webhooks registered once each, ${live('flag')} FeatureFlags served, the deleted ones gone`,
    );
    assert.ok(load.counts.deletes > 0 && load.counts.updates > 0, 'the load deleted and updated');
    assert.equal(await replicas.holder(), leader, 'the last leader still leads');
  });

  test('a FeatureFlag the schema accepts but flagd would not (defaultVariant not a variant, a variant of the wrong type) is reported InvalidSpec and written nowhere; fixing it syncs it', async (t) => {
    if (skip) return t.skip(skip);
    const ns = await k.namespace(t, 'op-badflag');
    await startOperator(ns);
    const reader = new FlagsClient(webhooks.address, clientCredentials(tls), clientOptions(tls), () => bearerMetadata(tokenFor(webhooks.dataDir, 'sre', ['flags.read'])));
    t.after(() => reader.close());
    const manifest = (spec: object) => JSON.stringify({ apiVersion: 'gantry.dev/v1alpha1', kind: 'FeatureFlag', metadata: { name: 'webhooks.delivery.paused', namespace: ns }, spec });
    const base = { state: 'ENABLED', type: 'boolean', variants: { on: true, off: false }, targets: ['webhooks'] };
    ok(await k.kubectl(['create', '-f', '-'], manifest({ ...base, defaultVariant: 'maybe' })), 'create FeatureFlag');
    const invalidSynced = async (pattern: RegExp) => {
      const ff = await getObject<Conditioned>(k, 'featureflag', 'webhooks.delivery.paused', ns);
      const c = condition(ff, 'Synced');
      return c?.reason === 'InvalidSpec' && pattern.test(c.message);
    };
    await until('InvalidSpec for the default variant', () => invalidSynced(/default_variant|defaultVariant/));
    ok(await k.kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], manifest({ ...base, variants: { on: true, off: 'no' }, defaultVariant: 'off' })), 'apply FeatureFlag');
    await until('InvalidSpec for the variant type', () => invalidSynced(/variants\.off/));
    assert.equal((await grpcError(reader.get('webhooks.delivery.paused'))).code, GrpcStatus.NOT_FOUND, 'nothing was written');
    ok(await k.kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], manifest({ ...base, defaultVariant: 'off' })), 'fix FeatureFlag');
    await until('Synced after the fix', async () => condition(await getObject<Conditioned>(k, 'featureflag', 'webhooks.delivery.paused', ns), 'Synced')?.status === 'True');
    assert.equal((await reader.get('webhooks.delivery.paused')).defaultVariant, 'off');
    ok(await k.kubectl(['delete', 'featureflag', 'webhooks.delivery.paused', '--namespace', ns, '--wait=false']), 'delete FeatureFlag');
    await until('the flag to be removed', () => reader.get('webhooks.delivery.paused').then(() => false, (err: { code: number }) => err.code === GrpcStatus.NOT_FOUND));
  });

  test('a FeatureFlag reaches every target service; a change reaches both settlement replicas and switches credit draws off and on within 1 s; deleting it removes the flag everywhere', async (t) => {
    if (skip) return t.skip(skip);
    const noPostgres = postgresSkip();
    if (noPostgres) return t.skip(noPostgres);
    // Two settlement replicas on one PostgreSQL database; the operator knows only the first.
    const db = await freshPostgresDatabase('t_opflags');
    const replicas = [0, 1].map(() => new Services([settlementService], { database: { url: db.url, poolSize: 4 } }, webhooks.dataDir));
    t.after(async () => {
      for (const r of replicas) await r.close();
      await db.drop();
    });
    for (const r of replicas) await r.start();
    const ns = await k.namespace(t, 'op-flags');
    await startOperator(ns, { peers: { settlement: replicas[0]!.address } });

    const md = (subject: string, scopes: string[]) => bearerMetadata(tokenFor(webhooks.dataDir, subject, scopes));
    const clients = replicas.map((r) => new settlementv1.SettlementServiceClient(r.address, clientCredentials(tls), clientOptions(tls)));
    const flagReaders = [webhooks, replicas[0]!].map((s) => new FlagsClient(s.address, clientCredentials(tls), clientOptions(tls), () => md('sre', ['flags.read'])));
    t.after(() => [...clients, ...flagReaders].forEach((c) => c.close()));
    const wallet = SettlementWallet.generate();
    const credit = md('casino-l2', ['settlement.credit']);
    await unary(clients[0]!.deposit, clients[0]!, { walletAddress: wallet.address, amountMinor: 1_000_000n, transferId: `t-${wallet.address}`, memo: '' }, md('treasury', ['settlement.admin']));
    const { sessionId } = await unary(clients[0]!.approveCreditLine, clients[0]!, wallet.approve(500_000n), credit);
    /** 'drawn' or the gRPC status code of the refusal. */
    const draw = (c: settlementv1.SettlementServiceClient) =>
      unary(c.creditDraw, c, wallet.draw(sessionId, 1n, 'spin'), credit).then(
        () => 'drawn' as const,
        (err: { code: number }) => err.code,
      );
    /** Milliseconds until every replica's draws give `outcome`, polled every 20 ms each. */
    const untilEveryReplica = (outcome: 'drawn' | number) =>
      Promise.all(
        clients.map(async (c) => {
          const start = Date.now();
          while ((await draw(c)) !== outcome) {
            assert.ok(Date.now() - start < 10_000, `a replica still does not answer ${outcome} after 10 s`);
            await new Promise((r) => setTimeout(r, 20));
          }
          return Date.now() - start;
        }),
      );

    const manifest = { apiVersion: 'gantry.dev/v1alpha1', kind: 'FeatureFlag', metadata: { name: 'draws', namespace: ns }, spec: { key: 'settlement.draws.disabled', state: 'ENABLED', type: 'boolean', variants: { on: true, off: false }, defaultVariant: 'off', targets: ['settlement', 'webhooks'] } };
    ok(await k.kubectl(['create', '-f', '-'], JSON.stringify(manifest)), 'create FeatureFlag');
    const synced = await until('FeatureFlag Synced', async () => {
      const ff = await getObject<Conditioned & { status?: { services?: { name: string; synced: boolean; version?: string }[] } }>(k, 'featureflag', 'draws', ns);
      return condition(ff, 'Synced')?.status === 'True' ? ff : undefined;
    });
    assert.deepEqual(synced.status!.services!.map((s) => [s.name, s.synced]), [['settlement', true], ['webhooks', true]]);
    for (const reader of flagReaders) {
      const flag = await reader.get('settlement.draws.disabled');
      assert.equal(flag.source, `operator:${ns}/draws`);
      assert.equal(flag.defaultVariant, 'off');
    }
    for (const c of clients) assert.equal(await draw(c), 'drawn', 'draws work while the flag is off');

    ok(await k.kubectl(['patch', 'featureflag', 'draws', '--namespace', ns, '--type=merge', '-p', '{"spec":{"defaultVariant":"on"}}']), 'turn the kill switch on');
    const off = await untilEveryReplica(GrpcStatus.FAILED_PRECONDITION);
    t.diagnostic(`kill switch on: each replica refused draws ${off.join(' ms, ')} ms after the FeatureFlag changed`);
    for (const ms of off) assert.ok(ms < 1000, `a replica took ${ms} ms`);

    ok(await k.kubectl(['patch', 'featureflag', 'draws', '--namespace', ns, '--type=merge', '-p', '{"spec":{"defaultVariant":"off"}}']), 'turn the kill switch off');
    const on = await untilEveryReplica('drawn');
    t.diagnostic(`kill switch off: each replica drew again ${on.join(' ms, ')} ms after the FeatureFlag changed`);
    for (const ms of on) assert.ok(ms < 1000, `a replica took ${ms} ms`);

    ok(await k.kubectl(['delete', 'featureflag', 'draws', '--namespace', ns, '--wait=false']), 'delete FeatureFlag');
    await until('the FeatureFlag to be gone', async () => (await getObject(k, 'featureflag', 'draws', ns)) === undefined);
    for (const reader of flagReaders) assert.equal((await grpcError(reader.get('settlement.draws.disabled'))).code, GrpcStatus.NOT_FOUND);
  });
});
