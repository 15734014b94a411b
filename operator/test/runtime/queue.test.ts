import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '@gantry/kit';
import { WorkQueue } from '../../src/runtime/index.js';

/** The key get() returns, or 'none' if it would wait (without leaving a waiter behind). */
async function poll(q: WorkQueue): Promise<string> {
  if (q.length === 0) return 'none';
  return (await q.get()) ?? 'shut down';
}

test('a key added twice is queued once', async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add('ns/a');
  q.add('ns/a');
  q.add('ns/b');
  assert.equal(q.length, 2);
  assert.equal(await poll(q), 'ns/a');
  assert.equal(await poll(q), 'ns/b');
  assert.equal(await poll(q), 'none');
});

test('a key re-added while being processed is not handed to a second worker, and runs once more after done', async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add('ns/a');
  assert.equal(await poll(q), 'ns/a');
  q.add('ns/a');
  q.add('ns/a');
  assert.equal(q.length, 0);
  assert.equal(await poll(q), 'none', 'no second worker may take a key in progress');
  q.done('ns/a');
  assert.equal(await poll(q), 'ns/a');
  q.done('ns/a');
  assert.equal(await poll(q), 'none', 'the two re-adds made one more run, not two');
});

test('per-key backoff doubles from the base delay up to the cap', () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock, baseDelayMs: 5, maxDelayMs: 100, ratePerSecond: 1e9, burst: 1e9 });
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) {
    q.addRateLimited('ns/a');
    delays.push(clock.pending()[0]!);
    clock.advance(1000);
    void q.get().then((k) => q.done(k!));
  }
  assert.deepEqual(delays, [5, 10, 20, 40, 80, 100, 100]);
  assert.equal(q.numRequeues('ns/a'), 7);
});

test('forget resets a key to the base delay', () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock, baseDelayMs: 5, ratePerSecond: 1e9, burst: 1e9 });
  q.addRateLimited('ns/a');
  clock.advance(10);
  q.addRateLimited('ns/a');
  assert.deepEqual(clock.pending(), [10]);
  q.forget('ns/a');
  assert.equal(q.numRequeues('ns/a'), 0);
  clock.advance(10);
  q.addRateLimited('ns/a');
  assert.deepEqual(clock.pending(), [5]);
});

test('a delayed key becomes ready only when its delay passes, and the earliest of two delays wins', async () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock });
  q.addAfter('ns/a', 1000);
  q.addAfter('ns/a', 300);
  q.addAfter('ns/a', 2000);
  assert.deepEqual(clock.pending(), [300]);
  clock.advance(299);
  assert.equal(await poll(q), 'none');
  clock.advance(1);
  assert.equal(await poll(q), 'ns/a');
});

test('the overall rate limit spaces retries of many keys once the burst is spent', () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock, baseDelayMs: 1, ratePerSecond: 10, burst: 3 });
  for (let i = 0; i < 6; i++) q.addRateLimited(`ns/k${i}`);
  // Three tokens in the bucket, then one every 100 ms.
  assert.deepEqual(clock.pending().map(Math.round), [1, 1, 1, 100, 200, 300]);
});

test('maxLength bounds the distinct keys a queue holds', () => {
  const q = new WorkQueue({ clock: new FakeClock(), maxLength: 2 });
  q.add('ns/a');
  q.add('ns/b');
  q.add('ns/c');
  q.add('ns/a');
  assert.equal(q.length, 2);
});

test('shutDown releases every waiting get() with undefined and refuses new keys', async () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock });
  const waiters = [q.get(), q.get()];
  q.addAfter('ns/late', 10);
  q.shutDown();
  assert.deepEqual(await Promise.all(waiters), [undefined, undefined]);
  q.add('ns/a');
  clock.advance(100);
  assert.equal(await q.get(), undefined);
  assert.equal(q.length, 0);
});
