// The ledger's constraints behind the rules, on PGlite and PostgreSQL: a booking that slips past
// the checks (a race the checks cannot see, here forced by booking directly) is refused by the
// database, and the store turns each refusal into the contract's error, with nothing booked. The
// audit finds a ledger changed behind the transfers' back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Outbox, Status, migrate, type Database } from '@gantry/kit';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { creditAccount, escrowAccount, walletAccount } from '../src/domain/ledger.js';
import { SETTLEMENT_SCHEMA, SettlementStore, settlementMigrations, type RequestKey } from '../src/store/settlement-store.js';
import { openFreshDatabase } from './support.js';

requirePostgresInCi('the settlement store tests');

const NOW = new Date('2026-11-23T12:00:00Z');
const WALLET = '0x' + 'ab'.repeat(20);
const request: RequestKey = { owner: 'admin', key: 'k', operation: 'test', digest: Buffer.alloc(0) };
const line = (sessionId: string, creditLimitMinor: bigint) => ({ sessionId, walletAddress: WALLET, creditLimitMinor, createdAt: NOW, expiresAt: new Date(NOW.getTime() + 60_000) });

for (const engine of engines()) {
  describe(`settlement store: the database's refusals as contract errors on ${engine.name}`, { skip: engine.skip }, () => {
    let world: { db: Database; close(): Promise<void> };
    let store: SettlementStore;
    before(async () => {
      world = await openFreshDatabase(engine.name, 't_settle_store');
      await migrate(world.db, SETTLEMENT_SCHEMA, settlementMigrations);
      store = new SettlementStore(world.db, new Outbox(SETTLEMENT_SCHEMA, 'gantry.settlement', false));
    });
    after(async () => world?.close());

    test('a booking that would take an account below zero is FAILED_PRECONDITION "insufficient funds"', async () => {
      const withdraw = { id: 'w1', debit: walletAccount(WALLET), credit: 'funding', amountMinor: 5n, kind: 'withdraw' as const };
      await assert.rejects(
        store.transaction(async (tx) => (await tx.openAccounts([walletAccount(WALLET)]), await tx.book([withdraw], { now: NOW }, request, {}))),
        { code: Status.FAILED_PRECONDITION, message: 'insufficient funds: the booking would take an account below zero' },
      );
      assert.deepEqual(await store.balances([walletAccount(WALLET)]), new Map(), 'rolled back: not even the account was opened');
    });

    test('a second unsettled line for a wallet is FAILED_PRECONDITION', async () => {
      await assert.rejects(store.transaction(async (tx) => (await tx.insertLine(line('s1', 10n)), await tx.insertLine(line('s2', 10n)))), {
        code: Status.FAILED_PRECONDITION,
        message: 'the wallet already has an unsettled credit line; settle it first',
      });
    });

    test('a draw past the credit limit is FAILED_PRECONDITION, even when the credit account could pay it', async () => {
      const s = 's3';
      await store.transaction(async (tx) => {
        await tx.insertLine(line(s, 10n));
        await tx.openAccounts([creditAccount(s), escrowAccount(s)]);
        await tx.book([{ id: 'fund-s3', debit: 'funding', credit: creditAccount(s), amountMinor: 100n, kind: 'deposit' }], { now: NOW }, request, {});
      });
      const draw = { id: 'd1', debit: creditAccount(s), credit: escrowAccount(s), amountMinor: 11n, kind: 'draw' as const };
      await assert.rejects(store.transaction((tx) => tx.book([draw], { sessionId: s, now: NOW, drawnMinor: 11n }, request, {})), {
        code: Status.FAILED_PRECONDITION,
        message: 'the draw exceeds the credit line',
      });
      assert.equal((await store.balances([escrowAccount(s)])).get(escrowAccount(s)), 0n);
    });

    test('the audit names an account whose posted totals disagree with its transfers, and balances that do not add up to zero', async () => {
      assert.deepEqual(await store.audit(), []);
      await world.db.query(`UPDATE settlement.accounts SET credits_posted = credits_posted + 5 WHERE id = 'house'`);
      assert.deepEqual(await store.audit(), ['account house: posted 0/5, transfers 0/0', 'balances add up to 5, not 0: money was created or destroyed']);
    });
  });
}
