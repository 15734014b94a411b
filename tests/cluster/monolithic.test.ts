import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bearerMetadata, streamOf, unary } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { ok } from '../support/kube.js';
import { Cleanup, clientMaterial, exclusive, hostClient, installRelease, pods, startDriverPod, testCluster, waitFor, type ClientMaterial, type DriverPod, type Release, type TestCluster } from './support.js';

// The chart in monolithic mode (every target in one pod, on the embedded database on a
// PersistentVolume from the cluster's default StorageClass) on the real single-node cluster.

const cluster = await testCluster();
const skip = typeof cluster === 'string' ? cluster : false;
/** The pod Ready within this bound after `helm install` (measured: about 15 s). */
const READY_BOUND_MS = 120_000;

describe('the chart on a real cluster: monolithic mode on a PersistentVolume', { skip }, () => {
  const c = cluster as TestCluster;
  const cleanup = new Cleanup();
  let r: Release;
  let m: ClientMaterial;
  let driver: DriverPod;
  after(() => cleanup.run());

  before(async () => {
    await exclusive(cleanup);
    r = await installRelease(c, cleanup, 'monolithic');
    m = await clientMaterial(c, r);
    driver = await startDriverPod(c, r.namespace, 'driver', { clientSecret: m.secretName });
  });

  const address = () => `dns:///${r.name}-gantry.${r.namespace}.svc.cluster.local:7443`;

  test(`the pod is Ready within ${READY_BOUND_MS / 1000} s of helm install with its volume bound, and helm test passes`, { timeout: 180_000 }, async (t) => {
    t.diagnostic(`helm install --wait: Ready after ${r.readyMs} ms`);
    assert.ok(r.readyMs < READY_BOUND_MS, `Ready after ${r.readyMs} ms`);
    const claim = ok(await c.kubectl(['get', 'pvc', `${r.name}-gantry-data`, '--namespace', r.namespace, '-o', 'jsonpath={.status.phase}']), 'kubectl get pvc').trim();
    assert.equal(claim, 'Bound');
    const tested = await c.helm(['test', r.name, '--namespace', r.namespace, '--timeout', '3m'], 200_000);
    assert.equal(tested.code, 0, `helm test:\n${tested.stdout}${tested.stderr}`);
  });

  test('a settlement flow from a client Pod is audited, and after the pod is force-deleted under load every acknowledged append is still in the log', { timeout: 240_000 }, async (t) => {
    const tokens = { admin: m.token('treasury', ['settlement.admin']), credit: m.token('casino-l2', ['settlement.credit']), log: m.token('cluster-load', ['log.append', 'log.read']) };
    const flow = await driver.run('flow', { addresses: { settlement: address() }, tokens, flow: { draws: 3, drawMinor: 5 } });
    assert.equal(flow.filter((l) => l.k === 'draw').length, 3, JSON.stringify(flow));

    const load = await driver.load({ addresses: { settlement: address(), log: address() }, tokens, load: { drawers: 1, appenders: 2, partition: 'cluster.mono', stopFile: '', retryForMs: 120_000 } });
    await sleep(3_000);
    const [pod] = (await pods(c, r.namespace)).filter((p) => p.component === 'gantry');
    ok(await c.kubectl(['delete', 'pod', pod!.name, '--namespace', r.namespace, '--grace-period=0', '--force']), 'force-deleting the pod');
    const deleted = Date.now();
    const readyMs = await waitFor('the new pod Ready', 180_000, async () => {
      const list = (await pods(c, r.namespace)).filter((p) => p.component === 'gantry');
      return list.length === 1 && list[0]!.name !== pod!.name && list[0]!.ready ? Date.now() - deleted : undefined;
    }, 500);
    await sleep(3_000);
    const lines = await load.stop();

    const l = await hostClient(c, m, r.namespace, `${r.name}-gantry`);
    const log = new logv1.LogServiceClient(l.address, l.creds, l.opts);
    t.after(() => log.close());
    const reader = bearerMetadata(m.token('auditor', ['log.read']));
    const entries = new Map<bigint, string>();
    for await (const chunk of streamOf(log.read({ partition: 'cluster.mono', startSeq: 0n, limit: 0n }, reader))) {
      for (const e of chunk.entries) entries.set(e.seq, Buffer.from(e.data).toString());
    }
    const acked = lines.filter((x) => x.k === 'append');
    for (const a of acked) assert.equal(entries.get(BigInt(a.seq as string)), `cluster load ${a.key as string}`, `append ${a.key as string} at seq ${a.seq as string}`);
    const verified = await unary(log.verify, log, { partition: 'cluster.mono' }, reader);
    assert.ok(verified.valid, `the partition verifies: ${verified.reason}`);
    const gaveUp = lines.filter((x) => x.k === 'gaveup').length;
    t.diagnostic(`new pod Ready ${readyMs} ms after the forced deletion; appends acknowledged ${acked.length}, found ${entries.size}; gave up ${gaveUp}`);
    assert.equal(gaveUp, 0);
  });
});
