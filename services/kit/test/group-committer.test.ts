// The kit's group committer: batches form while transactions are in flight, each caller gets its
// own outcome after its commit, a failed batch is retried item by item, keys never overlap, the
// queue is bounded, and answering does not hold up the next batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GantryError, Status } from '../src/errors.js';
import { GroupCommitter, type GroupCommitLimits, type GroupCommitSteps } from '../src/commit/group-committer.js';
import { FakeClock } from '../src/time/fake-clock.js';

const LIMITS: GroupCommitLimits = { maxBatch: 100, maxQueued: 1000, maxTxInFlight: 1, lingerMs: 0 };

/** A transaction the test finishes by hand, so what is in flight and what queues is exact. */
class Gate {
  readonly batches: number[][] = [];
  private readonly open: (() => void)[] = [];
  /** Makes commit fail for batches containing this item. */
  failWith = new Set<number>();

  readonly steps: GroupCommitSteps<number, string> = {
    commit: async (items) => {
      this.batches.push([...items]);
      await new Promise<void>((resolve) => this.open.push(resolve));
      if (items.some((i) => this.failWith.has(i))) throw new Error(`the database refused ${items.join(',')}`);
      return items.map((i) => `done ${i}`);
    },
    queueFull: (limit) => `${limit} items are waiting; retry shortly`,
  };

  /** Lets the oldest open transaction finish, and waits until the committer has seen it. */
  async release(): Promise<void> {
    this.open.shift()!();
    await tick();
  }

