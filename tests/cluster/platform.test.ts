import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { status, type ServiceError } from '@grpc/grpc-js';
import { bearerMetadata, streamOf, unary } from '@gantry/kit';
import { eventsv1, logv1, settlementv1 } from '@gantry/proto';
import { SettlementWallet } from '@gantry/settlement/client';
import { repoRoot } from '../support/gantry-process.js';
import { ok, run } from '../support/kube.js';
import {
  Cleanup,
  clientMaterial,
  exclusive,
  hostClient,
  installRelease,
  pods,
  startDriverPod,
  testCluster,
  waitFor,
  type ClientMaterial,
  type DriverPod,
  type Release,
  type TestCluster,
} from './support.js';

// The chart installed with its default values (microservices, each target two replicas, the
// operator two replicas, on a PostgreSQL StatefulSet) into the real single-node cluster of
// scripts/test-env/cluster.sh, and used the way a platform team would: in-cluster clients through
// the Services' DNS names, custom resources through the operator, then an outage, an upgrade and
// forced pod deletions under load, each checked against what the clients were told.

const cluster = await testCluster();
const skip = typeof cluster === 'string' ? cluster : false;
/** Every pod Ready within this bound after `helm install` (measured: about 30 s). */
const READY_BOUND_MS = 150_000;
const TARGETS = ['log', 'settlement', 'approvals', 'webhooks'] as const;
const SETTLEMENT_EVENTS = ['settlement.credit_line.approved', 'settlement.credit.drawn', 'settlement.credit_line.settled'];

