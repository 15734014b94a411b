// The outbox relay's own guarantees, on PGlite and PostgreSQL: each committed row reaches each sink
// once and in outbox order, replicas share one outbox without duplicates, gaps or reordering, a failing sink
// backs off without holding up the other, a crashed replica's lease expires and its rows are
// re-sent, a wake-up sends at once, and sampled traces continue through PRODUCER spans. The sinks
// are recording functions at the edge (the real log and webhooks are in tests/platform). Where a
// test needs time to pass (backoff, polls, leases, linger) the relay runs on a FakeClock the test
// moves; the tests of racing replicas and plain delivery keep the real clock (their polls are part
// of what they exercise, and they only wait for I/O).
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { context, createTraceState, ROOT_CONTEXT, SpanKind, trace, TraceFlags } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { pino } from 'pino';
import {
  openPglite,
  FakeClock,
  openPostgres,
  Outbox,
  OutboxRelay,
  outboxTableSql,
  silentLogger,
  startTelemetry,
  type Database,
  type Logger,
  type OutboxEvent,
  type RelayedEvent,
  type RelayOptions,
  type RelaySink,
  type Telemetry,
} from '../src/index.js';
import { eventually } from '@gantry/test-support/clients';
import { engines, freshPgliteDir, freshPostgresDatabase, requirePostgresInCi, type EngineName } from '@gantry/test-support/databases';

const SCHEMA = 'relay_test';
const outbox = new Outbox(SCHEMA, 'gantry.relay-test', true, { creditDrawn: 'settlement.credit.drawn' });

/** The kit's outbox table (events/outbox-table.ts), in the test schema. */
const OUTBOX_DDL = `CREATE SCHEMA ${SCHEMA};
${outboxTableSql(SCHEMA)}`;

/** A test database with the outbox; PostgreSQL opens one handle (pool) per replica. */
interface World {
  db: Database;
  /** Another handle on the same outbox, as a second replica would have (PGlite: the same one). */
  replica(): Promise<Database>;
  close(): Promise<void>;
}

async function openWorld(engine: EngineName): Promise<World> {
  if (engine === 'PGlite') {
    const dir = mkdtempSync(join(tmpdir(), 'gantry-relay-'));
    await freshPgliteDir(join(dir, 'db'));
    const db = await openPglite(join(dir, 'db'));
    await db.exec(OUTBOX_DDL);
    return {
      db,
      replica: async () => db,
      async close() {
        await db.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const fresh = await freshPostgresDatabase('relay');
  const open = (poolSize: number) => openPostgres({ url: fresh.url, poolSize, statementTimeoutMs: 10_000 });
  const db = await open(6);
  await db.exec(OUTBOX_DDL);
  const replicas: Database[] = [];
  return {
    db,
    async replica() {
      const r = await open(2);
      replicas.push(r);
      return r;
    },
    async close() {
      await Promise.all([db, ...replicas].map((d) => d.close()));
      await fresh.drop();
    },
  };
}

/** A sink that records what it was sent; `behave` may throw (an outage) or wait (a slow peer). */
interface RecordingSink extends RelaySink {
  /** The calls that succeeded, in order. */
  readonly calls: RelayedEvent[][];
  /** Every call, failed or not, with its time (performance.now(), or the fake clock's). */
  readonly attempts: { atMs: number; events: readonly RelayedEvent[] }[];
}

function recordingSink(name: RelaySink['name'], behave?: (events: readonly RelayedEvent[]) => Promise<void> | void, now: () => number = () => performance.now()): RecordingSink {
  const calls: RelayedEvent[][] = [];
  const attempts: RecordingSink['attempts'] = [];
  return {
    name,
    calls,
    attempts,
    async send(events) {
      attempts.push({ atMs: now(), events });
      await behave?.(events);
      calls.push([...events]);
    },
  };
}

const sentIds = (sink: RecordingSink) => sink.calls.flat().map((e) => e.id);

/** A promise the test resolves when it chooses. */
function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

let eventNo = 0;
function testEvent(): OutboxEvent {
  eventNo += 1;
  const value = { sessionId: `session-${eventNo}`, walletAddress: 'wallet-1', transferId: `transfer-${eventNo}`, amountMinor: BigInt(eventNo), reason: '' };
  return outbox.event(value.sessionId, new Date(), { $case: 'creditDrawn', value });
}

/** Commits `n` events in one transaction through Outbox.add, as a service does; returns their ids. */
async function commitEvents(db: Database, n: number): Promise<string[]> {
  const events = Array.from({ length: n }, testEvent);
  await db.transaction((tx) => outbox.add(tx, events, new Date()));
  return events.map((e) => e.id);
}

interface OutboxRow {
  event_id: string;
  log_done_at: Date | null;
  log_lease_until: Date | null;
  webhooks_done_at: Date | null;
}
const outboxRows = async (db: Database) =>
  (await db.query<OutboxRow>(`SELECT event_id, log_done_at, log_lease_until, webhooks_done_at FROM ${SCHEMA}.outbox ORDER BY seq`)).rows;
const outboxEmpty = async (db: Database) => (await outboxRows(db)).length === 0;

function assertAscendingSeqs(calls: readonly (readonly RelayedEvent[])[], what: string): void {
  for (const call of calls) {
    for (let i = 1; i < call.length; i++) assert.ok(call[i - 1]!.seq < call[i]!.seq, `${what}: seqs ascend within a call, got ${call.map((e) => e.seq).join(',')}`);
  }
}

/** Log lines as objects, for asserting on what the relay tells operators. */
function capturingLogger(): { log: Logger; lines: { level: number; msg: string; sink?: string; retry_in_ms?: number; down_ms?: number }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'info', base: undefined }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) });
  return { log, lines };
}
const WARN = 40;
const INFO = 30;

