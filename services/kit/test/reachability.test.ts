// A database that goes silent (a network partition: nothing refused, nothing answered) is noticed
// by the reachability probe: statements in flight are cut and new ones refused at once with
// UNAVAILABLE, instead of each waiting for sockets that answer minutes later; and it is back as
// soon as the database answers again. A pool busy with long statements is not a silent database.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { status } from '@grpc/grpc-js';
import { toWireStatus } from '../src/errors.js';
import { openPostgres } from '../src/storage/postgres.js';
import { DatabaseUnreachableError } from '../src/storage/reachability.js';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { CuttableProxy } from '@gantry/test-support/proxy';

requirePostgresInCi('the database reachability tests');

const PING_INTERVAL_MS = 200;
const PING_TIMEOUT_MS = 600;

/** How long `promise` took to settle, and with what. */
async function timed<T>(promise: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const t0 = performance.now();
  try {
    const value = await promise;
    return { ms: performance.now() - t0, value };
  } catch (error) {
    return { ms: performance.now() - t0, error };
  }
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe('database reachability (PostgreSQL behind a proxy that can hold every byte)', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  async function openThroughProxy(poolSize: number) {
    const database = await freshPostgresDatabase('t_reach');
    cleanups.push(() => database.drop());
    const proxy = await CuttableProxy.start(new URL(database.url));
    cleanups.push(() => proxy.close());
    const db = await openPostgres({ url: proxy.through(database.url), poolSize, statementTimeoutMs: 30_000, pingIntervalMs: PING_INTERVAL_MS, pingTimeoutMs: PING_TIMEOUT_MS });
    cleanups.push(() => db.close());
    return { db, proxy };
  }

  test('a partition cuts the statements in flight and refuses new ones at once with UNAVAILABLE; the database is used again once it answers', async () => {
    const { db, proxy } = await openThroughProxy(4);
    await db.query('CREATE TABLE items (id int PRIMARY KEY)');
    await db.ordered.query('INSERT INTO items VALUES (1)');

    proxy.hold();
    const heldAt = performance.now();
    // Sent into the partition: without the probe, this would wait for TCP to give up (minutes).
    const inFlight = timed(db.query('SELECT count(*)::int AS n FROM items'));
    const inTransaction = timed(db.transaction((tx) => tx.query('INSERT INTO items VALUES (2)')));

    const cut = await inFlight;
    assert.ok(cut.error, 'the statement in flight failed');
    assert.equal(toWireStatus(cut.error, 'r').code, status.UNAVAILABLE, `the statement in flight: ${String(cut.error)}`);
    // Noticed within a probe interval and a timeout; the slack is for a loaded machine.
    assert.ok(cut.ms < PING_INTERVAL_MS + PING_TIMEOUT_MS + 1_500, `the statement in flight waited ${Math.round(cut.ms)} ms`);
    const tx = await inTransaction;
    assert.equal(toWireStatus(tx.error, 'r').code, status.UNAVAILABLE, `the transaction in flight: ${String(tx.error)}`);

    // While unreachable, every way in refuses at once, saying so.
    for (const [what, attempt] of [
      ['query', () => db.query('SELECT 1')],
      ['queryArrays', () => db.queryArrays('SELECT 1')],
      ['transaction', () => db.transaction((t) => t.query('SELECT 1'))],
      ['ordered', () => db.ordered.query('SELECT 1')],
      ['notify', () => db.notify('reach_test', 'x')],
    ] as const) {
      const refused = await timed((attempt as () => Promise<unknown>)());
      assert.ok(refused.error instanceof DatabaseUnreachableError, `${what}: ${String(refused.error)}`);
      assert.ok(refused.ms < 100, `${what} took ${Math.round(refused.ms)} ms to be refused`);
      const wire = toWireStatus(refused.error, 'r');
      assert.equal(wire.code, status.UNAVAILABLE);
      assert.match(wire.details, /retry with backoff/);
    }
    assert.throws(() => db.assertReachable(), DatabaseUnreachableError);
    await assert.rejects(db.ping(), DatabaseUnreachableError, 'readiness sees the same');
    const noticedMs = performance.now() - heldAt;

    proxy.restore();
    const restoredAt = performance.now();
    assert.ok(await eventually(async () => (await db.query('SELECT 1')).rowCount === 1, 10_000), 'statements run again once the database answers');
    const backMs = performance.now() - restoredAt;
    await db.ping();
    await db.ordered.query('INSERT INTO items VALUES (3)');
    // The transaction that was cut never reached COMMIT; nothing acknowledged is missing.
    const ids = (await db.query<{ id: number }>('SELECT id FROM items ORDER BY id')).rows.map((r) => r.id);
    assert.deepEqual(ids, [1, 3]);
    assert.ok(noticedMs < 10_000 && backMs < 10_000, `noticed after ${Math.round(noticedMs)} ms, back after ${Math.round(backMs)} ms`);
  });

  test('callers queued for a pool connection when the partition is noticed fail at once too, not on a new connection the partition holds', async () => {
    const { db, proxy } = await openThroughProxy(1);
    await db.query('SELECT 1');
    proxy.hold();
    // The pool's one connection carries the first statement; the others queue for it. Cutting that
    // connection hands the queue a new one, which the partition would hold until its connect timeout.
    const calls = [timed(db.query('SELECT 1')), timed(db.query('SELECT 2')), timed(db.transaction((tx) => tx.query('SELECT 3')))];
    for (const [i, call] of (await Promise.all(calls)).entries()) {
      assert.equal(toWireStatus(call.error, 'r').code, status.UNAVAILABLE, `call ${i}: ${String(call.error)}`);
      assert.ok(call.ms < PING_INTERVAL_MS + PING_TIMEOUT_MS + 1_500, `call ${i} waited ${Math.round(call.ms)} ms`);
    }
    proxy.restore();
    assert.ok(await eventually(async () => (await db.query('SELECT 1')).rowCount === 1, 10_000), 'the pool connects again once the database answers');
  });

  test('a pool busy with statements longer than the probe timeout is not taken for a silent database', async () => {
    const { db } = await openThroughProxy(1);
    // The only pool connection sleeps past several probe timeouts; the probe has its own connection.
    const sleeping = db.query('SELECT pg_sleep($1)', [(PING_TIMEOUT_MS * 3) / 1000]);
    await new Promise((r) => setTimeout(r, PING_TIMEOUT_MS * 2));
    db.assertReachable();
    await db.ping();
    await sleeping;
    assert.equal((await db.query('SELECT 1 AS one')).rows[0]!.one, 1);
  });
});
