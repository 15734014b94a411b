// The controller's error handling and the ObjectReconciler adapter, on a stub informer and a
// FakeClock (the informer's list-and-watch is tested against a real API server in informer.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubernetesObject } from '@kubernetes/client-node';
import { FakeClock } from '@gantry/kit';
import { asReconciler, Controller, TerminalError, WorkQueue, type EventRecorder, type Informer, type Reconciler } from '../../src/runtime/index.js';
import { eventually, testLogger } from './support.js';

const object = (name: string): KubernetesObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'ns', name } });

/** An informer that has listed `objects` and never changes. */
function stubInformer(objects: KubernetesObject[]): Informer<KubernetesObject> {
  const byKey = new Map(objects.map((o) => [`${o.metadata!.namespace}/${o.metadata!.name}`, o]));
  const stub = { on: () => {}, start: () => {}, stop: async () => {}, synced: async () => {}, list: () => objects, get: (key: string) => byKey.get(key), resource: { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap' } };
  return stub as unknown as Informer<KubernetesObject>;
}

/** Runs a controller over one object until `until` holds; returns the queue, clock and Events written. */
async function runOnce(reconciler: Reconciler, until: () => boolean) {
  const clock = new FakeClock();
  const queue = new WorkQueue({ clock, baseDelayMs: 100, ratePerSecond: 1e9, burst: 1e9 });
  const events: string[] = [];
  const recorder = { event: (_o: KubernetesObject, type: string, reason: string) => void events.push(`${type} ${reason}`) } as unknown as EventRecorder;
  const controller = new Controller({ name: 'test', informer: stubInformer([object('a')]), reconciler, workers: 1, queue, clock, log: testLogger(), events: recorder });
  const stop = new AbortController();
  const done = controller.start(stop.signal);
  await eventually(until, 'the reconcile');
  await new Promise((r) => setImmediate(r)); // the worker records the outcome after the reconcile returns
  const pending = clock.pending();
  stop.abort();
  await done;
  return { queue, pending, events };
}

test('a TerminalError is not retried: no backoff timer, no failures counted against the key, no ReconcileError Event', async () => {
  let calls = 0;
  const { queue, pending, events } = await runOnce(
    {
      reconcile: async () => {
        calls++;
        throw new TerminalError('spec.url is not https; fix the Webhook');
      },
    },
    () => calls === 1,
  );
  assert.deepEqual(pending, [], 'nothing scheduled');
  assert.equal(queue.numRequeues('ns/a'), 0);
  assert.deepEqual(events, [], 'the reconciler reports its own terminal failures');
  assert.equal(calls, 1);
});

test('any other error is retried with backoff and reported as a ReconcileError Event', async () => {
  let calls = 0;
  const { queue, pending, events } = await runOnce(
    {
      reconcile: async () => {
        calls++;
        throw new Error('the webhooks service is unavailable');
      },
    },
    () => calls === 1,
  );
  assert.deepEqual(pending, [100], 'retried after the base delay');
  assert.equal(queue.numRequeues('ns/a'), 1);
  assert.deepEqual(events, ['Warning ReconcileError']);
});

test('a 409 Conflict is retried with backoff without a ReconcileError Event: the next reconcile reads the new version', async () => {
  let calls = 0;
  const { queue, pending, events } = await runOnce(
    {
      reconcile: async () => {
        calls++;
        throw Object.assign(new Error('Operation cannot be fulfilled on webhooks "a": the object has been modified'), { code: 409 });
      },
    },
    () => calls === 1,
  );
  assert.deepEqual(pending, [100], 'retried after the base delay');
  assert.equal(queue.numRequeues('ns/a'), 1);
  assert.deepEqual(events, [], 'no Warning Event for a conflict');
});

test('asReconciler hands the reconciler the cached object, and does nothing for a key whose object is gone', async () => {
  const seen: string[] = [];
  const reconciler = asReconciler(stubInformer([object('present')]), {
    reconcile: async (obj, signal) => {
      assert.equal(signal.aborted, false);
      seen.push(obj.metadata!.name!);
      return { requeueAfterMs: 5 };
    },
  });
  const signal = new AbortController().signal;
  assert.deepEqual(await reconciler.reconcile({ namespace: 'ns', name: 'present' }, signal), { requeueAfterMs: 5 });
  assert.equal(await reconciler.reconcile({ namespace: 'ns', name: 'gone' }, signal), undefined);
  assert.deepEqual(seen, ['present']);
});
