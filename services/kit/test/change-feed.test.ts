// The kit's change feed with an in-memory history: changes a process publishes right after its
// commit reach the streams without a read when they follow what was offered, anything else is read
// in order, each change reaches each stream once, and a history pruned past the feed cuts off the
// streams that needed it. A FakeClock stands still, so only wake-ups and publishes move the feed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChangeFeed, FakeClock, silentLogger, type Database, type FeedItem, type Logger, type Subscription } from '../src/index.js';

interface Change extends FeedItem {
  name: string;
}

const change = (version: number): Change => ({ version: BigInt(version), bytes: 10, name: `c${version}` });
const LIMITS = { queueEvents: 100, queueBytes: 1 << 20, maxSubscriptions: 10, pollMs: 1000 };
/** The feed only LISTENs on the database. */
const db = { listen: () => Promise.resolve(() => Promise.resolve()) } as unknown as Database;

/** A history in memory; `gate` (when set) holds every read until it resolves. */
function history(initial: Change[]) {
  const h = {
    changes: [...initial],
    reads: 0,
    gate: undefined as Promise<void> | undefined,
    head: () => Promise.resolve(h.changes.at(-1)?.version ?? 0n),
    async read(after: bigint) {
      h.reads++;
      const page = h.changes.filter((c) => c.version > after);
      await h.gate;
      return page;
    },
  };
  return h;
}

/** Yields to the event loop until `cond` holds (the feed works in microtasks and immediates, never on the clock). */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), 'condition not reached');
}

const drain = (sub: Subscription<Change>) => {
  const got: string[] = [];
  for (let c = sub.take(); c; c = sub.take()) got.push(c.name);
  return got;
};

/** Publishes `changes` (consecutive) as a process does right after its commit. */
const publish = (feed: ChangeFeed<Change>, changes: Change[]) => feed.publish(changes[0]!.version, changes.at(-1)!.version, () => changes);

async function started(h: ReturnType<typeof history>) {
  const feed = new ChangeFeed<Change>(db, 'test_changed', h, LIMITS, silentLogger(), 'test', new FakeClock());
  await feed.start();
  return feed;
}

test('changes published right after their commit reach every stream without a read when they follow what was offered', async () => {
  const h = history([change(1)]);
  const feed = await started(h);
  const subs = [feed.subscribe(1n, () => true), feed.subscribe(1n, () => true)];
  const readsBefore = h.reads;
  h.changes.push(change(2), change(3));
  assert.equal(publish(feed, [change(2), change(3)]), true);
  assert.deepEqual(subs.map(drain), [['c2', 'c3'], ['c2', 'c3']]);
  assert.equal(feed.offeredThrough, 3n);
  assert.equal(h.reads, readsBefore, 'no read');
  await feed.stop();
});

test('with no stream following, a publish moves the feed on without building the changes', async () => {
  const h = history([]);
  const feed = await started(h);
  assert.equal(feed.publish(1n, 2n, () => assert.fail('built with nobody following')), true);
  assert.equal(feed.offeredThrough, 2n);
  await feed.stop();
});

test('published changes after a gap are left to the reader, which offers every change once, in order', async () => {
  const h = history([]);
  const feed = await started(h);
  const sub = feed.subscribe(0n, () => true);
  h.changes.push(change(1), change(2), change(3));
  // Another replica's change 1 is not read yet: 2 and 3 cannot go first.
  assert.equal(publish(feed, [change(2), change(3)]), false);
  await until(() => feed.offeredThrough === 3n);
  assert.deepEqual(drain(sub), ['c1', 'c2', 'c3']);
  // Published late (already read): not offered again.
  assert.equal(publish(feed, [change(3)]), false);
  assert.deepEqual(drain(sub), []);
  await feed.stop();
});

test('a change published while a read of it is in flight is offered once', async () => {
  const h = history([]);
  const feed = await started(h);
  const sub = feed.subscribe(0n, () => true);
  let open!: () => void;
  h.gate = new Promise((resolve) => (open = resolve));
  h.changes.push(change(1), change(2));
  const reads = h.reads;
  feed.wake();
  await until(() => h.reads > reads);
  assert.equal(publish(feed, [change(1)]), true);
  open();
  h.gate = undefined;
  await until(() => feed.offeredThrough === 2n);
  assert.deepEqual(drain(sub), ['c1', 'c2']);
  await feed.stop();
});

test('a history pruned past what the feed had read cuts off the streams that needed it, and only those', async () => {
  const h = history([]);
  const feed = await started(h);
  const behind = feed.subscribe(0n, () => true);
  const ahead = feed.subscribe(4n, () => true);
  // Versions 1-4 were pruned before the feed read them.
  h.changes.push(change(5));
  feed.wake();
  await until(() => feed.offeredThrough === 5n);
  assert.equal(behind.overflowed, true);
  assert.deepEqual(drain(behind), []);
  assert.equal(ahead.overflowed, false);
  assert.deepEqual(drain(ahead), ['c5']);
  assert.equal(feed.size, 1);
  await feed.stop();
});

test('streams that all start past the feed need no read of the versions before them, and nothing is cut off', async () => {
  const h = history([]);
  let warnings = 0;
  const log = { warn: () => warnings++ } as unknown as Logger;
  const feed = new ChangeFeed<Change>(db, 'test_changed', h, LIMITS, log, 'test', new FakeClock());
  await feed.start();
  const sub = feed.subscribe(4n, () => true);
  h.changes.push(change(5));
  feed.wake();
  await until(() => feed.offeredThrough === 5n);
  assert.deepEqual(drain(sub), ['c5']);
  assert.equal(sub.overflowed, false);
  assert.equal(warnings, 0);
  await feed.stop();
});
