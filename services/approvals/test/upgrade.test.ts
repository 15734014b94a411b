// Approvals' database upgrades in place across the move of the outbox table into the kit: a
// database migrated by the list where migration 002 created approvals.outbox (kept verbatim in
// fixtures/) takes the new list by recording the kit's outbox version and changing nothing, keeps
// the events still waiting in its outbox, and writes new events there. A new database gets the
// kit's outbox before approvals' own migrations.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OUTBOX_MIGRATION_VERSION, Outbox, loadMigrations, migrate, migrationsApplied, type Database, type Migration } from '@gantry/kit';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { APPROVALS_EVENT_SOURCE, APPROVALS_EVENT_TYPES } from '../src/events.js';
import { APPROVALS_SCHEMA, ApprovalsStore, approvalsMigrations, type NewRequest } from '../src/store/approvals-store.js';
import { openFreshDatabase } from './support.js';

requirePostgresInCi('the approvals upgrade tests');

/** Approvals' migrations as they were before the kit owned the outbox: 002 created the table. */
const migrationsBefore: Migration[] = loadMigrations(fileURLToPath(new URL('../src/store/migrations', import.meta.url))).map((m) =>
  m.version === 2 ? { version: 2, name: 'outbox', sql: readFileSync(new URL('./fixtures/002_outbox.before-kit-outbox.sql', import.meta.url), 'utf8') } : m,
);

/** Submits one request through the store, in a transaction that writes its created event. */
async function submitOne(db: Database): Promise<void> {
  const store = new ApprovalsStore(db, new Outbox(APPROVALS_SCHEMA, APPROVALS_EVENT_SOURCE, true, APPROVALS_EVENT_TYPES));
  const now = new Date();
  const content = Buffer.from('raise the limit');
  const request: NewRequest = {
    id: randomUUID(),
    requester: 'alice',
    requestId: null,
    digest: Buffer.alloc(32),
    type: 'PARAMETER_CHANGE',
    priority: 1,
    title: 'upgrade',
    content,
    contentHash: createHash('sha256').update(content).digest(),
    validators: ['bob', 'carol'],
    requiredApprovals: 1,
    labels: {},
    createdAt: now,
    expiresAt: new Date(now.getTime() + 60_000),
  };
  await store.transaction((tx) => tx.insert(request));
}

async function outboxTypes(db: Database): Promise<string[]> {
  const { rows } = await db.query<{ event_type: string }>('SELECT event_type FROM approvals.outbox ORDER BY seq');
  return rows.map((r) => r.event_type);
}

for (const engine of engines()) {
  describe(`approvals migrations across the kit's outbox on ${engine.name}`, { skip: engine.skip }, () => {
    let world: { db: Database; close(): Promise<void> };
    before(async () => {
      world = await openFreshDatabase(engine.name, 't_approvals_upgrade');
    });
    after(async () => world?.close());

    test('a database migrated before takes only the kit outbox version, keeps its waiting events and writes new ones', async () => {
      const { db } = world;
      assert.deepEqual(await migrate(db, APPROVALS_SCHEMA, migrationsBefore), [1, 2]);
      await db.query(`INSERT INTO approvals.outbox (event_id, event_type, payload, created_at) VALUES ('evt_waiting', 'approvals.vote.cast', '\\x00', now())`);
      assert.equal(await migrationsApplied(db, APPROVALS_SCHEMA, approvalsMigrations), false, 'readiness waits for the kit version');

      assert.deepEqual(await migrate(db, APPROVALS_SCHEMA, approvalsMigrations), [OUTBOX_MIGRATION_VERSION]);
      assert.deepEqual(await migrate(db, APPROVALS_SCHEMA, approvalsMigrations), []);
      assert.equal(await migrationsApplied(db, APPROVALS_SCHEMA, approvalsMigrations), true);
      assert.deepEqual(await migrate(db, APPROVALS_SCHEMA, migrationsBefore), [], 'an old binary (a rollback) finds every version it knows applied');

      await submitOne(db);
      assert.deepEqual(await outboxTypes(db), ['approvals.vote.cast', 'approvals.approval.created']);
    });

    test('a new database gets the kit outbox first, then approvals 1 and 2', async () => {
      await world.db.exec('DROP SCHEMA approvals CASCADE');
      assert.deepEqual(await migrate(world.db, APPROVALS_SCHEMA, approvalsMigrations), [OUTBOX_MIGRATION_VERSION, 1, 2]);
      await submitOne(world.db);
      assert.deepEqual(await outboxTypes(world.db), ['approvals.approval.created']);
    });
  });
}
