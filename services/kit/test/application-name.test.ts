// Every connection a service opens to PostgreSQL carries its name (application_name), so
// pg_stat_activity and PostgreSQL's logs say which service holds a connection or ran a statement;
// the benchmarks split PostgreSQL's CPU between services by it.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openPostgres } from '../src/storage/postgres.js';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';

requirePostgresInCi('the application_name tests');

describe('application_name on PostgreSQL connections', { skip: postgresSkip() }, () => {
  const databases: { drop(): Promise<void> }[] = [];
  after(async () => {
    for (const d of databases) await d.drop();
  });

  /** application_name of every other backend of the database, once the pool, the ordered connection, LISTEN and the probe are open. */
  async function namesSeen(url: string, applicationName?: string): Promise<string[]> {
    const db = await openPostgres({ url, ...(applicationName ? { applicationName } : {}), poolSize: 2, statementTimeoutMs: 30_000, pingIntervalMs: 50 });
    try {
      await db.ordered.query('SELECT 1');
      await db.listen('t_application_name', () => {});
      await new Promise((r) => setTimeout(r, 200)); // the probe's first round
      const { rows } = await db.query<{ name: string }>(`SELECT application_name AS name FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid`);
      return rows.map((r) => r.name);
    } finally {
      await db.close();
    }
  }

  test('the pool, the ordered connection, LISTEN and the reachability probe all carry the name', async () => {
    const database = await freshPostgresDatabase('t_appname');
    databases.push(database);
    const names = await namesSeen(database.url, 'gantry-log+webhooks');
    assert.ok(names.length >= 3, `expected the ordered, LISTEN and probe connections beside the pool's, saw ${JSON.stringify(names)}`);
    assert.deepEqual(new Set(names), new Set(['gantry-log+webhooks']));
  });

  test('an application_name in the database URL wins', async () => {
    const database = await freshPostgresDatabase('t_appname');
    databases.push(database);
    const url = new URL(database.url);
    url.searchParams.set('application_name', 'from-the-url');
    assert.deepEqual(new Set(await namesSeen(url.toString(), 'gantry-log')), new Set(['from-the-url']));
  });
});
