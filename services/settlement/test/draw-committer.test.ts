// Group commit of draws, on PGlite and PostgreSQL, through the handlers: draws that arrive together
// share one transaction, each decided by the domain rules in arrival order on its line as the
// batch left it; each caller gets its own outcome, refused draws book nothing and keep their
// nonces free, a nonce twice in one burst books once, a draw the database refuses fails alone, a
// full queue answers RESOURCE_EXHAUSTED. And nonces past the signature window are pruned in
// bounded batches, while the ledger and admin transfer ids stay.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { GantryError, Outbox, Status, migrate, type Database, type HandlerContext } from '@gantry/kit';
import { eventsv1, type settlementv1 } from '@gantry/proto';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { settlementHandlers } from '../src/api/handlers.js';
import { SettlementWallet, generateWallet } from '../src/client/index.js';
import { SETTLEMENT_EVENT_SOURCE, SETTLEMENT_EVENT_TYPES } from '../src/events.js';
import type { DrawCommitLimits } from '../src/store/draw-committer.js';
import { NONCE_RETENTION_MS, NoncePruner } from '../src/store/nonce-pruner.js';
import { SETTLEMENT_SCHEMA, SettlementStore, settlementMigrations, type LedgerTx } from '../src/store/settlement-store.js';
import { openFreshDatabase } from './support.js';

requirePostgresInCi('the settlement draw committer tests');

/** Counts the store's transactions: a batch is one. */
class CountingStore extends SettlementStore {
  begun = 0;
  override transaction<T>(fn: (tx: LedgerTx) => Promise<T>): Promise<T> {
    this.begun++;
    return super.transaction(fn);
  }
}

const ctx = { principal: { subject: 'treasury' } } as HandlerContext;
const silentLog = { warn: () => {} } as never;

