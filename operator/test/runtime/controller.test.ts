import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { testKube } from '../../../tests/support/kube.js';
import { Controller, Informer, WorkQueue, type ObjectKey, type ReconcileResult } from '../../src/runtime/index.js';
import { eventually, loadKubeConfig, testLogger } from './support.js';

const configMaps = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap' };

/** A namespace with one ConfigMap "a", and a controller over it running reconcile until the test ends. */
async function run(t: TestContext, reconcile: (key: ObjectKey, signal: AbortSignal) => Promise<ReconcileResult | void>, extra: { resyncMs?: number; queue?: WorkQueue } = {}) {
  const kube = await testKube();
  if (typeof kube === 'string') return void t.skip(kube);
  const kc = loadKubeConfig(kube.kubeconfig);
  const namespace = await kube.namespace(t, 'controller');
  await kc.makeApiClient(CoreV1Api).createNamespacedConfigMap({ namespace, body: { metadata: { name: 'a' } } });
  const informer = new Informer<V1ConfigMap>({ kc, resource: configMaps, namespace, log: testLogger() });
  const controller = new Controller({ name: 'test', informer, reconciler: { reconcile }, workers: 2, log: testLogger(), ...extra });
  const stop = new AbortController();
  const done = controller.start(stop.signal);
  t.after(async () => {
    stop.abort();
    await done;
    await informer.stop();
  });
  return { namespace, stop, done };
}

test('a failing reconcile is retried with growing backoff until it succeeds, then its failures are forgotten', async (t) => {
  const attemptsAtMs: number[] = [];
  const queue = new WorkQueue({ baseDelayMs: 100 });
  const env = await run(
    t,
    async (key) => {
      assert.equal(key.name, 'a');
      attemptsAtMs.push(Date.now());
      if (attemptsAtMs.length <= 3) throw new Error(`attempt ${attemptsAtMs.length} fails`);
    },
    { queue },
  );
  if (!env) return;
  await eventually(() => attemptsAtMs.length === 4, 'the fourth attempt');
  const gaps = attemptsAtMs.slice(1).map((at, i) => at - attemptsAtMs[i]!);
  assert.ok(gaps[0]! >= 100 && gaps[1]! >= 200 && gaps[2]! >= 400, `gaps ${gaps.join(', ')} ms follow 100·2^n`);
  assert.equal(queue.numRequeues(`${env.namespace}/a`), 0, 'success forgets the failures');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(attemptsAtMs.length, 4, 'nothing more once it succeeded');
});

test('requeueAfterMs reconciles the key again after that long with no change to the object', async (t) => {
  const attemptsAtMs: number[] = [];
  const env = await run(t, async () => {
    attemptsAtMs.push(Date.now());
    return attemptsAtMs.length === 1 ? { requeueAfterMs: 300 } : {};
  });
  if (!env) return;
  await eventually(() => attemptsAtMs.length === 2, 'the requeued reconcile');
  assert.ok(attemptsAtMs[1]! - attemptsAtMs[0]! >= 300);
});

test('resync re-reconciles every cached object periodically', async (t) => {
  let reconciles = 0;
  const env = await run(
    t,
    async () => {
      reconciles++;
    },
    { resyncMs: 200 },
  );
  if (!env) return;
  await eventually(() => reconciles >= 4, 'three resyncs after the first reconcile', 3_000);
});

test('a graceful stop waits for the in-flight reconcile to finish and starts no new one', async (t) => {
  let started = 0;
  let finished = 0;
  let sawAbort = false;
  const env = await run(t, async (_key, signal) => {
    started++;
    await new Promise((r) => setTimeout(r, 600));
    sawAbort = signal.aborted;
    finished++;
    return { requeueAfterMs: 0 };
  });
  if (!env) return;
  await eventually(() => started === 1, 'the reconcile to start');
  env.stop.abort();
  await env.done;
  assert.equal(finished, 1, 'start() returned only after the reconcile finished');
  assert.equal(sawAbort, false, 'within the shutdown timeout the reconcile is not aborted');
  assert.equal(started, 1, 'the requeue after stop did not run');
});