  get waiting(): number {
    return this.open.length;
  }
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

test('items arriving while a transaction is in flight commit together in the next one, each caller with its own result', async () => {
  const gate = new Gate();
  const committer = new GroupCommitter(gate.steps, LIMITS);
  const first = committer.submit(1);
  const later = [2, 3, 4].map((i) => committer.submit(i));
  assert.deepEqual(gate.batches, [[1]], 'a lone item waits for nobody');
  assert.equal(committer.held, 4);
  await gate.release();
  assert.equal(await first, 'done 1');
  assert.deepEqual(gate.batches, [[1], [2, 3, 4]]);
  await gate.release();
  assert.deepEqual(await Promise.all(later), ['done 2', 'done 3', 'done 4']);
  assert.equal(committer.held, 0);
});

test('a batch takes at most maxBatch items, and maxTxInFlight transactions run at once', async () => {
  const gate = new Gate();
  const committer = new GroupCommitter(gate.steps, { ...LIMITS, maxBatch: 2, maxTxInFlight: 2 });
  const all = [1, 2, 3, 4, 5, 6].map((i) => committer.submit(i));
  assert.deepEqual(gate.batches, [[1], [2]], 'two transactions start at once, one item each');
  assert.equal(gate.waiting, 2);
  await gate.release();
  assert.deepEqual(gate.batches.at(-1), [3, 4]);
  await gate.release();
  assert.deepEqual(gate.batches.at(-1), [5, 6]);
  while (gate.waiting > 0) await gate.release();
  assert.equal((await Promise.all(all)).length, 6);
});

test('when a batch transaction fails, its items are retried one per transaction, and only the one the database refuses fails', async () => {
  const gate = new Gate();
  const committer = new GroupCommitter(gate.steps, LIMITS);
  const first = committer.submit(1);
  const batch = [2, 3, 4].map((i) => committer.submit(i).then((r) => r, (err: Error) => `failed: ${err.message}`));
  gate.failWith.add(3);
  await gate.release();
  await first;
  await gate.release(); // the batch [2,3,4] fails
  await gate.release(); // 2 alone
  await gate.release(); // 3 alone: fails again
  await gate.release(); // 4 alone
  assert.deepEqual(await Promise.all(batch), ['done 2', 'failed: the database refused 3', 'done 4']);
  assert.deepEqual(gate.batches, [[1], [2, 3, 4], [2], [3], [4]]);
});

test('a lone item whose transaction failed is retried alone only when retryAlone says so', async () => {
  let calls = 0;
  const flaky: GroupCommitSteps<number, string> = {
    commit: async (items) => {
      calls++;
      if (calls === 1) throw new Error('raced');
      return items.map(String);
    },
    retryAlone: (err) => (err as Error).message === 'raced',
    queueFull: () => 'full',
  };
  assert.equal(await new GroupCommitter(flaky, LIMITS).submit(7), '7');
  assert.equal(calls, 2);

  calls = 0;
  const strict = { ...flaky, retryAlone: undefined };
  await assert.rejects(new GroupCommitter(strict, LIMITS).submit(7), /raced/);
  assert.equal(calls, 1, 'without retryAlone the error is the item’s at once');
});

test('beyond maxQueued held items, submit refuses with RESOURCE_EXHAUSTED and a retry pushback, and admits again once answered', async () => {
  const gate = new Gate();
  const committer = new GroupCommitter(gate.steps, { ...LIMITS, maxQueued: 2 });
  const held = [committer.submit(1), committer.submit(2)];
  const refused = await committer.submit(3).then(
    () => assert.fail('a third item was admitted'),
    (err: unknown) => err,
  );
  assert.ok(refused instanceof GantryError);
  assert.equal(refused.code, Status.RESOURCE_EXHAUSTED);
  assert.equal(refused.message, '2 items are waiting; retry shortly');
  assert.equal(refused.trailers?.['grpc-retry-pushback-ms'], '100');
  assert.deepEqual(gate.batches, [[1]], 'the refused item was never committed');
  await gate.release();
  await gate.release();
  await Promise.all(held);
  const again = committer.submit(4);
  await gate.release();
  assert.equal(await again, 'done 4');
});

test('items with the same key never share a batch nor run in two transactions at once', async () => {
  const gate = new Gate();
  const keyed: GroupCommitSteps<number, string> = { ...gate.steps, keyOf: (i) => String(i % 10) };
  const committer = new GroupCommitter(keyed, { ...LIMITS, maxTxInFlight: 2 });
  const all = [1, 11, 2, 12, 3].map((i) => committer.submit(i));
  // 1 starts alone; 11 shares its key and waits, so the second slot takes 2 (12 and 3 arrive with both slots busy).
  assert.deepEqual(gate.batches, [[1], [2]]);
  await gate.release(); // 1 done: its loop takes 11 (key 1 is free now) and 3, not 12 (2's key, still busy)
  assert.deepEqual(gate.batches.at(-1), [11, 3]);
  await gate.release(); // 2 done
  assert.deepEqual(gate.batches.at(-1), [12]);
  while (gate.waiting > 0) await gate.release();
  assert.deepEqual(await Promise.all(all), ['done 1', 'done 11', 'done 2', 'done 12', 'done 3']);
});

test('with lingerMs, an item arriving at an idle committer waits that long for others to join its batch', async () => {
  const gate = new Gate();
  const clock = new FakeClock();
  const committer = new GroupCommitter(gate.steps, { ...LIMITS, lingerMs: 5 }, clock);
  const all = [1, 2, 3].map((i) => committer.submit(i));
  assert.deepEqual(gate.batches, [], 'nothing starts before the linger');
  clock.advance(5);
  assert.deepEqual(gate.batches, [[1, 2, 3]]);
  await gate.release();
  assert.equal((await Promise.all(all)).length, 3);
});

test('answering runs outside the transaction and does not hold up the next batch; a failed answer fails its callers only', async () => {
  const gate = new Gate();
  const reads: (() => void)[] = [];
  const answering: GroupCommitSteps<number, string, string> = {
    ...gate.steps,
    answer: async (items, results) => {
      await new Promise<void>((resolve) => reads.push(resolve));
      if (items.includes(2)) throw new Error('read back failed');
      return results.map((r) => `${r}, read back`);
    },
  };
  const committer = new GroupCommitter(answering, LIMITS);
  const first = committer.submit(1);
  const second = committer.submit(2).catch((err: Error) => err.message);
  await gate.release(); // [1] committed; its answer is being read
  assert.deepEqual(gate.batches, [[1], [2]], 'the next batch started while the first is answered');
  assert.equal(committer.held, 2, 'an item is held until answered');
  reads.shift()!();
  assert.equal(await first, 'done 1, read back');
  await gate.release();
  reads.shift()!();
  assert.equal(await second, 'read back failed');
  assert.equal(committer.held, 0);
});

test('limits that would stall or never batch are refused at construction', () => {
  const gate = new Gate();
  assert.throws(() => new GroupCommitter(gate.steps, { ...LIMITS, maxBatch: 0 }), /maxBatch must be at least 1/);
  assert.throws(() => new GroupCommitter(gate.steps, { ...LIMITS, maxTxInFlight: 0 }), /maxTxInFlight/);
  assert.throws(() => new GroupCommitter(gate.steps, { ...LIMITS, lingerMs: -1 }), /lingerMs/);
});
