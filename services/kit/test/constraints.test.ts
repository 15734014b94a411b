// A store's transactions on PGlite and PostgreSQL: the violation of a constraint its table names
// becomes that error after the rollback; any other error, or a named constraint violated in
// another way than the table says, reaches the caller unchanged; a transaction that succeeds
// commits and returns its value.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventWriter, failedPrecondition, mapConstraintError, openPglite, openPostgres, Outbox, Status, storeTransaction, type ConstraintErrors, type Database, type StoreTransactions } from '../src/index.js';
import { engines, freshPgliteDir, freshPostgresDatabase, type EngineName } from '@gantry/test-support/databases';

const SCHEMA = 'constraints_test';

class Tx extends EventWriter {
  async insert(id: string, n: number): Promise<void> {
    await this.sql.query(`INSERT INTO ${SCHEMA}.t (id, n) VALUES ($1, $2)`, [id, n]);
  }
}

async function openFresh(engine: EngineName): Promise<{ db: Database; close(): Promise<void> }> {
  if (engine === 'PGlite') {
    const dir = mkdtempSync(join(tmpdir(), 'gantry-constraints-'));
    await freshPgliteDir(join(dir, 'db'));
    const db = await openPglite(join(dir, 'db'));
    return { db, close: async () => (await db.close(), rmSync(dir, { recursive: true, force: true })) };
  }
  const fresh = await freshPostgresDatabase('t_constraints');
  const db = await openPostgres({ url: fresh.url, poolSize: 2, statementTimeoutMs: 10_000 });
  return { db, close: async () => (await db.close(), await fresh.drop()) };
}

for (const engine of engines()) {
  describe(`store transactions map constraint names to errors on ${engine.name}`, { skip: engine.skip }, () => {
    let world: { db: Database; close(): Promise<void> };
    let store: (errors: ConstraintErrors) => StoreTransactions<Tx>;
    const count = async () => Number((await world.db.query<{ n: bigint }>(`SELECT count(*) AS n FROM ${SCHEMA}.t`)).rows[0]?.n);
    before(async () => {
      world = await openFresh(engine.name);
      await world.db.exec(`CREATE SCHEMA ${SCHEMA}; CREATE TABLE ${SCHEMA}.t (id text CONSTRAINT t_unique_id PRIMARY KEY, n integer NOT NULL, CONSTRAINT n_positive CHECK (n > 0));`);
      const outbox = new Outbox(SCHEMA, 'gantry.constraints-test', false);
      store = (errors) => ({ db: world.db, outbox, begin: (sql) => new Tx(sql, outbox), errors });
    });
    after(async () => world?.close());

    const errors: ConstraintErrors = {
      n_positive: { violation: 'check', error: () => failedPrecondition('n must be positive') },
      t_unique_id: { violation: 'unique', error: () => failedPrecondition('that id is taken') },
    };

    test('a check or unique violation of a named constraint becomes its error, and the transaction books nothing', async () => {
      assert.equal(await storeTransaction(store(errors), async (tx) => (await tx.insert('a', 1), 'done')), 'done');
      await assert.rejects(storeTransaction(store(errors), async (tx) => (await tx.insert('b', 1), await tx.insert('c', 0))), { code: Status.FAILED_PRECONDITION, message: 'n must be positive' });
      await assert.rejects(storeTransaction(store(errors), (tx) => tx.insert('a', 2)), { code: Status.FAILED_PRECONDITION, message: 'that id is taken' });
      assert.equal(await count(), 1);
    });

    test('an unnamed constraint, or a named one violated another way, reaches the caller unchanged', async () => {
      await assert.rejects(storeTransaction(store({}), (tx) => tx.insert('d', 0)), (err: { code?: string; constraint?: string }) => err.code === '23514' && err.constraint === 'n_positive');
      const wrongKind: ConstraintErrors = { n_positive: { violation: 'unique', error: () => failedPrecondition('never') } };
      await assert.rejects(storeTransaction(store(wrongKind), (tx) => tx.insert('d', 0)), (err: { code?: string }) => err.code === '23514');
      const thrown = new Error('not the database');
      await assert.rejects(storeTransaction(store(errors), () => Promise.reject(thrown)), (err) => err === thrown);
    });
  });
}

describe('mapConstraintError', () => {
  test('leaves anything that is not a named violation as it is', () => {
    const errors: ConstraintErrors = { n_positive: { violation: 'check', error: () => new Error('never') } };
    for (const err of [undefined, null, 'text', { code: '23514' }, { code: '23514', constraint: 'other' }]) assert.equal(mapConstraintError(err, errors), err);
    const inherited = { code: '23514', constraint: 'toString' };
    assert.equal(mapConstraintError(inherited, errors), inherited, "names are the table's own keys, not inherited ones");
  });
});
