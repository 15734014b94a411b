// Settlement's database upgrades in place across the move of the outbox table into the kit: a
// database migrated by the list where migration 003 created settlement.outbox (kept verbatim in
// fixtures/) takes the new list by recording the kit's outbox version and changing nothing, keeps
// the events still waiting in its outbox, and books on it (draws through the draw committer, since
// migration 005 dropped 003's try_draw), with their events. A new database gets the kit's
// outbox before settlement's own migrations.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  OUTBOX_MIGRATION_VERSION,
  Outbox,
  loadMigrations,
  migrate,
  migrationsApplied,
  type HandlerContext,
  type Database,
  type Migration,
} from '@gantry/kit';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { settlementHandlers } from '../src/api/handlers.js';
import { SettlementOperator, SettlementWallet, generateWallet } from '../src/client/index.js';
import { SETTLEMENT_EVENT_SOURCE, SETTLEMENT_EVENT_TYPES } from '../src/events.js';
import { SETTLEMENT_SCHEMA, SettlementStore, settlementMigrations } from '../src/store/settlement-store.js';
import { openFreshDatabase } from './support.js';

requirePostgresInCi('the settlement upgrade tests');

/** Settlement's migrations as they were before the kit owned the outbox: 003 created the table, and there was no 004. */
const migrationsBefore: Migration[] = loadMigrations(fileURLToPath(new URL('../src/store/migrations', import.meta.url)))
  .filter((m) => m.version <= 3)
  .map((m) => (m.version === 3 ? { version: 3, name: 'outbox', sql: readFileSync(new URL('./fixtures/003_outbox.before-kit-outbox.sql', import.meta.url), 'utf8') } : m));

/** The outbox's event types in order. */
async function outboxTypes(db: Database): Promise<string[]> {
  const { rows } = await db.query<{ event_type: string }>('SELECT event_type FROM settlement.outbox ORDER BY seq');
  return rows.map((r) => r.event_type);
}

/** Deposits, approves a line, draws on it and settles it, through the handlers. */
async function bookOneSession(db: Database): Promise<void> {
  const outbox = new Outbox(SETTLEMENT_SCHEMA, SETTLEMENT_EVENT_SOURCE, true, SETTLEMENT_EVENT_TYPES);
  const nowMs = Date.now();
  const deps = { store: new SettlementStore(db, outbox), events: outbox, now: () => nowMs, newId: randomUUID, flags: { getBooleanValue: async () => false }, maxSessionWinningsMinor: 100_000n };
  const handlers = settlementHandlers(deps);
  const ctx = { principal: { subject: 'treasury' } } as HandlerContext;
  const wallet = new SettlementWallet(generateWallet(), { now: () => nowMs });
  const operator = SettlementOperator.generate();
  await handlers.registerOperatorKey!({ publicKey: operator.publicKey, name: 'upgrade' }, ctx);
  await handlers.deposit!({ walletAddress: wallet.address, amountMinor: 1000n, transferId: 'upgrade-1', memo: '' }, ctx);
  const { sessionId } = await handlers.approveCreditLine!(wallet.approve(500n), ctx);
  const drawn = await handlers.creditDraw!(wallet.draw(sessionId, 200n, 'upgrade'), ctx);
  assert.equal(drawn.l2BalanceMinor, 200n);
  const settled = await handlers.creditSettle!(operator.cosign(wallet.settle(sessionId, 150n), { drawnMinor: 200n, drawCount: 1 }), ctx);
  assert.equal(settled.netPnlMinor, -50n);
}

for (const engine of engines()) {
  describe(`settlement migrations across the kit's outbox on ${engine.name}`, { skip: engine.skip }, () => {
    let world: { db: Database; close(): Promise<void> };
    before(async () => {
      world = await openFreshDatabase(engine.name, 't_settle_upgrade');
    });
    after(async () => world?.close());

    test('a database migrated before takes only the kit outbox version, keeps its waiting events and books with events on both paths', async () => {
      const { db } = world;
      assert.deepEqual(await migrate(db, SETTLEMENT_SCHEMA, migrationsBefore), [1, 2, 3]);
      await db.query(`INSERT INTO settlement.outbox (event_id, event_type, payload, created_at) VALUES ('evt_waiting', 'settlement.credit.drawn', '\\x00', now())`);
      assert.equal(await migrationsApplied(db, SETTLEMENT_SCHEMA, settlementMigrations), false, 'readiness waits for the kit version');

      assert.deepEqual(await migrate(db, SETTLEMENT_SCHEMA, settlementMigrations), [OUTBOX_MIGRATION_VERSION, 4, 5, 6, 7]);
      assert.deepEqual(await migrate(db, SETTLEMENT_SCHEMA, settlementMigrations), []);
      assert.equal(await migrationsApplied(db, SETTLEMENT_SCHEMA, settlementMigrations), true);
      // An old binary (a rollback) finds every version it knows applied.
      assert.deepEqual(await migrate(db, SETTLEMENT_SCHEMA, migrationsBefore), []);

      await bookOneSession(db);
      assert.deepEqual(await outboxTypes(db), ['settlement.credit.drawn', 'settlement.credit_line.approved', 'settlement.credit.drawn', 'settlement.credit_line.settled']);
    });

    test('a new database gets the kit outbox first, then settlement 1 to 7', async () => {
      await world.db.exec('DROP SCHEMA settlement CASCADE');
      assert.deepEqual(await migrate(world.db, SETTLEMENT_SCHEMA, settlementMigrations), [OUTBOX_MIGRATION_VERSION, 1, 2, 3, 4, 5, 6, 7]);
      await bookOneSession(world.db);
      assert.equal((await outboxTypes(world.db)).length, 3);
    });
  });
}
