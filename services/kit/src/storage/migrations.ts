import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from './database.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Where the kit's own migrations start in a service's schema_migrations: the tables the kit owns
 * inside a service's schema (its outbox) are versioned from here, a service's numbered files from 1,
 * so neither can take a version the other has recorded, whatever either adds later.
 */
export const KIT_MIGRATION_VERSIONS_FROM = 1_000_000;

/** Schema names become SQL identifiers in DDL; allow only plain ones. */
export function assertSchemaName(schema: string): void {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid schema name: ${schema}`);
}

/** Reads `NNN_name.sql` files from a folder, in version order. */
export function loadMigrations(dir: string): Migration[] {
  const migrations = readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .map((file) => {
      const match = /^(\d+)_([\w-]+)\.sql$/.exec(file);
      if (!match) throw new Error(`migration file ${file} in ${dir} must be named NNN_name.sql`);
      return { version: Number(match[1]), name: match[2]!, sql: readFileSync(join(dir, file), 'utf8') };
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migrations in ${dir} must be numbered 1, 2, 3… without gaps; found ${m.version} at position ${i + 1}`);
  });
  return migrations;
}

/**
 * Brings `schema` up to date. Pending migrations run in one transaction (PostgreSQL DDL is
 * transactional) under an advisory lock keyed by the schema, so replicas starting together apply
 * each migration exactly once, and a failed migration leaves nothing half-applied. They run in
 * the order given (the kit's before the service's: see KIT_MIGRATION_VERSIONS_FROM), each version
 * once. Returns the versions applied now.
 */
export async function migrate(db: Database, schema: string, migrations: readonly Migration[]): Promise<number[]> {
  assertSchemaName(schema);
  const applied: number[] = [];
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`gantry.migrate.${schema}`]);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await tx.query<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations`);
    const done = new Set(rows.map((r) => r.version));
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
  });
  return applied;
}

/** True when every migration of `schema` is recorded as applied (readiness). */
export async function migrationsApplied(db: Database, schema: string, migrations: readonly Migration[]): Promise<boolean> {
  try {
    const { rows } = await db.query<{ n: string | number }>(`SELECT count(*) AS n FROM ${schema}.schema_migrations`);
    return Number(rows[0]?.n ?? 0) >= migrations.length;
  } catch {
    return false;
  }
}
