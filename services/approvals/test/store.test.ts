// The approvals constraints behind the rules, on PGlite and PostgreSQL: what slips past the checks
// (a race the checks cannot see, here forced through the store directly) is refused by the
// database, and the store turns each refusal into its error: a raced request_id into
// IdempotencyRace (the handler answers as a retry), a change to a final approval into
// FAILED_PRECONDITION.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { Outbox, Status, migrate, type Database } from '@gantry/kit';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { APPROVALS_EVENT_SOURCE, APPROVALS_EVENT_TYPES } from '../src/events.js';
import { APPROVALS_SCHEMA, ApprovalsStore, IdempotencyRace, approvalsMigrations, type NewRequest } from '../src/store/approvals-store.js';
import { RequestCache } from '../src/store/request-cache.js';
import { openFreshDatabase } from './support.js';

requirePostgresInCi('the approvals store tests');

const NOW = new Date('2026-11-23T12:00:00Z');

function newRequest(requestId: string | null): NewRequest {
  const content = Buffer.from('raise the limit');
  return {
    id: randomUUID(),
    requester: 'alice',
    requestId,
    digest: Buffer.alloc(32),
    type: 'PARAMETER_CHANGE',
    priority: 1,
    title: 'constraints',
    content,
    contentHash: createHash('sha256').update(content).digest(),
    validators: ['bob', 'carol'],
    requiredApprovals: 1,
    labels: {},
    createdAt: NOW,
    expiresAt: new Date(NOW.getTime() + 60_000),
  };
}

for (const engine of engines()) {
  describe(`approvals store: the database's refusals as errors on ${engine.name}`, { skip: engine.skip }, () => {
    let world: { db: Database; close(): Promise<void> };
    let store: ApprovalsStore;
    before(async () => {
      world = await openFreshDatabase(engine.name, 't_approvals_store');
      await migrate(world.db, APPROVALS_SCHEMA, approvalsMigrations);
      store = new ApprovalsStore(world.db, new Outbox(APPROVALS_SCHEMA, APPROVALS_EVENT_SOURCE, false, APPROVALS_EVENT_TYPES));
    });
    after(async () => world?.close());

    test('a request_id taken by a concurrent submit is an IdempotencyRace', async () => {
      await assert.rejects(store.transaction(async (tx) => (await tx.insert(newRequest('same')), await tx.insert(newRequest('same')))), (err) => err instanceof IdempotencyRace);
    });

    test('a change to an approval that is already final is FAILED_PRECONDITION', async () => {
      const r = newRequest(null);
      await store.transaction((tx) => tx.insert(r));
      const vote = (validator: string) => ({ approvalId: r.id, type: 'FINALIZED' as const, state: 'APPROVED' as const, vote: { validator, decision: 'APPROVE' as const, reason: '' }, at: NOW, finalizedAt: NOW });
      await store.transaction(async (tx) => tx.record([vote('bob')], await tx.lockAll([r.id])));
      await assert.rejects(store.transaction(async (tx) => tx.record([vote('carol')], await tx.lockAll([r.id]))), {
        code: Status.FAILED_PRECONDITION,
        message: 'the approval is already final; votes are closed',
      });
    });

    test('a lock that waited for another vote\'s transaction reads the votes that transaction committed', { skip: engine.name !== 'PostgreSQL' && 'needs two connections' }, async () => {
      const r = { ...newRequest(null), validators: ['bob', 'carol', 'dave'], requiredApprovals: 3 };
      await store.transaction((tx) => tx.insert(r));
      const vote = (validator: string) => ({ approvalId: r.id, type: 'VOTED' as const, state: 'PENDING' as const, vote: { validator, decision: 'APPROVE' as const, reason: '' }, at: NOW, finalizedAt: null });
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let locked!: () => void;
      const lockedFirst = new Promise<void>((resolve) => (locked = resolve));
      const first = store.transaction(async (tx) => {
        const before = await tx.lockAll([r.id]);
        locked();
        await held;
        await tx.record([vote('bob')], before);
      });
      await lockedFirst;
      const second = store.transaction(async (tx) => (await tx.lockAll([r.id])).get(r.id)!);
      // The second waits on the row lock; let it be waiting, then commit the first.
      await new Promise((resolve) => setTimeout(resolve, 200));
      release();
      await first;
      const seen = await second;
      assert.deepEqual(seen.votes.map((v) => v.validator), ['bob']);
      assert.equal(seen.version, seen.votes[0]!.version);
      // Without a wait, the one statement reads them too.
      const again = await store.transaction(async (tx) => (await tx.lockAll([r.id])).get(r.id)!);
      assert.deepEqual(again.votes.map((v) => v.validator), ['bob']);
    });

    test('locking through the request cache gives what a full read gives, and reads again once another transaction changed the request', async () => {
      const r = { ...newRequest(null), validators: ['bob', 'carol', 'dave'], requiredApprovals: 3 };
      await store.transaction((tx) => tx.insert(r));
      const vote = (validator: string) => ({ approvalId: r.id, type: 'VOTED' as const, state: 'PENDING' as const, vote: { validator, decision: 'APPROVE' as const, reason: '' }, at: NOW, finalizedAt: null });
      const cache = new RequestCache();
      const cached = () => store.transaction(async (tx) => (await tx.lockAll([r.id, 'no-such-request'], cache)));
      const full = () => store.transaction(async (tx) => (await tx.lockAll([r.id, 'no-such-request'])));

      const first = await cached();
      assert.deepEqual([...first.keys()], [r.id], 'a request that does not exist is left out, as without the cache');
      assert.deepEqual(first.get(r.id), (await full()).get(r.id));
      assert.equal(cache.size, 1);
      assert.equal((await cached()).get(r.id), first.get(r.id), 'the kept request itself, not read again');

      // A change made without this cache (another replica's) takes a new version: the kept one is not used.
      await store.transaction(async (tx) => tx.record([vote('bob')], await tx.lockAll([r.id])));
      const afterVote = (await cached()).get(r.id)!;
      assert.notEqual(afterVote, first.get(r.id));
      assert.deepEqual(afterVote.votes.map((v) => v.validator), ['bob']);
      assert.deepEqual(afterVote, (await full()).get(r.id));
      assert.ok(Object.isFrozen(afterVote) && Object.isFrozen(afterVote.votes), 'kept requests are shared, so frozen');
    });
  });
}