/**
 * Waits (in real time: the relay's queries take some) until `asleep` timers are pending on the fake
 * clock, that is until that many relay loops have gone back to sleep on it.
 */
async function settled(clock: FakeClock, asleep: number): Promise<void> {
  const ok = await eventually(() => clock.pending().length === asleep, 5000, 2);
  assert.ok(ok, `expected ${asleep} relay loops asleep on the fake clock; timers pending in: ${clock.pending().join(', ')} ms`);
}

/**
 * Lets `ms` of fake time pass one timer at a time, each step once the loops are asleep again, so a
 * loop's next sleep starts when it went to sleep, as on the wall clock.
 */
async function pass(clock: FakeClock, ms: number, asleep: number): Promise<void> {
  const untilMs = clock.now() + ms;
  for (;;) {
    await settled(clock, asleep);
    const nextMs = clock.pending()[0];
    if (nextMs === undefined || clock.now() + nextMs > untilMs) break;
    clock.advance(nextMs);
  }
  clock.advance(untilMs - clock.now());
}

// Sampled rows are relayed inside spans of the global tracer provider: one for the whole file.
const spans = new InMemorySpanExporter();
let telemetry: Telemetry | undefined;
before(async () => {
  telemetry = await startTelemetry({ serviceName: 'relay-test', spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
});
after(async () => telemetry?.shutdown());

requirePostgresInCi('the outbox relay tests');

for (const engine of engines()) {
  describe(`outbox relay on ${engine.name}`, { skip: engine.skip }, () => {
    let world: World;
    const running: OutboxRelay[] = [];

    /** A started relay on the test outbox; fast defaults, overridable per test. */
    function startRelay(sinks: RelaySink[], opts: Partial<RelayOptions> = {}): OutboxRelay {
      const relay = new OutboxRelay({
        db: world.db,
        schema: SCHEMA,
        sinks,
        log: silentLogger(),
        batchSize: 100,
        pollIntervalMs: 50,
        leaseMs: 30_000,
        lingerMs: 0,
        minBackoffMs: 10,
        maxBackoffMs: 100,
        random: () => 0.5,
        ...opts,
      });
      relay.start();
      running.push(relay);
      return relay;
    }

    before(async () => {
      world = await openWorld(engine.name);
    });
    after(async () => world?.close());
    beforeEach(async () => {
      await world.db.query(`TRUNCATE ${SCHEMA}.outbox`);
      spans.reset();
    });
    afterEach(async () => {
      await Promise.all(running.splice(0).map((r) => r.stop()));
    });

    test('committed rows reach each sink once, in outbox order, and are deleted only once both sinks have them', async () => {
      let webhooksDown = true;
      const log = recordingSink('log');
      const webhooks = recordingSink('webhooks', () => {
        if (webhooksDown) throw new Error('webhooks unavailable');
      });
      const committed: string[] = [];
      // Some rows before the relay starts, some while it runs: several batches of at most 3.
      for (const n of [1, 2, 3]) committed.push(...(await commitEvents(world.db, n)));
      const relay = startRelay([log, webhooks], { batchSize: 3 });
      for (const n of [4, 1]) {
        committed.push(...(await commitEvents(world.db, n)));
        relay.wake();
      }

      assert.ok(await eventually(() => log.calls.flat().length >= committed.length, 5000), `log got ${log.calls.flat().length} of ${committed.length}`);
      // The log has every row; webhooks has none yet, so every row stays, marked for the log only.
      const held = await outboxRows(world.db);
      assert.deepEqual(held.map((r) => r.event_id), committed);
      assert.ok(held.every((r) => r.log_done_at !== null && r.webhooks_done_at === null));

      webhooksDown = false;
      assert.ok(await eventually(() => outboxEmpty(world.db), 5000), 'rows are deleted once both sinks have them');
      for (const sink of [log, webhooks]) {
        assert.deepEqual(sentIds(sink), committed, `${sink.name} got each row once, in commit (= seq) order`);
        assert.ok(sink.calls.every((c) => c.length >= 1 && c.length <= 3), `${sink.name} calls are batches of at most batchSize`);
        const seqs = sink.calls.flat().map((e) => e.seq);
        assert.ok(seqs.every((s, i) => i === 0 || seqs[i - 1]! < s), `${sink.name} seqs ascend across calls: ${seqs.join(',')}`);
      }
      assert.deepEqual(relay.sent, { log: committed.length, webhooks: committed.length });
    });

    test('one claim serves both sinks: a batch both take is deleted by the statement that finishes it, never marked', async () => {
      const log = recordingSink('log');
      const marks: OutboxRow[][] = [];
      // While the webhooks call is in flight the log's has returned: the rows must still be unmarked.
      const webhooks = recordingSink('webhooks', async () => void marks.push(await outboxRows(world.db)));
      const committed = await commitEvents(world.db, 5);
      startRelay([log, webhooks], { batchSize: 10 }).wake();
      assert.ok(await eventually(() => outboxEmpty(world.db), 5000));
      assert.deepEqual(log.calls.map((c) => c.map((e) => e.id)), [committed], 'one call to the log');
      assert.deepEqual(webhooks.calls.map((c) => c.map((e) => e.id)), [committed], 'one call to webhooks, of the same claim');
      assert.ok(marks[0]!.every((r) => r.log_done_at === null && r.webhooks_done_at === null && r.log_lease_until !== null), 'no mark between the claim and the delete');
    });

    test('each sink gets a backlog in outbox order, batch after batch', async () => {
      for (let round = 0; round < 3; round++) {
        const committed: string[] = [];
        for (let t = 0; t < 4; t++) committed.push(...(await commitEvents(world.db, 50)));
        const log = recordingSink('log');
        const webhooks = recordingSink('webhooks');
        const relay = startRelay([log, webhooks], { batchSize: 10 });
        assert.ok(await eventually(() => outboxEmpty(world.db), 5000, 10));
        await relay.stop();
        for (const sink of [log, webhooks]) {
          const seqs = sink.calls.flat().map((e) => e.seq);
          assert.ok(
            seqs.every((seq, i) => i === 0 || seqs[i - 1]! < seq),
            `round ${round}: ${sink.name} calls in order, got ${sink.calls.map((c) => `${c[0]!.seq}..${c.at(-1)!.seq}`).join(' ')}`,
          );
          assert.deepEqual(sentIds(sink), committed);
        }
      }
    });

    test('a row inserted by a transaction that rolls back is never sent', async () => {
      const log = recordingSink('log');
      const webhooks = recordingSink('webhooks');
      const clock = new FakeClock(Date.now());
      const relay = startRelay([log, webhooks], { clock });
      const rolledBack = testEvent();
      await assert.rejects(
        world.db.transaction(async (tx) => {
          await outbox.add(tx, [rolledBack], new Date());
          throw new Error('the change failed after its event was written');
        }),
        /the change failed/,
      );
      relay.wake();
      const committed = await commitEvents(world.db, 2);
      relay.wake();
      assert.ok(await eventually(async () => (await outboxEmpty(world.db)) && sentIds(webhooks).length === 2 && sentIds(log).length === 2, 5000));
      // A further poll or two finds nothing more.
      await pass(clock, 3 * 50, 1);
      for (const sink of [log, webhooks]) assert.deepEqual(sentIds(sink), committed, `${sink.name} never saw ${rolledBack.id}`);
    });

    test(
      'two replicas on one outbox, while 520 events are committed concurrently, send every event to each sink exactly once in total, in outbox order',
      { skip: engine.name === 'PGlite' ? 'replicas need a shared PostgreSQL server (PGlite has one connection)' : false },
      async () => {
        const [dbA, dbB] = [await world.replica(), await world.replica()];
        // What each peer received, in the order its calls arrived, whichever replica made them. A
        // call takes 0-4 ms, as a peer's does: replicas sending at once would interleave here.
        const arrived = { log: [] as string[], webhooks: [] as string[] };
        let jitter = 0;
        const peer = (name: 'log' | 'webhooks') =>
          recordingSink(name, async (events) => {
            arrived[name].push(...events.map((e) => e.id));
            await delay((jitter = (jitter + 3) % 5));
          });
        const sinksOf = (replica: string) => ({ replica, log: peer('log'), webhooks: peer('webhooks') });
        const a = sinksOf('A');
        const b = sinksOf('B');
        const { log: logger, lines } = capturingLogger();
        const relayA = startRelay([a.log, a.webhooks], { db: dbA, batchSize: 20, pollIntervalMs: 20, log: logger });
        const relayB = startRelay([b.log, b.webhooks], { db: dbB, batchSize: 20, pollIntervalMs: 20, log: logger });

        // Four writers, transactions of 1 to 5 events; each commit wakes one replica (as its own
        // process's Outbox would) or none (the other replica's poll finds it).
        const writers = 4;
        const perWriter = 130;
        const committed: string[] = [];
        // Each writer's events in its commit order: one writer's transactions follow each other, as a
        // flow's changes to one aggregate do, so each sink must get them in that order. (Across
        // writers a transaction that took an earlier seq may commit later: no order is promised.)
        const byWriter: string[][] = Array.from({ length: writers }, () => []);
        await Promise.all(
          Array.from({ length: writers }, async (_, w) => {
            for (let written = 0, k = 0; written < perWriter; k++) {
              const n = Math.min(perWriter - written, ((k + w) % 5) + 1);
              const ids = await commitEvents(world.db, n);
              committed.push(...ids);
              byWriter[w]!.push(...ids);
              written += n;
              if (k % 3 === 0) relayA.wake();
              else if (k % 3 === 1) relayB.wake();
            }
          }),
        );
        assert.equal(committed.length, writers * perWriter);

        const total = (sink: 'log' | 'webhooks') => sentIds(a[sink]).length + sentIds(b[sink]).length;
        assert.ok(await eventually(async () => total('log') >= committed.length && total('webhooks') >= committed.length && (await outboxEmpty(world.db)), 10_000), `log ${total('log')}, webhooks ${total('webhooks')} of ${committed.length}`);
        // Let both replicas poll a few more times: a duplicate would show up now.
        await delay(150);
        await Promise.all([relayA.stop(), relayB.stop()]);

        for (const sink of ['log', 'webhooks'] as const) {
          const times = new Map<string, number>();
          for (const id of [...sentIds(a[sink]), ...sentIds(b[sink])]) times.set(id, (times.get(id) ?? 0) + 1);
          const twice = [...times].filter(([, n]) => n > 1).map(([id]) => id);
          const missing = committed.filter((id) => !times.has(id));
          assert.deepEqual(twice, [], `${sink}: no event sent twice`);
          assert.deepEqual(missing, [], `${sink}: no event missing`);
          assert.equal(times.size, committed.length);
          for (const r of [a, b]) assertAscendingSeqs(r[sink].calls, `replica ${r.replica} ${sink}`);
          // Across replicas too: a replica claims nothing past a batch the other has in flight.
          const position = new Map(arrived[sink].map((id, i) => [id, i]));
          byWriter.forEach((ids, w) => {
            const late = ids.findIndex((id, i) => i > 0 && position.get(id)! < position.get(ids[i - 1]!)!);
            assert.equal(late, -1, `${sink} got writer ${w}'s ${ids[late]} before its ${ids[late - 1]}, committed first`);
          });
          // Both replicas took a share (the wake-ups alternate), so the claims really raced.
          assert.ok(sentIds(a[sink]).length > 0 && sentIds(b[sink]).length > 0, `${sink}: A sent ${sentIds(a[sink]).length}, B sent ${sentIds(b[sink]).length}`);
        }
        // A failed statement (a deadlock between the replicas' marks, say) would re-send a batch.
        assert.deepEqual(lines.map((l) => l.msg), [], 'the replicas neither fail nor retry');
        assert.equal(relayA.sent.log! + relayB.sent.log!, committed.length);
        assert.equal(relayA.sent.webhooks! + relayB.sent.webhooks!, committed.length);
      },
    );

    test('a failing sink backs off with growing, bounded delays while the other keeps sending; warns once, logs recovery, and rows are deleted only after both', async () => {
      const { log: logger, lines } = capturingLogger();
      let down = true;
      const [minBackoffMs, maxBackoffMs] = [20, 160];
      const clock = new FakeClock(Date.now());
      const log = recordingSink('log');
      const webhooks = recordingSink(
        'webhooks',
        () => {
          if (down) throw new Error('connect ECONNREFUSED 127.0.0.1:7443');
        },
        () => clock.now(),
      );
      const relay = startRelay([log, webhooks], { log: logger, minBackoffMs, maxBackoffMs, clock });
      const first = await commitEvents(world.db, 3);
      relay.wake();
      assert.ok(await eventually(() => sentIds(log).length === 3 && webhooks.attempts.length === 1, 3000), 'the first attempts were made');
      await pass(clock, 300, 1);
      // Mid-outage commits still reach the log.
      const second = await commitEvents(world.db, 2);
      relay.wake();
      const committed = [...first, ...second];
      assert.ok(await eventually(() => sentIds(log).length === committed.length, 3000), 'the log keeps receiving while webhooks is down');
      await pass(clock, 400, 1);

      // ~700 ms of outage: with delays 20, 40, 80, 160, 160, ... (random 0.5: no jitter) that is
      // at most 7 attempts; without backoff it would be hundreds.
      const failed = webhooks.attempts.map((t) => t.atMs);
      assert.ok(failed.length >= 4 && failed.length <= 8, `webhooks attempts during the outage: ${failed.length}`);
      const gaps = failed.slice(1).map((t, i) => t - failed[i]!);
      gaps.forEach((gapMs, i) => {
        const expectedMs = Math.min(maxBackoffMs, minBackoffMs * 2 ** i);
        // On the fake clock retries come exactly on time; the bounds are those the wall clock needed.
        assert.ok(gapMs >= expectedMs - 1, `retry ${i + 1} came after ${gapMs.toFixed(1)} ms, before its ${expectedMs} ms backoff`);
        assert.ok(gapMs < expectedMs * 1.2 + 300, `retry ${i + 1} came after ${gapMs.toFixed(1)} ms; backoff was ${expectedMs} ms`);
      });
      assert.equal(webhooks.calls.length, 0);
      const held = await outboxRows(world.db);
      assert.deepEqual(held.map((r) => r.event_id), committed, 'nothing is deleted while webhooks lacks it');
      assert.ok(held.every((r) => r.log_done_at !== null && r.webhooks_done_at === null));

      down = false;
      await pass(clock, maxBackoffMs, 1); // the next retry
      assert.ok(await eventually(() => outboxEmpty(world.db), 3000), 'rows are deleted once webhooks has them too');
      assert.deepEqual(sentIds(webhooks), committed);
      assert.deepEqual(sentIds(log), committed);

      const warnings = lines.filter((l) => l.level === WARN);
      assert.equal(warnings.length, 1, `one warning for the outage, got: ${warnings.map((l) => l.msg).join(' | ')}`);
      assert.equal(warnings[0]!.sink, 'webhooks');
      assert.equal(warnings[0]!.retry_in_ms, minBackoffMs);
      assert.match(warnings[0]!.msg, /cannot send events to webhooks.*check that webhooks is running/);
      const recovered = lines.filter((l) => l.level === INFO && /reaches webhooks again/.test(l.msg));
      assert.equal(recovered.length, 1, 'one line when webhooks is reached again');
      assert.ok(recovered[0]!.down_ms! >= 600, `down_ms ${recovered[0]!.down_ms}`);
      assert.ok(!lines.some((l) => l.sink === 'log'), 'nothing logged about the healthy sink');
    });

    test('a replica whose send never completes holds its lease until it expires; then another replica re-sends the rows and nothing is lost', async () => {
      const leaseMs = 5_000;
      const hung = gate();
      const logA = recordingSink('log', () => hung.opened);
      const webhooksA = recordingSink('webhooks');
      const relayA = startRelay([logA, webhooksA], { leaseMs });
      const committed = await commitEvents(world.db, 6);
      relayA.wake();
      try {
        assert.ok(await eventually(() => logA.attempts.length === 1 && sentIds(webhooksA).length === 6, 3000));
        assert.deepEqual(logA.attempts[0]!.events.map((e) => e.id), committed);

        const clockB = new FakeClock(Date.now());
        const logB = recordingSink('log');
        const webhooksB = recordingSink('webhooks');
        const relayB = startRelay([logB, webhooksB], { db: await world.replica(), leaseMs, clock: clockB });
        relayB.wake();
        await settled(clockB, 1); // B looked after the wake-up and went back to sleep
        assert.equal(logB.attempts.length, 0, 'a live lease is not taken over');
        const leased = await outboxRows(world.db);
        assert.equal(leased.length, 6);
        // A's webhooks call returned, but A finishes its batch once both calls have: no mark yet.
        assert.ok(leased.every((r) => r.log_done_at === null && r.webhooks_done_at === null && r.log_lease_until !== null));

        clockB.advance(leaseMs + 1_000);
        relayB.wake();
        assert.ok(await eventually(() => outboxEmpty(world.db), 3000), 'B re-sends the rows A never finished; they are deleted');
        assert.deepEqual(sentIds(logB), committed, 'every row reaches the log through B, once, in order');
        assert.deepEqual(sentIds(webhooksB), committed, 'and webhooks again: it ignores events it has');
        assert.equal(logA.calls.length, 0);
      } finally {
        // A's call finally returns (its deadline, in a real sink): it finishes rows already gone.
        hung.open();
      }
      await relayA.stop();
      assert.equal(logA.calls.length, 1, "A's late success is harmless: sinks are idempotent on the event id");
    });

    test('rows a crashed replica claimed (a lease and no mark) hold the rows after them until the lease expires; then all go, in order', async () => {
      const committed = await commitEvents(world.db, 4);
      // What a claim leaves behind when the process dies before finishing the batch; a relay of an
      // earlier version leased rows for one sink only, which holds them just the same.
      await world.db.query(`UPDATE ${SCHEMA}.outbox SET webhooks_lease_until = $1 WHERE seq IN (SELECT seq FROM ${SCHEMA}.outbox ORDER BY seq LIMIT 3)`, [new Date(Date.now() + 10_000)]);
      const clock = new FakeClock(Date.now());
      const log = recordingSink('log');
      const webhooks = recordingSink('webhooks');
      const relay = startRelay([log, webhooks], { clock });
      relay.wake();
      await settled(clock, 1); // the relay looked after the wake-up and went back to sleep
      // The fourth row is free, but sending it now would put it before the three in each sink.
      assert.equal(log.attempts.length + webhooks.attempts.length, 0, 'nothing passes a live lease');

      clock.advance(11_000);
      relay.wake();
      assert.ok(await eventually(() => outboxEmpty(world.db), 3000));
      for (const sink of [log, webhooks]) assert.deepEqual(sentIds(sink), committed, `${sink.name}: nothing is lost, and the order holds`);
    });

    test('wake() sends a commit at once despite a long poll interval, also when it arrives during a send; stop() returns promptly when idle', async () => {
      const pollIntervalMs = 60_000;
      const slowSend = gate();
      let holdLog = false;
      const log = recordingSink('log', () => (holdLog ? slowSend.opened : undefined));
      const webhooks = recordingSink('webhooks');
      const clock = new FakeClock(Date.now());
      const relay = startRelay([log, webhooks], { pollIntervalMs, clock });
      await settled(clock, 1); // the loop has found the outbox empty and waits for the poll

      const first = await commitEvents(world.db, 1);
      clock.advance(pollIntervalMs - 1);
      assert.deepEqual(clock.pending(), [1], 'the loop still waits for the poll');
      assert.equal(log.attempts.length + webhooks.attempts.length, 0, 'without a wake-up the commit waits for the poll');
      let t0 = performance.now();
      relay.wake();
      assert.ok(await eventually(() => sentIds(log).length === 1 && sentIds(webhooks).length === 1, 2000, 5));
      const wokenMs = performance.now() - t0;
      assert.ok(wokenMs < 1000, `sent ${wokenMs.toFixed(0)} ms after wake(), poll interval ${pollIntervalMs} ms`);
      // Every wake-up reaches both sinks: one claim serves both.
      const woken = [...first];
      for (let round = 1; round <= 5; round++) {
        woken.push(...(await commitEvents(world.db, 1)));
        t0 = performance.now();
        relay.wake();
        const both = await eventually(() => sentIds(log).length === woken.length && sentIds(webhooks).length === woken.length, 1000, 5);
        assert.ok(both, `wake-up ${round}: log has ${sentIds(log).length}, webhooks ${sentIds(webhooks).length} of ${woken.length} after ${(performance.now() - t0).toFixed(0)} ms`);
      }

      // A wake-up while the log's send is in flight is kept: the loop claims again right after.
      holdLog = true;
      const second = await commitEvents(world.db, 1);
      relay.wake();
      assert.ok(await eventually(() => log.attempts.length === woken.length + 1, 2000, 5));
      const third = await commitEvents(world.db, 1);
      relay.wake();
      holdLog = false;
      t0 = performance.now();
      slowSend.open();
      assert.ok(await eventually(() => sentIds(log).length === woken.length + 2, 2000, 5), 'the commit made during the send is sent without waiting for the poll');
      assert.ok(performance.now() - t0 < 1000);
      assert.deepEqual(sentIds(log), [...woken, ...second, ...third]);
      assert.ok(await eventually(() => outboxEmpty(world.db), 2000));

      await settled(clock, 1);
      t0 = performance.now();
      await relay.stop();
      const stopMs = performance.now() - t0;
      assert.ok(stopMs < 500, `stop() while idle took ${stopMs.toFixed(0)} ms`);
    });

    test('stop() returns promptly while a failing sink backs off', async () => {
      const failing = recordingSink('webhooks', () => {
        throw new Error('webhooks unavailable');
      });
      const clock = new FakeClock(Date.now());
      const relay = startRelay([recordingSink('log'), failing], { minBackoffMs: 60_000, maxBackoffMs: 60_000, clock });
      await commitEvents(world.db, 1);
      relay.wake();
      assert.ok(await eventually(() => failing.attempts.length === 1, 2000, 5));
      // The loop polls for the log meanwhile, and webhooks is not called again before its 60 s backoff.
      await pass(clock, 500, 1);
      assert.equal(failing.attempts.length, 1, 'no retry within the backoff');
      const t0 = performance.now();
      await relay.stop();
      const stopMs = performance.now() - t0;
      assert.ok(stopMs < 500, `stop() while backing off took ${stopMs.toFixed(0)} ms`);
      assert.equal(failing.attempts.length, 1);
    });

    test('a batch goes in one call; each row with a sampled trace gets a PRODUCER span continuing it and the sink gets that span as its trace context; the call runs in the first row\'s span', async () => {
      const sampled1 = { traceId: '1f'.repeat(16), spanId: '2e'.repeat(8), traceFlags: TraceFlags.SAMPLED, traceState: createTraceState('vendor=blue') };
      const unsampled = { traceId: 'a1'.repeat(16), spanId: 'b2'.repeat(8), traceFlags: TraceFlags.NONE };
      const sampled2 = { traceId: '3d'.repeat(16), spanId: '4c'.repeat(8), traceFlags: TraceFlags.SAMPLED };
      /** Commits one event written under `span` (none: no active trace), as a traced handler would. */
      const commitUnder = async (span?: typeof sampled1 | typeof unsampled) => {
        const event = testEvent();
        const ctx = span ? trace.setSpanContext(ROOT_CONTEXT, { ...span, isRemote: true }) : ROOT_CONTEXT;
        await context.with(ctx, () => world.db.transaction((tx) => outbox.add(tx, [event], new Date())));
        return event.id;
      };
      const order = [await commitUnder(sampled1), await commitUnder(), await commitUnder(unsampled), await commitUnder(sampled2)];
      const [traced1, plain, untraced, traced2] = order as [string, string, string, string];
      const stored = (await world.db.query<{ trace_context: Record<string, string> }>(`SELECT trace_context FROM ${SCHEMA}.outbox ORDER BY seq`)).rows.map((r) => r.trace_context);
      assert.deepEqual(
        stored.map((c) => c.traceparent?.slice(-2) ?? 'none'),
        ['01', 'none', '00', '01'],
        'Outbox.add stored the trace context active when each row was written',
      );

      // The span active while the sink sends: the sink's own RPC becomes its child.
      const activeDuringSend: Record<string, string | undefined> = {};
      const sinks = (['log', 'webhooks'] as const).map((name) =>
        recordingSink(name, () => {
          activeDuringSend[name] = trace.getActiveSpan()?.spanContext().spanId;
        }),
      );
      startRelay(sinks);
      assert.ok(await eventually(() => sinks.every((s) => sentIds(s).length === 4) && spans.getFinishedSpans().length >= 4, 3000));

      const relaySpans = spans.getFinishedSpans();
      assert.equal(relaySpans.length, 4, `one recorded span per sampled row and sink, got ${relaySpans.map((s) => s.name).join(', ')}`);
      assert.ok(!relaySpans.some((s) => s.spanContext().traceId === unsampled.traceId), 'nothing is recorded for an unsampled trace');
      for (const sink of sinks) {
        assert.deepEqual(sink.calls.map((c) => c.map((e) => e.id)), [order], `${sink.name}: the whole batch in one call, in outbox order`);
        const relayed = new Map(sink.calls.flat().map((e) => [e.id, e.traceContext]));
        for (const [eventId, parent] of [[traced1, sampled1], [traced2, sampled2]] as const) {
          const span = relaySpans.find((s) => s.name === `outbox.relay ${sink.name}` && s.attributes['messaging.message.id'] === eventId);
          assert.ok(span, `a span for ${eventId} on ${sink.name}`);
          assert.equal(span.kind, SpanKind.PRODUCER);
          assert.equal(span.spanContext().traceId, parent.traceId, 'the span continues the trace the event was written in');
          assert.equal(span.parentSpanContext?.spanId, parent.spanId, "the span's parent is the event's traceparent");
          assert.equal(span.attributes['messaging.destination.name'], sink.name);
          assert.equal(span.attributes['messaging.batch.message_count'], 4);
          assert.equal(relayed.get(eventId)!.traceparent, `00-${parent.traceId}-${span.spanContext().spanId}-01`, "the sink gets the relay span's trace context");
          if (parent === sampled1) {
            assert.equal(relayed.get(eventId)!.tracestate, 'vendor=blue', 'tracestate is carried on');
            assert.equal(activeDuringSend[sink.name], span.spanContext().spanId, "the call runs in the first event's relay span");
          }
        }
        // Unsampled stays unsampled (the sink's spans are not recorded either), in the same trace.
        assert.match(relayed.get(untraced)!.traceparent ?? '', new RegExp(`^00-${unsampled.traceId}-[0-9a-f]{16}-00$`));
        assert.deepEqual(relayed.get(plain), {}, 'a row without a trace context is sent without one');
      }
    });

    test('after a partial batch the relay lingers so events committed meanwhile go together; the first event after a quiet spell goes at once', async () => {
      const lingerMs = 400;
      const clock = new FakeClock(Date.now());
      const log = recordingSink('log', undefined, () => clock.now());
      const webhooks = recordingSink('webhooks');
      const relay = startRelay([log, webhooks], { lingerMs, pollIntervalMs: 60_000, clock });
      await settled(clock, 1);
      const first = await commitEvents(world.db, 1);
      const t0 = clock.now();
      relay.wake();
      assert.ok(await eventually(() => log.calls.length === 1, 2000, 5));
      const firstMs = log.attempts[0]!.atMs - t0;
      assert.ok(firstMs < lingerMs / 2, `the first event went ${firstMs.toFixed(0)} ms after its commit`);
      const more: string[] = [];
      for (let i = 0; i < 3; i++) {
        more.push(...(await commitEvents(world.db, 1)));
        relay.wake();
      }
      await pass(clock, lingerMs, 1); // the wake-ups do not cut the linger short; its end does
      assert.ok(await eventually(() => sentIds(log).length === 4, 3000, 5));
      assert.deepEqual(log.calls.map((c) => c.map((e) => e.id)), [first, more], 'the three later commits went in one call');
      const gapMs = log.attempts[1]!.atMs - log.attempts[0]!.atMs;
      assert.ok(gapMs >= lingerMs - 1, `the second call came ${gapMs.toFixed(0)} ms after the first; linger is ${lingerMs} ms`);
      // Stopping while lingering does not wait the linger out.
      await settled(clock, 1);
      const stopT0 = performance.now();
      await relay.stop();
      assert.ok(performance.now() - stopT0 < lingerMs / 2, 'stop() cuts the linger short');
    });
  });
}