for (const engine of engines()) {
  describe(`settlement draw batches on ${engine.name}`, { skip: engine.skip }, () => {
    let world: { db: Database; close(): Promise<void> };
    const nowMs = Date.now();
    before(async () => {
      world = await openFreshDatabase(engine.name, 't_settle_batch');
      await migrate(world.db, SETTLEMENT_SCHEMA, settlementMigrations);
    });
    after(async () => world?.close());

    /**
     * Handlers whose draws wait `lingerMs` for each other in one transaction slot, so a burst of
     * concurrent draws is one batch; `newId` may be replaced.
     */
    function platform(limits: Partial<DrawCommitLimits> = {}, newId: () => string = randomUUID) {
      const outbox = new Outbox(SETTLEMENT_SCHEMA, SETTLEMENT_EVENT_SOURCE, true, SETTLEMENT_EVENT_TYPES);
      const store = new CountingStore(world.db, outbox);
      const drawLimits = { maxBatch: 256, maxQueued: 4096, maxTxInFlight: 1, lingerMs: 50, ...limits };
      const handlers = settlementHandlers({ store, events: outbox, now: () => nowMs, newId, flags: { getBooleanValue: async () => false }, maxSessionWinningsMinor: 100_000n, drawLimits });
      return { store, handlers };
    }

    /** A funded wallet with an approved line of `limit`. */
    async function line(h: ReturnType<typeof platform>['handlers'], limit: bigint) {
      const wallet = new SettlementWallet(generateWallet(), { now: () => nowMs });
      await h.deposit!({ walletAddress: wallet.address, amountMinor: 10_000n, transferId: `fund-${randomUUID()}`, memo: '' }, ctx);
      const { sessionId } = await h.approveCreditLine!(wallet.approve(limit, 3_600_000n), ctx);
      return { wallet, sessionId };
    }

    const drawsOf = async (sessionId: string) =>
      (await world.db.query<{ drawn_minor: bigint; draw_count: number }>('SELECT drawn_minor, draw_count FROM settlement.credit_lines WHERE session_id = $1', [sessionId])).rows[0];
    const eventsOf = async (sessionId: string) => {
      const { rows } = await world.db.query<{ payload: Buffer }>(`SELECT payload FROM settlement.outbox WHERE event_type = 'settlement.credit.drawn' ORDER BY seq`);
      return rows.map((r) => eventsv1.Event.decode(r.payload)).filter((e) => e.subject === sessionId);
    };
    const codeOf = (r: PromiseSettledResult<unknown>) => (r.status === 'rejected' ? (r.reason as GantryError).code : 'ok');

    test('concurrent draws on one line in one batch never overdraw it, and each answer counts the draws before it', async () => {
      const { store, handlers } = platform();
      const { wallet, sessionId } = await line(handlers, 100n);
      const before = store.begun;
      const results = await Promise.allSettled(Array.from({ length: 12 }, () => handlers.creditDraw!(wallet.draw(sessionId, 10n, 'race'), ctx)));
      assert.equal(store.begun - before, 1, 'one transaction for the burst');
      assert.deepEqual(results.map(codeOf), [...Array<string>(10).fill('ok'), Status.FAILED_PRECONDITION, Status.FAILED_PRECONDITION]);
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      assert.deepEqual(ok.map((r) => r.drawCount), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.deepEqual(ok.map((r) => r.remainingCreditMinor), [90n, 80n, 70n, 60n, 50n, 40n, 30n, 20n, 10n, 0n]);
      assert.deepEqual(ok.map((r) => r.l1BalanceAfterMinor), [9_990n, 9_980n, 9_970n, 9_960n, 9_950n, 9_940n, 9_930n, 9_920n, 9_910n, 9_900n]);
      assert.deepEqual(await drawsOf(sessionId), { drawn_minor: 100n, draw_count: 10 });
      assert.deepEqual((await eventsOf(sessionId)).map((e) => (e.data?.$case === 'creditDrawn' ? e.data.value.transferId : '')), ok.map((r) => r.transferId), 'one event per booked draw');
      assert.deepEqual(await store.audit(), []);
    });

    test('a batch of allowed and refused draws: each caller gets its own answer, the refused book nothing and keep their nonces', async () => {
      const { store, handlers } = platform();
      const a = await line(handlers, 100n);
      const b = await line(handlers, 100n);
      const stranger = new SettlementWallet(generateWallet(), { now: () => nowMs });
      const overdraw = a.wallet.draw(a.sessionId, 101n, 'too much');
      const expired = new SettlementWallet(generateWallet(), { now: () => nowMs - 60 * 60_000 });
      const before = store.begun;
      const results = await Promise.allSettled([
        handlers.creditDraw!(a.wallet.draw(a.sessionId, 30n, 'ok a'), ctx),
        handlers.creditDraw!(overdraw, ctx),
        handlers.creditDraw!(stranger.draw(b.sessionId, 1n, 'not mine'), ctx),
        handlers.creditDraw!(b.wallet.draw(randomUUID(), 1n, 'no such line'), ctx),
        handlers.creditDraw!(b.wallet.draw(b.sessionId, 40n, 'ok b'), ctx),
        handlers.creditDraw!(expired.draw(b.sessionId, 1n, 'stale signature'), ctx),
      ]);
      assert.equal(store.begun - before, 1, 'one transaction for the five signed draws');
      assert.deepEqual(results.map(codeOf), ['ok', Status.FAILED_PRECONDITION, Status.PERMISSION_DENIED, Status.NOT_FOUND, 'ok', Status.INVALID_ARGUMENT]);
      assert.match((results[1] as PromiseRejectedResult).reason.message, /draw of 101 exceeds the remaining credit of 70/);
      assert.deepEqual([await drawsOf(a.sessionId), await drawsOf(b.sessionId)], [{ drawn_minor: 30n, draw_count: 1 }, { drawn_minor: 40n, draw_count: 1 }]);
      // The refused draw's nonce was not used up.
      const { rows } = await world.db.query('SELECT 1 FROM settlement.requests WHERE owner = $1 AND key = $2', [a.wallet.address, overdraw.signature!.nonce]);
      assert.equal(rows.length, 0);
      assert.deepEqual(await store.audit(), []);
    });

    test('a nonce twice in one burst: the same request books once and both callers get its answer; another body under it is ALREADY_EXISTS', async () => {
      const { store, handlers } = platform();
      const { wallet, sessionId } = await line(handlers, 100n);
      const nonce = `burst-${randomUUID()}`;
      const signer = new SettlementWallet(wallet.keys, { now: () => nowMs, nonce: () => nonce });
      const draw = signer.draw(sessionId, 5n, 'once');
      const results = await Promise.allSettled([handlers.creditDraw!(draw, ctx), handlers.creditDraw!(draw, ctx), handlers.creditDraw!(signer.draw(sessionId, 6n, 'other body'), ctx)]);
      assert.deepEqual(results.map(codeOf), ['ok', 'ok', Status.ALREADY_EXISTS]);
      const [first, second] = results as PromiseFulfilledResult<settlementv1.CreditDrawResponse>[];
      assert.deepEqual(second!.value, first!.value);
      assert.deepEqual(await drawsOf(sessionId), { drawn_minor: 5n, draw_count: 1 });
      assert.equal((await eventsOf(sessionId)).length, 1);
      assert.deepEqual(await store.audit(), []);
    });

    test('a draw the database refuses fails alone: the rest of its batch is booked', async () => {
      // The batch's third transfer id repeats its first, so the batch fails; alone, the first and
      // second are booked and the third repeats the first's id again, so the database refuses it.
      const dup = `dup-${randomUUID()}`;
      const ids = [dup, randomUUID(), dup, dup, randomUUID(), dup];
      let n = 0;
      const { handlers } = platform({}, () => (n < ids.length ? ids[n++]! : randomUUID()));
      const setup = await line(platform().handlers, 100n);
      const results = await Promise.allSettled([1n, 2n, 3n].map((amount) => handlers.creditDraw!(setup.wallet.draw(setup.sessionId, amount, 'isolate'), ctx)));
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected']);
      assert.deepEqual(await drawsOf(setup.sessionId), { drawn_minor: 3n, draw_count: 2 });
    });

    test('a nonce another transaction claims while the batch decides: the batch waits for it, rolls back, and the draw is refused as a reuse', { skip: engine.name === 'PGlite' ? 'one connection: the other transaction cannot overlap' : false }, async () => {
      const { handlers } = platform({ lingerMs: 0 });
      const { wallet, sessionId } = await line(handlers, 100n);
      const nonce = `raced-${randomUUID()}`;
      const draw = new SettlementWallet(wallet.keys, { now: () => nowMs, nonce: () => nonce }).draw(sessionId, 5n, 'raced');
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let claimed!: () => void;
      const claimedNow = new Promise<void>((r) => (claimed = r));
      // Another request under the same nonce, uncommitted while the draw's batch runs.
      const other = world.db.transaction(async (sql) => {
        await sql.query(`INSERT INTO settlement.requests (owner, key, operation, digest, created_at, response) VALUES ($1, $2, 'CreditSettle', '\\x00', now(), '{}')`, [wallet.address, nonce]);
        claimed();
        await held;
      });
      await claimedNow;
      const drawn = handlers.creditDraw!(draw, ctx);
      await new Promise((r) => setTimeout(r, 200));
      release();
      await other;
      await assert.rejects(drawn, { code: Status.ALREADY_EXISTS });
      assert.deepEqual(await drawsOf(sessionId), { drawn_minor: 0n, draw_count: 0 });
    });

    test('a full queue answers RESOURCE_EXHAUSTED and books nothing for the draws it refused', async () => {
      const { handlers } = platform({ maxQueued: 3, lingerMs: 50 });
      const { wallet, sessionId } = await line(handlers, 100n);
      const results = await Promise.allSettled(Array.from({ length: 5 }, () => handlers.creditDraw!(wallet.draw(sessionId, 1n, 'queue'), ctx)));
      assert.deepEqual(results.map(codeOf), ['ok', 'ok', 'ok', Status.RESOURCE_EXHAUSTED, Status.RESOURCE_EXHAUSTED]);
      assert.deepEqual(await drawsOf(sessionId), { drawn_minor: 3n, draw_count: 3 });
    });

    test('nonces past the signature window are pruned in bounded batches; recent nonces, admin transfer ids and the ledger stay', async () => {
      const { store, handlers } = platform();
      const { sessionId } = await line(handlers, 100n);
      const old = new Date(nowMs - NONCE_RETENTION_MS - 1000);
      await world.db.query(
        `INSERT INTO settlement.requests (owner, key, operation, digest, created_at)
         SELECT '0x' || lpad(to_hex(i), 40, '0'), 'old-' || i, 'CreditDraw', '\\x00', $1 FROM generate_series(1, 7) i`,
        [old],
      );
      await world.db.query(`INSERT INTO settlement.requests (owner, key, operation, digest, created_at) VALUES ('admin', 'old-transfer', 'deposit', '\\x00', $1)`, [old]);
      const count = async (where: string) => Number((await world.db.query<{ n: bigint }>(`SELECT count(*) AS n FROM settlement.requests WHERE ${where}`)).rows[0]!.n);
      const recent = await count(`key NOT LIKE 'old-%'`);
      const all = await count('true');
      assert.equal(await store.pruneNonces(new Date(nowMs - NONCE_RETENTION_MS), 3), 3, 'one batch deletes at most its limit');
      const pruner = new NoncePruner(store, { now: () => nowMs, intervalMs: 60_000, batch: 3 }, silentLog);
      assert.equal(await pruner.prune(), 4, 'the rest, in batches');
      assert.equal(await count(`key LIKE 'old-%' AND owner <> 'admin'`), 0);
      assert.equal(await count(`key = 'old-transfer'`), 1, 'admin transfer ids are kept');
      assert.equal(await count(`key NOT LIKE 'old-%'`), recent, 'recent nonces are kept');
      assert.equal(await count('true'), all - 7);
      assert.ok((await drawsOf(sessionId)) !== undefined);
      assert.deepEqual(await store.audit(), []);
    });
  });
}