describe('the chart on a real cluster: default values (microservices on PostgreSQL)', { skip }, () => {
  const c = cluster as TestCluster;
  let r: Release;
  let m: ClientMaterial;
  let driver: DriverPod;

  const cleanup = new Cleanup();
  after(() => cleanup.run());

  before(async () => {
    await exclusive(cleanup);
    r = await installRelease(c, cleanup, 'microservices');
    m = await clientMaterial(c, r);
    driver = await startDriverPod(c, r.namespace, 'driver', { clientSecret: m.secretName });
  });

  const dns = (target: string) => `dns:///${r.name}-${target}-headless.${r.namespace}.svc.cluster.local:7443`;
  const tokens = () => ({
    admin: m.token('treasury', ['settlement.admin']),
    credit: m.token('casino-l2', ['settlement.credit']),
    log: m.token('cluster-load', ['log.append', 'log.read']),
  });

  test(`every pod is Ready within ${READY_BOUND_MS / 1000} s of helm install, none restarted, and helm test passes`, { timeout: 180_000 }, async (t) => {
    t.diagnostic(`helm install --wait: every pod Ready after ${r.readyMs} ms`);
    assert.ok(r.readyMs < READY_BOUND_MS, `all Ready after ${r.readyMs} ms`);
    const list = (await pods(c, r.namespace)).filter((p) => !['gantry-postgres', 'driver', 'keys'].includes(p.component));
    assert.deepEqual(list.map((p) => p.component).sort(), ['approvals', 'approvals', 'gateway', 'gateway', 'log', 'log', 'operator', 'operator', 'settlement', 'settlement', 'webhooks', 'webhooks']);
    for (const p of list) {
      assert.ok(p.ready, `${p.name} Ready`);
      assert.equal(p.restarts, 0, `${p.name} restarts`);
    }
    const tested = await c.helm(['test', r.name, '--namespace', r.namespace, '--timeout', '3m'], 200_000);
    assert.equal(tested.code, 0, `helm test:\n${tested.stdout}${tested.stderr}`);
    assert.equal((tested.stdout.match(/Phase:\s+Succeeded/g) ?? []).length, TARGETS.length, tested.stdout);
  });

  test('no running pod holds a key that can mint tokens: none mounts the dev issuer key, none has one in its data dir, and the relays call as their workloads', { timeout: 120_000 }, async () => {
    const specs = JSON.parse(ok(await c.kubectl(['get', 'pods', '--namespace', r.namespace, '-l', `app.kubernetes.io/instance=${r.name}`, '-o', 'json']), 'kubectl get pods')) as { items: { metadata: { name: string; labels: Record<string, string> }; spec: { volumes?: { secret?: { secretName: string } }[] } }[] };
    const gantryPods = specs.items.filter((p) => p.metadata.labels['app.kubernetes.io/component'] !== 'keys');
    assert.ok(gantryPods.length >= 10);
    for (const p of gantryPods) {
      const mounted = (p.spec.volumes ?? []).flatMap((v) => (v.secret ? [v.secret.secretName] : []));
      assert.ok(!mounted.includes(`${r.name}-dev-jwt`), `${p.metadata.name} does not mount the dev issuer's private key`);
      const jwtDir = await c.kubectl(['exec', '--namespace', r.namespace, p.metadata.name, '-c', 'gantry', '--', 'ls', '/var/lib/gantry/jwt']);
      assert.notEqual(jwtDir.code, 0, `${p.metadata.name} has no JWT key directory: ${jwtDir.stdout}`);
    }
  });

  test('in the cluster: draws from a client Pod reach the audit trail and, through a Webhook the operator reconciles, a receiver Pod that verifies every signature', { timeout: 180_000 }, async (t) => {
    // The receiver's endpoint, declared as a Webhook resource: the operator registers it with its
    // own identity and writes the signing secret into a Secret the receiver mounts.
    const webhook = {
      apiVersion: 'gantry.dev/v1alpha1',
      kind: 'Webhook',
      metadata: { name: 'receiver', namespace: r.tenantNamespace },
      spec: { url: `http://receiver.${r.tenantNamespace}.svc.cluster.local:8080/hooks`, eventTypes: SETTLEMENT_EVENTS },
    };
    ok(await c.kubectl(['apply', '-f', '-'], JSON.stringify(webhook)), 'kubectl apply Webhook');
    const secretName = await waitFor('the Webhook Ready with its Secret', 60_000, async () => {
      const wh = JSON.parse(ok(await c.kubectl(['get', 'webhook', 'receiver', '--namespace', r.tenantNamespace, '-o', 'json']), 'kubectl get webhook')) as {
        status?: { secretName?: string; conditions?: { type: string; status: string }[] };
      };
      return wh.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') ? wh.status.secretName : undefined;
    });
    // The operator acts with its own ServiceAccount: a Role in the tenant namespace, and in the
    // platform's only its Lease and Events (no Secret there), nothing cluster-wide.
    const operatorSa = ok(await c.kubectl(['get', 'deployment', `${r.name}-operator`, '--namespace', r.namespace, '-o', 'jsonpath={.spec.template.spec.serviceAccountName}']), 'kubectl get deployment').trim();
    assert.equal(operatorSa, `${r.name}-operator`);
    const bound = ok(await c.kubectl(['get', 'rolebindings,clusterrolebindings', '-A', '-o', 'json']), 'kubectl get bindings');
    const bindings = (JSON.parse(bound) as { items: { kind: string; metadata: { namespace?: string }; roleRef: { kind: string; name: string }; subjects?: { kind: string; name: string; namespace?: string }[] }[] }).items;
    const granted = bindings.filter((b) => b.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === operatorSa && s.namespace === r.namespace));
    assert.deepEqual(granted.map((b) => `${b.kind}/${b.roleRef.kind} in ${b.metadata.namespace}`).sort(), [`RoleBinding/Role in ${r.namespace}`, `RoleBinding/Role in ${r.tenantNamespace}`].sort(), 'two namespaced Roles and nothing cluster-wide');
    const can = async (verb: string, ns: string) => (await c.kubectl(['auth', 'can-i', verb, 'secrets', '--namespace', ns, `--as=system:serviceaccount:${r.namespace}:${operatorSa}`])).stdout.trim();
    assert.deepEqual([await can('get', r.namespace), await can('list', r.namespace), await can('get', r.tenantNamespace)], ['no', 'no', 'yes'], "the platform's Secrets are out of its reach");
    // The receiver is a plain Pod in the tenant namespace (it mounts the Webhook's Secret there):
    // only the webhooks pods' egress reaches it (no policy selects it).
    const receiver = await startDriverPod(c, r.tenantNamespace, 'receiver', { labels: {}, receiveSecret: secretName });

    const lines = await driver.run('flow', { addresses: { settlement: dns('settlement') }, tokens: tokens(), flow: { draws: 5, drawMinor: 10 } });
    const sessionId = lines.find((l) => l.k === 'approved')!.sessionId as string;
    assert.equal(lines.filter((l) => l.k === 'draw').length, 5, JSON.stringify(lines));
    assert.equal(lines.find((l) => l.k === 'settled')?.outcome, settlementv1.SettlementOutcome.SETTLEMENT_OUTCOME_BREAKEVEN);

    const expected = ['settlement.credit_line.approved', ...Array<string>(5).fill('settlement.credit.drawn'), 'settlement.credit_line.settled'];
    const log = await hostClient(c, m, r.namespace, `${r.name}-log`);
    const logClient = new logv1.LogServiceClient(log.address, log.creds, log.opts);
    t.after(() => logClient.close());
    const auditor = bearerMetadata(m.token('auditor', ['log.read']));
    const audited = await waitFor('the session audited', 60_000, async () => {
      const events: eventsv1.Event[] = [];
      for await (const chunk of streamOf(logClient.read({ partition: 'audit.settlement', startSeq: 0n, limit: 0n }, auditor))) {
        for (const entry of chunk.entries) events.push(eventsv1.Event.decode(entry.data));
      }
      const ours = events.filter((e) => e.subject === sessionId);
      return ours.length >= expected.length ? ours : undefined;
    });
    assert.deepEqual(audited.map((e) => e.type), expected);
    const verified = await unary(logClient.verify, logClient, { partition: 'audit.settlement' }, auditor);
    assert.ok(verified.valid, `audit.settlement verifies: ${verified.reason} (first bad seq ${verified.firstBadSeq})`);

    const stats = await waitFor('every event delivered to the receiver', 60_000, async () => {
      const r2 = await receiver.exec(['node', '-e', "fetch('http://127.0.0.1:8080/stats').then(r=>r.text()).then(t=>process.stdout.write(t))"]);
      const s = JSON.parse(ok(r2, 'receiver stats')) as { valid: number; invalid: number; events: { id: string; type: string }[]; errors: string[] };
      const ids = new Set(s.events.map((e) => e.id));
      return audited.every((e) => ids.has(e.id)) ? s : undefined;
    });
    t.diagnostic(`receiver: ${stats.valid} deliveries verified, ${stats.invalid} refused`);
    assert.equal(stats.invalid, 0, `deliveries whose signature did not verify: ${stats.errors.join('; ')}`);
  });

  test('the HTTP gateway through its Service: /health reports every service SERVING, a token-less call is 401, an append over JSON is read back over gRPC', { timeout: 120_000 }, async (t) => {
    const host = `${r.name}-gateway.${r.namespace}.svc.cluster.local`;
    const token = m.token('gateway-client', ['log.append', 'log.read']);
    // From the client Pod, over HTTPS to the Service, trusting the release CA (as a curl user would).
    const script = `const https=require('https'),fs=require('fs');const ca=fs.readFileSync('/etc/gantry-client/ca.crt');
const call=(method,path,token,body)=>new Promise((resolve,reject)=>{const r=https.request({host:${JSON.stringify(host)},port:443,method,path,ca,headers:{...(token?{authorization:'Bearer '+token}:{}),...(body?{'content-type':'application/json'}:{})}},(m)=>{let d='';m.on('data',(c)=>(d+=c));m.on('end',()=>resolve({status:m.statusCode,body:d}))});r.on('error',reject);r.end(body?JSON.stringify(body):undefined)});
(async()=>{const token=process.argv[1];const out={};
out.health=await call('GET','/health');
out.anonymous=await call('GET','/v1/log/partitions');
out.append=await call('POST','/v1/log/partitions/gateway.cluster/entries',token,{data:Buffer.from('through the gateway').toString('base64')});
console.log(JSON.stringify(out))})().catch((e)=>{console.error(e);process.exit(1)});`;
    type Answer = { status: number; body: string };
    const out = JSON.parse(ok(await driver.exec(['node', '-e', script, token]), 'calls through the gateway')) as Record<'health' | 'anonymous' | 'append', Answer>;
    assert.equal(out.health.status, 200, out.health.body);
    const health = JSON.parse(out.health.body) as { status: string; services: Record<string, { status: string; grpc_status?: string; latency_ms?: number }> };
    assert.equal(health.status, 'healthy');
    for (const target of TARGETS) {
      assert.equal(health.services[target]?.grpc_status, 'SERVING', `${target} through the gateway: ${JSON.stringify(health.services[target])}`);
      assert.equal(typeof health.services[target]?.latency_ms, 'number');
    }
    assert.equal(out.anonymous.status, 401, out.anonymous.body);
    assert.equal((JSON.parse(out.anonymous.body) as { code: number }).code, status.UNAUTHENTICATED);
    assert.equal(out.append.status, 200, out.append.body);
    const receipt = JSON.parse(out.append.body) as { seq: string };
    // The same entry over gRPC, written as the caller (the gateway's own identity is granted nothing).
    const log = await hostClient(c, m, r.namespace, `${r.name}-log`);
    const logClient = new logv1.LogServiceClient(log.address, log.creds, log.opts);
    t.after(() => logClient.close());
    const md = bearerMetadata(m.token('auditor', ['log.read']));
    const entries: logv1.Entry[] = [];
    for await (const chunk of streamOf(logClient.read({ partition: 'gateway.cluster', startSeq: 0n, limit: 0n }, md))) entries.push(...chunk.entries);
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.seq.toString(), receipt.seq);
    assert.equal(Buffer.from(entries[0]!.data).toString(), 'through the gateway');
    assert.equal(entries[0]!.author, 'gateway-client');
  });

  test('a FeatureFlag kill switch stops draws on every settlement replica, and lifting it lets them draw again', { timeout: 120_000 }, async (t) => {
    const s = await hostClient(c, m, r.namespace, `${r.name}-settlement`);
    const viaService = new settlementv1.SettlementServiceClient(s.address, s.creds, s.opts);
    const replicas = (await pods(c, r.namespace)).filter((p) => p.component === 'settlement');
    assert.equal(replicas.length, 2);
    // Each replica called at its own pod IP, so a flag one of them missed would show.
    const direct = replicas.map((p) => new settlementv1.SettlementServiceClient(`${p.ip}:7443`, s.creds, s.opts));
    t.after(() => [viaService, ...direct].forEach((x) => x.close()));
    const { admin, credit } = tokens();
    const wallet = SettlementWallet.generate();
    await unary(viaService.deposit, viaService, { walletAddress: wallet.address, amountMinor: 1_000n, transferId: `ff-${wallet.address}`, memo: '' }, bearerMetadata(admin));
    const { sessionId } = await unary(viaService.approveCreditLine, viaService, wallet.approve(1_000n), bearerMetadata(credit));
    const drawOn = (x: settlementv1.SettlementServiceClient) => unary(x.creditDraw, x, wallet.draw(sessionId, 1n, 'kill switch'), bearerMetadata(credit)).then(() => 'drawn', (err: ServiceError) => err.code);

    const flag = (variant: 'on' | 'off') => ({
      apiVersion: 'gantry.dev/v1alpha1',
      kind: 'FeatureFlag',
      metadata: { name: 'draws', namespace: r.tenantNamespace },
      spec: { key: 'settlement.draws.disabled', state: 'ENABLED', type: 'boolean', variants: { on: true, off: false }, defaultVariant: variant, targets: ['settlement'] },
    });
    ok(await c.kubectl(['apply', '-f', '-'], JSON.stringify(flag('on'))), 'the kill switch on');
    const stoppedAfter = Date.now();
    await waitFor('every replica refusing draws', 30_000, async () => {
      const answers = await Promise.all(direct.map(drawOn));
      return answers.every((a) => a === status.FAILED_PRECONDITION) ? true : undefined;
    });
    t.diagnostic(`draws refused by both replicas ${Date.now() - stoppedAfter} ms after kubectl apply`);
    ok(await c.kubectl(['apply', '-f', '-'], JSON.stringify(flag('off'))), 'the kill switch off');
    await waitFor('every replica drawing again', 30_000, async () => {
      const answers = await Promise.all(direct.map(drawOn));
      return answers.every((a) => a === 'drawn') ? true : undefined;
    });
    ok(await c.kubectl(['delete', 'featureflag', 'draws', '--namespace', r.tenantNamespace]), 'kubectl delete featureflag');
  });

  test('NetworkPolicy: a Pod without the allowed labels cannot connect to any service port, while DNS and the health port still answer it', { timeout: 120_000 }, async () => {
    const stranger = await startDriverPod(c, r.namespace, 'stranger', { labels: {} });
    const targets = (await pods(c, r.namespace)).filter((p) => (TARGETS as readonly string[]).includes(p.component));
    // A TCP connect from inside the Pod: "refused" (kube-router rejects), "open", or a timeout.
    const probe = async (pod: DriverPod, host: string, port: number) => {
      const script = `const s=require('net').connect(${port},'${host}');s.setTimeout(3000);s.on('connect',()=>{console.log('open');s.destroy()});s.on('timeout',()=>{console.log('timeout');s.destroy()});s.on('error',e=>console.log(e.code))`;
      return ok(await pod.exec(['node', '-e', script]), `probe ${host}:${port}`).trim();
    };
    for (const p of targets) {
      assert.equal(await probe(stranger, p.ip, 7443), 'ECONNREFUSED', `${p.name} gRPC from an unlabelled Pod`);
      assert.equal(await probe(stranger, p.ip, 7080), 'open', `${p.name} health port from an unlabelled Pod`);
      assert.equal(await probe(driver, p.ip, 7443), 'open', `${p.name} gRPC from an allowed client`);
    }
    // The declared peers (settlement and approvals call log and webhooks), and only those.
    const inPod = (p: (typeof targets)[number]): DriverPod => ({ name: p.name, exec: (args, input, timeoutMs) => c.kubectl(['exec', '--namespace', r.namespace, p.name, '-c', 'gantry', '-i', '--', ...args], input, timeoutMs) }) as DriverPod;
    const one = (component: string) => targets.find((p) => p.component === component)!;
    for (const [from, to, expected] of [
      ['settlement', 'log', 'open'],
      ['settlement', 'webhooks', 'open'],
      ['approvals', 'log', 'open'],
      ['approvals', 'webhooks', 'open'],
      ['log', 'settlement', 'ECONNREFUSED'],
      ['webhooks', 'approvals', 'ECONNREFUSED'],
    ] as const) {
      assert.equal(await probe(inPod(one(from)), one(to).ip, 7443), expected, `${from} -> ${to}:7443`);
    }
    for (const target of TARGETS) {
      const service = `${r.name}-${target}.${r.namespace}.svc.cluster.local`;
      const resolved = ok(await stranger.exec(['node', '-e', `require('dns').promises.lookup('${service}').then(a=>console.log(a.address))`]), `resolving ${service}`).trim();
      assert.match(resolved, /^10\.96\./, `${service} resolves to its ClusterIP`);
      assert.equal(await probe(stranger, service, 7443), 'ECONNREFUSED', `${service} through its Service from an unlabelled Pod`);
    }
  });


  /** The load driver through the Services: 4 wallets drawing, 2 producers appending to one partition. */
  const startLoad = (partition: string) =>
    driver.load({
      addresses: { settlement: dns('settlement'), log: dns('log') },
      tokens: tokens(),
      load: { drawers: 4, appenders: 2, partition, stopFile: '', retryForMs: 90_000 },
    });

  /**
   * Every write the driver was told succeeded is there: each wallet's draw count is at least its
   * acknowledged draws (at most those plus the ones it gave up on, whose outcome it never learnt),
   * and each acknowledged append is at its sequence number, once. Returns the figures.
   */
  async function verifyWrites(lines: Record<string, unknown>[], partition: string) {
    const s = await hostClient(c, m, r.namespace, `${r.name}-settlement`);
    const settlement = new settlementv1.SettlementServiceClient(s.address, s.creds, s.opts);
    const l = await hostClient(c, m, r.namespace, `${r.name}-log`);
    const log = new logv1.LogServiceClient(l.address, l.creds, l.opts);
    try {
      const reader = bearerMetadata(m.token('auditor', ['settlement.read', 'log.read']));
      const wallets = lines.filter((x) => x.k === 'session').map((x) => x.wallet as string);
      let drawsAcked = 0;
      let drawsFound = 0;
      for (const wallet of wallets) {
        const acked = lines.filter((x) => x.k === 'draw' && x.wallet === wallet).length;
        const unknown = lines.filter((x) => x.k === 'gaveup' && x.wallet === wallet).length;
        const st = await unary(settlement.getCreditStatus, settlement, { walletAddress: wallet }, reader);
        const found = st.creditLine?.drawCount ?? 0;
        assert.ok(found >= acked && found <= acked + unknown, `wallet ${wallet}: ${acked} draws acknowledged, ${unknown} unknown, ${found} booked`);
        drawsAcked += acked;
        drawsFound += found;
      }
      const entries = new Map<bigint, string>();
      for await (const chunk of streamOf(log.read({ partition, startSeq: 0n, limit: 0n }, reader))) {
        for (const e of chunk.entries) entries.set(e.seq, Buffer.from(e.data).toString());
      }
      const appends = lines.filter((x) => x.k === 'append');
      for (const a of appends) assert.equal(entries.get(BigInt(a.seq as string)), `cluster load ${a.key as string}`, `append ${a.key as string} at seq ${a.seq as string}`);
      const payloads = [...entries.values()];
      assert.equal(new Set(payloads).size, payloads.length, 'no entry written twice');
      return { drawsAcked, drawsFound, appendsAcked: appends.length, appendsFound: entries.size, gaveUp: lines.filter((x) => x.k === 'gaveup').length };
    } finally {
      settlement.close();
      log.close();
    }
  }

  /** Failed attempts the driver saw, by gRPC code, and whether it could retry them. */
  const failures = (lines: Record<string, unknown>[]) => {
    const byCode: Record<string, number> = {};
    for (const f of lines.filter((x) => x.k === 'fail')) byCode[`${status[f.code as number]}${f.retried ? ' (retried)' : ''}`] = (byCode[`${status[f.code as number]}${f.retried ? ' (retried)' : ''}`] ?? 0) + 1;
    return byCode;
  };
  const targetPods = async () => (await pods(c, r.namespace)).filter((p) => (TARGETS as readonly string[]).includes(p.component));
  /** Waits until all 8 target pods are Ready; how long after `since` that was. */
  const allTargetsReady = (what: string, since: number) =>
    waitFor(what, 120_000, async () => {
      const list = await targetPods();
      return list.length === 8 && list.every((p) => p.ready) ? Date.now() - since : undefined;
    }, 500);
  /** The only failed attempts allowed: unavailability, retried with the same request. */
  const assertOnlyRetried = (failed: Record<string, number>) => {
    for (const code of Object.keys(failed)) assert.match(code, /^(UNAVAILABLE|DEADLINE_EXCEEDED) \(retried\)$/, `only retried unavailability: ${JSON.stringify(failed)}`);
  };

  test('PostgreSQL stopped for 30 s: every target goes NotReady, none restarts, all are Ready again after, and no acknowledged write is lost', { timeout: 240_000 }, async (t) => {
    const before = new Map((await targetPods()).map((p) => [p.name, p.restarts]));
    const load = await startLoad('cluster.outage');
    await sleep(3_000);
    ok(await c.kubectl(['scale', 'statefulset', 'gantry-postgres', '--namespace', r.namespace, '--replicas=0']), 'stopping PostgreSQL');
    const stopped = Date.now();
    const notReadyMs = await waitFor('every target NotReady', 60_000, async () => ((await targetPods()).every((p) => !p.ready) ? Date.now() - stopped : undefined), 500);
    await sleep(Math.max(0, 30_000 - (Date.now() - stopped)));
    ok(await c.kubectl(['scale', 'statefulset', 'gantry-postgres', '--namespace', r.namespace, '--replicas=1']), 'starting PostgreSQL');
    const restarted = Date.now();
    const readyMs = await allTargetsReady('every target Ready again', restarted);
    await sleep(3_000);
    const lines = await load.stop();
    const after = await targetPods();
    for (const p of after.filter((x) => x.restarts !== before.get(x.name))) {
      const previous = await c.kubectl(['logs', p.name, '--namespace', r.namespace, '--previous', '--tail=30']);
      t.diagnostic(`${p.name} restarted; its previous container's last lines:\n${previous.stdout}${previous.stderr}`);
    }
    for (const p of after) assert.equal(p.restarts, before.get(p.name), `${p.name} restarted during the outage`);
    const figures = await verifyWrites(lines, 'cluster.outage');
    t.diagnostic(`all NotReady ${notReadyMs} ms after PostgreSQL stopped; all Ready ${readyMs} ms after it started again; restarts unchanged (${after.map((p) => p.restarts).join(',')})`);
    const failed = failures(lines);
    t.diagnostic(`writes: ${JSON.stringify(figures)}; failed attempts: ${JSON.stringify(failed)}`);
    assertOnlyRetried(failed);
    assert.equal(figures.gaveUp, 0, 'every write was acknowledged in the end');
  });

  /** The serial of the certificate a pod serves on 7443 (its TLS handshake, with the test's client certificate). */
  const servedSerial = (ip: string, component: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect({ host: ip, port: 7443, ca: readFileSync(m.tls.caFile), cert: readFileSync(m.tls.certFile), key: readFileSync(m.tls.keyFile), servername: `${r.name}-${component}.${r.namespace}.svc.cluster.local`, ALPNProtocols: ['h2'] }, () => {
        resolve(socket.getPeerCertificate().serialNumber);
        socket.end();
      });
      socket.setTimeout(5_000, () => socket.destroy(new Error(`TLS to ${ip} timed out`)));
      socket.on('error', reject);
    });

  test('certificates renewed by the keys Job (renewBeforeDays above their lifetime) are picked up by every running pod without a restart, while a client draws and appends; the CronJob renews too', { timeout: 420_000 }, async (t) => {
    const before = await targetPods();
    const served = new Map(await Promise.all(before.map(async (p) => [p.name, await servedSerial(p.ip, p.component)] as const)));
    const load = await startLoad('cluster.renew');
    await sleep(3_000);
    const started = Date.now();
    ok(await c.helm(['upgrade', r.name, join(repoRoot, 'charts/gantry'), '--namespace', r.namespace, '--reuse-values', '--set', 'tls.generated.renewBeforeDays=1000', '--wait', '--timeout', '5m'], 330_000), 'helm upgrade (the keys Job renews every certificate)');
    const renewedMs = await waitFor('every pod to serve its renewed certificate', 240_000, async () => {
      const now = await Promise.all(before.map(async (p) => (await servedSerial(p.ip, p.component).catch(() => served.get(p.name))) !== served.get(p.name)));
      return now.every(Boolean) ? Date.now() - started : undefined;
    }, 2_000);
    // The CronJob's Job renews them once more (1000 days exceed their 90).
    ok(await c.kubectl(['create', 'job', 'renew-now', '--from', `cronjob/${r.name}-keys`, '--namespace', r.namespace]), 'a Job from the CronJob');
    ok(await c.kubectl(['wait', '--for=condition=complete', 'job/renew-now', '--namespace', r.namespace, '--timeout=120s'], undefined, 130_000), 'the CronJob\'s Job completes');
    ok(await c.kubectl(['delete', 'job', 'renew-now', '--namespace', r.namespace, '--cascade=foreground']), 'deleting the Job');
    ok(await c.helm(['upgrade', r.name, join(repoRoot, 'charts/gantry'), '--namespace', r.namespace, '--reuse-values', '--set', 'tls.generated.renewBeforeDays=30', '--wait', '--timeout', '5m'], 330_000), 'helm upgrade back');
    await sleep(3_000);
    const lines = await load.stop();
    const after = await targetPods();
    for (const p of after) assert.equal(p.restarts, before.find((b) => b.name === p.name)?.restarts, `${p.name} did not restart`);
    const figures = await verifyWrites(lines, 'cluster.renew');
    const failed = failures(lines);
    t.diagnostic(`renewed certificates served by all ${before.length} pods ${renewedMs} ms after the upgrade began; writes: ${JSON.stringify(figures)}; failed attempts: ${JSON.stringify(failed)}`);
    assertOnlyRetried(failed);
    assert.equal(figures.gaveUp, 0);
  });

  test('helm upgrade rolls every Deployment while a client draws and appends through the Services: only retried UNAVAILABLE calls fail, and no acknowledged write is lost', { timeout: 420_000 }, async (t) => {
    const [repo, tag] = c.images.gantry.split(':');
    const next = `${repo}:${tag}-upgrade`;
    ok(await run('docker', ['tag', c.images.gantry, next], process.env), 'docker tag');
    ok(await run('bash', [join(repoRoot, 'scripts/test-env/cluster.sh'), 'load', next], process.env, undefined, 300_000), 'loading the new tag');
    const load = await startLoad('cluster.upgrade');
    await sleep(3_000);
    const started = Date.now();
    ok(await c.helm(['upgrade', r.name, join(repoRoot, 'charts/gantry'), '--namespace', r.namespace, '--reuse-values', '--set', `image.tag=${tag}-upgrade`, '--wait', '--timeout', '5m'], 330_000), 'helm upgrade');
    const rolledMs = Date.now() - started;
    await sleep(3_000);
    const lines = await load.stop();
    // The Deployments' pods; the keys Jobs' pods come and go with their Jobs.
    const images = ok(await c.kubectl(['get', 'pods', '--namespace', r.namespace, '-l', 'app.kubernetes.io/instance=gantry,app.kubernetes.io/component!=keys', '-o', 'jsonpath={range .items[*]}{.spec.containers[0].image}{"\\n"}{end}']), 'kubectl get pods').trim().split('\n');
    assert.ok(images.length >= 10 && images.every((i) => i === next), `every pod runs ${next}: ${images.join(', ')}`);
    const figures = await verifyWrites(lines, 'cluster.upgrade');
    const failed = failures(lines);
    t.diagnostic(`helm upgrade --wait: ${rolledMs} ms; writes: ${JSON.stringify(figures)}; failed attempts: ${JSON.stringify(failed)}`);
    assertOnlyRetried(failed);
    assert.equal(figures.gaveUp, 0);
  });

  test('kubectl delete pod --force of a log pod and a settlement pod under load loses no acknowledged write; another operator pod takes the Lease when its leader is force-deleted', { timeout: 240_000 }, async (t) => {
    const load = await startLoad('cluster.force');
    await sleep(3_000);
    const victims = (await targetPods()).filter((p) => p.component === 'log' || p.component === 'settlement');
    for (const v of [victims.find((p) => p.component === 'log')!, victims.find((p) => p.component === 'settlement')!]) {
      ok(await c.kubectl(['delete', 'pod', v.name, '--namespace', r.namespace, '--grace-period=0', '--force']), `force-deleting ${v.name}`);
    }
    const deleted = Date.now();
    const replacedMs = await allTargetsReady('replacements Ready', deleted);
    await sleep(3_000);
    const lines = await load.stop();
    const figures = await verifyWrites(lines, 'cluster.force');
    const failed = failures(lines);
    t.diagnostic(`replacements Ready ${replacedMs} ms after the forced deletions; writes: ${JSON.stringify(figures)}; failed attempts: ${JSON.stringify(failed)}`);
    assertOnlyRetried(failed);
    assert.equal(figures.gaveUp, 0);

    const holder = async () => ok(await c.kubectl(['get', 'lease', `${r.name}-operator`, '--namespace', r.namespace, '-o', 'jsonpath={.spec.holderIdentity}']), 'kubectl get lease').trim();
    const leader = await holder();
    const operators = (await pods(c, r.namespace)).filter((p) => p.component === 'operator').map((p) => p.name);
    assert.ok(operators.some((name) => leader.includes(name)), `the Lease holder ${leader} is one of ${operators.join(', ')}`);
    const leaderPod = operators.find((name) => leader.includes(name))!;
    ok(await c.kubectl(['delete', 'pod', leaderPod, '--namespace', r.namespace, '--grace-period=0', '--force']), 'force-deleting the operator leader');
    const killed = Date.now();
    // The standby, or the pod the Deployment starts in the leader's place: a force-deleted pod's
    // process can still run (and renew) until kubelet kills it, then releases the Lease on SIGTERM,
    // and from then on whichever candidate retries first takes it. Either is a correct failover.
    let lastHolder = leader;
    const successor = async () => {
      lastHolder = await holder();
      const live = (await pods(c, r.namespace)).filter((p) => p.component === 'operator' && p.name !== leaderPod).map((p) => p.name);
      return live.find((name) => lastHolder.includes(name));
    };
    let standby: string;
    try {
      standby = await waitFor('another operator pod holding the Lease', 60_000, successor, 250);
    } catch (err) {
      throw new Error(`${(err as Error).message}; the Lease holder was ${JSON.stringify(lastHolder)}`);
    }
    const takeoverMs = Date.now() - killed;
    // The new leader reconciles: a Webhook created now becomes Ready.
    const webhook = { apiVersion: 'gantry.dev/v1alpha1', kind: 'Webhook', metadata: { name: 'after-failover', namespace: r.tenantNamespace }, spec: { url: `http://receiver.${r.tenantNamespace}.svc.cluster.local:8080/after`, eventTypes: ['settlement.credit.drawn'] } };
    ok(await c.kubectl(['apply', '-f', '-'], JSON.stringify(webhook)), 'kubectl apply Webhook');
    await waitFor('the new leader reconciling a Webhook', 60_000, async () => {
      const ready = ok(await c.kubectl(['get', 'webhook', 'after-failover', '--namespace', r.tenantNamespace, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']), 'kubectl get webhook').trim();
      return ready === 'True' ? true : undefined;
    });
    t.diagnostic(`operator: ${standby} held the Lease ${takeoverMs} ms after ${leaderPod} was force-deleted (leaseDurationMs 15000)`);
  });
});
