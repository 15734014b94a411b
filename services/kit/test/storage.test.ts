import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Database } from '../src/storage/database.js';
import { loadMigrations, migrate, migrationsApplied, type Migration } from '../src/storage/migrations.js';
import { openPglite } from '../src/storage/pglite.js';
import { openPostgres } from '../src/storage/postgres.js';
import { isTransientDatabaseError } from '../src/storage/startup.js';
import { rowsOf } from '@gantry/test-support/copy-tuples';
import { freshPgliteDir, freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';

/** Plain CREATE TABLE (no IF NOT EXISTS): applying a migration twice would fail loudly. */
const migrationsFor = (schema: string): Migration[] => [
  { version: 1, name: 'items', sql: `CREATE TABLE ${schema}.items (id integer PRIMARY KEY, name text NOT NULL)` },
  { version: 2, name: 'items_note', sql: `ALTER TABLE ${schema}.items ADD COLUMN note text` },
];
const third = (schema: string): Migration => ({ version: 3, name: 'tags', sql: `CREATE TABLE ${schema}.tags (tag text PRIMARY KEY)` });

const appliedVersions = async (db: Database, schema: string) =>
  (await db.query<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations ORDER BY version`)).rows.map((r) => Number(r.version));

interface Engine {
  name: string;
  skip: string | false;
  /** Opens a handle on the engine's database; postgres may open several, pglite only one. */
  open(): Promise<Database>;
  /** Whether a second handle sees the same database (a server), so cross-handle tests apply. */
  shared: boolean;
  cleanup(): Promise<void>;
}

function pgliteEngine(): Engine {
  let dir: string | undefined;
  return {
    name: 'PGlite',
    skip: false,
    shared: false,
    async open() {
      dir = mkdtempSync(join(tmpdir(), 'gantry-storage-'));
      await freshPgliteDir(join(dir, 'db'));
      return openPglite(join(dir, 'db'));
    },
    async cleanup() {
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresEngine(): Engine {
  // A database of its own, not the server's admin database: a test here ends every connection of
  // its database, which there would also cut the connections of the test files running beside this
  // one (a CI run saw startup.test's CREATE DATABASE fail with 57P01).
  let fresh: ReturnType<typeof freshPostgresDatabase> | undefined;
  return {
    name: 'PostgreSQL',
    // In CI without a server, requirePostgresInCi's test fails once, clearly, instead of every test failing in a hook.
    skip: postgresSkip(),
    shared: true,
    async open() {
      fresh ??= freshPostgresDatabase('t_storage');
      return openPostgres({ url: (await fresh).url, poolSize: 4, statementTimeoutMs: 10_000 });
    },
    async cleanup() {
      if (fresh) await (await fresh).drop();
    },
  };
}

requirePostgresInCi('the storage tests');

for (const engine of [pgliteEngine(), postgresEngine()]) {
  describe(`storage on ${engine.name}`, { skip: engine.skip }, () => {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const handles: Database[] = [];
    let db: Database;
    let testNo = 0;
    /** A schema of its own for each test, under this run's prefix, dropped at the end. */
    const nextSchema = () => `${schema}_${++testNo}`;
    const open = async () => {
      const handle = await engine.open();
      handles.push(handle);
      return handle;
    };

    before(async () => {
      db = await open();
    });
    after(async () => {
      if (db) {
        const { rows } = await db.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE nspname LIKE $1', [`${schema}%`]);
        for (const { nspname } of rows) await db.query(`DROP SCHEMA ${nspname} CASCADE`);
      }
      await Promise.all(handles.map((h) => h.close()));
      await engine.cleanup();
    });

    test('migrate applies numbered migrations in order, once, and is idempotent', async () => {
      const s = nextSchema();
      assert.deepEqual(await migrate(db, s, migrationsFor(s)), [1, 2]);
      assert.deepEqual(await migrate(db, s, migrationsFor(s)), []);
      assert.deepEqual(await appliedVersions(db, s), [1, 2]);
      await db.query(`INSERT INTO ${s}.items (id, name, note) VALUES (1, 'a', 'from migration 2')`);

      assert.deepEqual(await migrate(db, s, [...migrationsFor(s), third(s)]), [3]);
      assert.deepEqual(await appliedVersions(db, s), [1, 2, 3]);
      assert.equal(await migrationsApplied(db, s, [...migrationsFor(s), third(s)]), true);
      assert.equal(await migrationsApplied(db, `${s}_absent`, migrationsFor(s)), false);
    });

    test('a failing migration leaves nothing of its batch applied', async () => {
      const s = nextSchema();
      const broken: Migration = { version: 3, name: 'broken', sql: 'SELECT * FROM no_such_table_anywhere' };
      await assert.rejects(migrate(db, s, [...migrationsFor(s), broken]), /no_such_table_anywhere/);
      assert.equal(await migrationsApplied(db, s, migrationsFor(s)), false);
      assert.deepEqual(await migrate(db, s, migrationsFor(s)), [1, 2]);
    });

    test('two concurrent migrate calls on two handles apply each migration exactly once', { skip: engine.shared ? false : 'PGlite has one handle per database' }, async () => {
      const s = nextSchema();
      const other = await open();
      const results = await Promise.all([migrate(db, s, migrationsFor(s)), migrate(other, s, migrationsFor(s))]);
      assert.deepEqual(results.flat().sort(), [1, 2], `applied: ${JSON.stringify(results)}`);
      assert.deepEqual(await appliedVersions(db, s), [1, 2]);
    });

    test('transaction commits when the function resolves and rolls back when it throws', async () => {
      const s = nextSchema();
      await migrate(db, s, migrationsFor(s));
      const committed = await db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${s}.items (id, name) VALUES ($1, $2)`, [1, 'kept']);
        return 'done';
      });
      assert.equal(committed, 'done');
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${s}.items (id, name) VALUES ($1, $2)`, [2, 'discarded']);
          const inside = await tx.query(`SELECT id FROM ${s}.items WHERE id = 2`);
          assert.equal(inside.rows.length, 1, 'the row is visible inside its transaction');
          throw new Error('boom');
        }),
        /boom/,
      );
      const { rows } = await db.query<{ id: number; name: string }>(`SELECT id, name FROM ${s}.items ORDER BY id`);
      assert.deepEqual(rows.map((r) => [Number(r.id), r.name]), [[1, 'kept']]);
    });

    test('a connection the server ends inside a transaction fails that transaction only: the process lives on and the next one commits', { skip: engine.shared ? false : 'PGlite has no server to end a connection' }, async () => {
      const s = nextSchema();
      await migrate(db, s, migrationsFor(s));
      const other = await open();
      const inside = db.transaction(async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        // What a fast shutdown or restart does to every session: FATAL 57P01, then the socket closes.
        await other.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
        await tx.query('SELECT pg_sleep(5)');
      });
      // The ended connection fails the statement in flight, or the next one when the end came first:
      // either way an error the RPC layer reports as UNAVAILABLE (retry), not INTERNAL.
      const err = await inside.then(
        () => assert.fail('the transaction committed on an ended connection'),
        (e: unknown) => e as Error,
      );
      assert.match(err.message, /terminat|connection error/i);
      assert.ok(isTransientDatabaseError(err), `transient: ${err.message}`);
      await db.transaction((tx) => tx.query(`INSERT INTO ${s}.items (id, name) VALUES (1, 'after')`));
      const { rows } = await db.query<{ name: string }>(`SELECT name FROM ${s}.items`);
      assert.deepEqual(rows.map((r) => r.name), ['after']);
    });

    test('every connection ended at once, idle, mid-query and mid-transaction, five times over: the process lives on and the pool serves again', { skip: engine.shared ? false : 'PGlite has no server to end a connection' }, async () => {
      const other = await open();
      const unlisten = await db.listen('storage_test_end_all', () => undefined);
      for (let round = 0; round < 5; round++) {
        // Work in every state a pooled connection can be in when the server ends it.
        const work = [
          ...Array.from({ length: 3 }, () => db.query('SELECT pg_sleep(0.5)')),
          ...Array.from({ length: 3 }, () => db.transaction(async (tx) => {
            await tx.query('SELECT 1');
            await new Promise((resolve) => setTimeout(resolve, 300));
            await tx.query('SELECT pg_sleep(0.2)');
          })),
        ].map((p) => p.then(() => 'ok', (e: unknown) => (isTransientDatabaseError(e) ? 'transient' : `other: ${(e as Error).message}`)));
        await new Promise((resolve) => setTimeout(resolve, 100));
        await other.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
        for (const outcome of await Promise.all(work)) assert.ok(outcome === 'ok' || outcome === 'transient', outcome);
      }
      await unlisten();
      const { rows } = await db.query<{ n: number }>('SELECT 1 AS n');
      assert.equal(Number(rows[0]!.n), 1);
    });

    test(engine.shared ? 'a NOTIFY from one handle reaches a listener on another' : 'a NOTIFY reaches a listener on the same handle', async () => {
      const channel = `${schema}_chan`;
      const sender = engine.shared ? await open() : db;
      const received: string[] = [];
      let arrived: () => void;
      const both = new Promise<void>((resolve) => (arrived = resolve));
      const unlisten = await db.listen(channel, (payload) => {
        received.push(payload);
        if (received.length === 2) arrived();
      });
      try {
        await sender.notify(channel, 'first');
        await sender.notify(channel, 'second');
        await Promise.race([both, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${received.length} of 2 notifications arrived`)), 3000))]);
        assert.deepEqual(received, ['first', 'second']);
      } finally {
        await unlisten();
      }
      // After unlisten, nothing more is delivered.
      await sender.notify(channel, 'third');
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(received, ['first', 'second']);
    });

    test('ordered statements run in the order they are called, each its own transaction: one that fails writes nothing and those after it still run', async () => {
      const s = nextSchema();
      await migrate(db, s, migrationsFor(s));
      // Each inserts its id only when the id before it is there: a statement run out of order would leave a hole.
      const insertAfter = (id: number) =>
        db.ordered.query(`INSERT INTO ${s}.items (id, name) SELECT $1::int, 'in order' WHERE $1::int = 1 OR EXISTS (SELECT 1 FROM ${s}.items WHERE id = $1::int - 1)`, [id]);
      const calls = [
        ...Array.from({ length: 20 }, (_, i) => insertAfter(i + 1)),
        db.ordered.query(`INSERT INTO ${s}.items (id, name) VALUES (21, 'first'), (1, 'a duplicate')`),
        insertAfter(21),
      ];
      const results = await Promise.allSettled(calls);
      assert.deepEqual(results.map((r) => r.status), [...Array<string>(20).fill('fulfilled'), 'rejected', 'fulfilled']);
      const { rows } = await db.query<{ id: number; name: string }>(`SELECT id, name FROM ${s}.items ORDER BY id`);
      assert.deepEqual(rows.map((r) => [Number(r.id), r.name]), Array.from({ length: 21 }, (_, i) => [i + 1, 'in order']), 'the failed statement wrote nothing, not even its id 21');
    });

    test('an ordered connection the server ends is replaced at the next statement', { skip: engine.shared ? false : 'PGlite has no server to end a connection' }, async () => {
      const backend = async () => Number((await db.ordered.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
      const before = await backend();
      await db.query('SELECT pg_terminate_backend($1)', [before]);
      let after: number | undefined;
      // A statement sent before the client has seen the connection end fails with it; the next opens a new one.
      for (let attempt = 0; attempt < 20 && after === undefined; attempt++) {
        after = await backend().catch(async () => void (await new Promise((r) => setTimeout(r, 50))));
      }
      assert.ok(after !== undefined && after !== before, `a new connection answered (${before} -> ${after})`);
    });

    // Kit bug on PGlite: src/storage/pglite.ts takes rowCount from `affectedRows ?? rows.length`, and
    // PGlite reports affectedRows 0 (not undefined) for a SELECT, so rowCount is 0 whatever it returned.
    test('rowCount is the number of rows a statement returned or changed', async () => {
      const s = nextSchema();
      await migrate(db, s, migrationsFor(s));
      assert.equal((await db.query(`INSERT INTO ${s}.items (id, name) VALUES (1, 'a'), (2, 'b')`)).rowCount, 2);
      assert.equal((await db.query(`UPDATE ${s}.items SET note = 'n'`)).rowCount, 2);
      assert.equal((await db.query(`SELECT id FROM ${s}.items WHERE id > 100`)).rowCount, 0);
      assert.equal((await db.query(`SELECT id FROM ${s}.items`)).rowCount, 2);
    });

    test('a statement is prepared once per connection, unless it asks to be planned on each call', { skip: engine.shared ? false : 'PGlite plans each statement anyway' }, async () => {
      // A transaction keeps both statements and the check on one connection, whose prepared
      // statements pg_prepared_statements lists.
      const marker = randomBytes(6).toString('hex');
      const reused = `SELECT $1::int AS n /* reused ${marker} */`;
      const replanned = `SELECT $1::int AS n /* replanned ${marker} */`;
      const listed = await db.transaction(async (tx) => {
        await tx.query(reused, [1]);
        await tx.query(replanned, [1], { planEachCall: true });
        const { rows } = await tx.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements WHERE statement LIKE $1', [`%${marker}%`]);
        return rows.map((r) => r.statement);
      });
      assert.deepEqual(listed, [reused]);
    });

    test('copyRows returns the rows as binary COPY tuples: every byte value, several MB, NULL, many rows and none', async () => {
      const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      assert.deepEqual(rowsOf(await db.copyRows("SELECT decode($1, 'hex'), NULL::bytea, int8send(7)", [everyByte.toString('hex')])), [[everyByte, undefined, Buffer.from('0000000000000007', 'hex')]]);
      // Larger than any one socket read: the rows arrive in many chunks.
      const large = rowsOf(await db.copyRows("SELECT decode(repeat('00ff7f', $1), 'hex') FROM generate_series(1, 3)", [500_000]));
      assert.deepEqual(large.map(([v]) => v?.length), [1_500_000, 1_500_000, 1_500_000]);
      assert.deepEqual(large[2]![0]!.subarray(0, 6), Buffer.from('00ff7f00ff7f', 'hex'));
      // Values in their binary send form: int8 big-endian, text as UTF-8.
      const rows = rowsOf(await db.copyRows('SELECT g::int8, $1::text FROM generate_series(1, $2) g ORDER BY g', ['é', 1000]));
      assert.deepEqual(rows.map(([n]) => n!.readBigInt64BE()), Array.from({ length: 1000 }, (_, i) => BigInt(i + 1)));
      assert.equal(rows[999]![1]!.toString('utf8'), 'é');
      assert.equal((await db.copyRows("SELECT decode($1, 'hex') WHERE false", ['00'])).length, 0);
    });

    test('copyRows takes a parameter as a value, never as SQL, and a failing statement leaves the pool serving', async () => {
      const hostile = "x'); SELECT pg_sleep(10); --\\ 'é";
      assert.equal(rowsOf(await db.copyRows("SELECT convert_to($1, 'UTF8')", [hostile]))[0]![0]!.toString('utf8'), hostile);
      assert.equal(rowsOf(await db.copyRows('SELECT $1::int8 + $2::int8', [2n ** 62n, 1]))[0]![0]!.readBigInt64BE(), 2n ** 62n + 1n);
      await assert.rejects(db.copyRows('SELECT 1 / $1::int8', [0]), /division by zero/);
      await assert.rejects(db.copyRows("SELECT decode($2, 'hex')", ['00']), /refers to \$2/);
      // Every connection of the pool still answers.
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => db.copyRows('SELECT $1::int4', [i])));
      assert.deepEqual(answers.map((b) => rowsOf(b)[0]![0]!.readInt32BE()), [0, 1, 2, 3, 4, 5, 6, 7]);
    });

    test('a channel name that is not a plain identifier is refused', async () => {
      await assert.rejects(db.listen('bad; DROP TABLE x', () => {}), /invalid notification channel/);
      await assert.rejects(db.notify('Bad-Name', 'x'), /invalid notification channel/);
    });
  });
}

