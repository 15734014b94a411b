// Database helpers for Gantry's tests: PGlite data directories and the optional PostgreSQL server.
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Database } from '../src/storage/database.js';
import { openPglite } from '../src/storage/pglite.js';
import { openPostgres } from '../src/storage/postgres.js';

export type EngineName = 'PGlite' | 'PostgreSQL';

/**
 * Creates a PGlite data directory at `dir`. PGlite's initdb takes several seconds, so a template is
 * initialised once per machine (per PGlite build) and copied, which takes milliseconds.
 */
export async function freshPgliteDir(dir: string): Promise<void> {
  const wasm = statSync(fileURLToPath(import.meta.resolve('@electric-sql/pglite/pglite.wasm')));
  const template = join(tmpdir(), `gantry-kit-pglite-template-${wasm.size}-${Math.floor(wasm.mtimeMs)}`);
  if (!existsSync(template)) {
    const building = mkdtempSync(`${template}.building-`);
    const db = await openPglite(join(building, 'db'));
    await db.close();
    try {
      // Atomic: concurrent test processes may race to build it; the first rename wins.
      renameSync(join(building, 'db'), template);
    } catch {
      // Another process published the template first.
    }
    rmSync(building, { recursive: true, force: true });
  }
  cpSync(template, dir, { recursive: true });
}

/**
 * GANTRY_TEST_DATABASE_URL, or why PostgreSQL tests are skipped. In CI (CI=true) a missing server is
 * not a reason to skip: `skip` is false and `requireTestDatabaseUrl` fails the tests.
 */
export function testDatabase(): { url: string | undefined; skip: string | false } {
  const url = process.env.GANTRY_TEST_DATABASE_URL;
  if (url) return { url, skip: false };
  if (process.env.CI === 'true') return { url: undefined, skip: false };
  return { url: undefined, skip: 'GANTRY_TEST_DATABASE_URL is not set; to include PostgreSQL run: export GANTRY_TEST_DATABASE_URL=$(bash scripts/test-env/postgres.sh start)' };
}

/** The PostgreSQL URL for tests; throws (so the test fails) when it is missing. */
export function requireTestDatabaseUrl(): string {
  const { url } = testDatabase();
  if (!url) throw new Error('CI=true but GANTRY_TEST_DATABASE_URL is not set: PostgreSQL tests must run in CI; start a server with scripts/test-env/postgres.sh start');
  return url;
}

/**
 * Under CI=true without a server, registers one test, `a PostgreSQL server is configured for
 * <suites>`, that fails (the PostgreSQL suites themselves skip, see `postgresSkip`). Elsewhere it
 * registers nothing: with a server the suites run, without one they skip saying how to start it.
 */
export function requirePostgresInCi(suites: string): void {
  const { url, skip } = testDatabase();
  if (url || skip !== false) return;
  test(`a PostgreSQL server is configured for ${suites}`, () => {
    requireTestDatabaseUrl();
  });
}

/**
 * Why PostgreSQL suites are skipped, or false. Under CI=true without a server they are skipped too,
 * and one explicit test fails instead (`requireTestDatabaseUrl`).
 */
export function postgresSkip(): string | false {
  const { url, skip } = testDatabase();
  return url ? false : skip || 'no PostgreSQL server (GANTRY_TEST_DATABASE_URL)';
}

/** The engines a suite runs on, with the reason PostgreSQL is skipped. */
export function engines(): { name: EngineName; skip: string | false }[] {
  return [
    { name: 'PGlite', skip: false },
    { name: 'PostgreSQL', skip: postgresSkip() },
  ];
}

/**
 * An empty database on the test PostgreSQL server (GANTRY_TEST_DATABASE_URL), so a suite gets
 * schemas of its own (tests may disable triggers on them) and drops them afterwards.
 */
export async function freshPostgresDatabase(label = 't'): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = requireTestDatabaseUrl();
  const name = `${label}_${randomBytes(6).toString('hex')}`;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid database label ${label}`);
  const admin = await openPostgres({ url: adminUrl, poolSize: 1, statementTimeoutMs: 30_000 });
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.close();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const db = await openPostgres({ url: adminUrl, poolSize: 1, statementTimeoutMs: 30_000 });
      try {
        await db.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await db.close();
      }
    },
  };
}

/** An empty database of its own on `engine` (a PGlite directory, or a PostgreSQL database), for store-level tests. */
export async function openFreshDatabase(engine: EngineName, label: string): Promise<{ db: Database; close(): Promise<void> }> {
  if (engine === 'PGlite') {
    const dir = mkdtempSync(join(tmpdir(), `gantry-${label}-`));
    await freshPgliteDir(join(dir, 'db'));
    const db = await openPglite(join(dir, 'db'));
    return { db, close: async () => (await db.close(), rmSync(dir, { recursive: true, force: true })) };
  }
  const fresh = await freshPostgresDatabase(label);
  const db = await openPostgres({ url: fresh.url, poolSize: 2, statementTimeoutMs: 10_000 });
  return { db, close: async () => (await db.close(), await fresh.drop()) };
}