test("a PGlite data directory is owner-only: 0700 while in use, every file 0600 at rest", async () => {
  const parent = mkdtempSync(join(tmpdir(), 'gantry-pglite-modes-'));
  const dir = join(parent, 'db');
  /** Entries under `dir` (and `dir` itself) that a group or other user could read, write or enter. */
  const open = () => [dir, ...readdirSync(dir, { recursive: true }).map((f) => join(dir, String(f)))].filter((p) => (lstatSync(p).mode & 0o077) !== 0 && !lstatSync(p).isSymbolicLink());
  try {
    const db = await openPglite(dir);
    await db.exec('CREATE TABLE later (id int)');
    assert.equal(statSync(dir).mode & 0o777, 0o700, 'no other user can reach the files, including those created after opening');
    await db.close();
    assert.deepEqual(open(), [], 'every file and directory is owner-only');
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

describe('loadMigrations', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gantry-migrations-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const folder = (files: Record<string, string>) => {
    const d = mkdtempSync(join(dir, 'm-'));
    for (const [name, sql] of Object.entries(files)) writeFileSync(join(d, name), sql);
    return d;
  };

  test('reads NNN_name.sql files in numeric order', () => {
    const d = folder({ '002_second.sql': 'SELECT 2', '001_first.sql': 'SELECT 1', '010_tenth.sql': 'SELECT 10', 'README.md': 'ignored' });
    assert.throws(() => loadMigrations(d), /without gaps; found 10 at position 3/);
    const ok = folder({ '002_second.sql': 'SELECT 2', '001_first.sql': 'SELECT 1', '003_third-one.sql': 'SELECT 3' });
    assert.deepEqual(loadMigrations(ok).map((m) => [m.version, m.name, m.sql]), [[1, 'first', 'SELECT 1'], [2, 'second', 'SELECT 2'], [3, 'third-one', 'SELECT 3']]);
  });

  test('a gap in the numbering is refused', () => {
    assert.throws(() => loadMigrations(folder({ '001_a.sql': 'SELECT 1', '003_c.sql': 'SELECT 3' })), /without gaps; found 3 at position 2/);
  });

  test('a duplicate number or a badly named file is refused', () => {
    assert.throws(() => loadMigrations(folder({ '001_a.sql': 'SELECT 1', '001_b.sql': 'SELECT 1' })), /without gaps/);
    assert.throws(() => loadMigrations(folder({ '001_a.sql': 'SELECT 1', 'two.sql': 'SELECT 2' })), /must be named NNN_name\.sql/);
  });
});
