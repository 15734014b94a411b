// The flags of one process in its own schema (`flags_<targets>`): plain parameterised SQL. Every
// write takes the next version from the head row (whose lock orders writers, so versions commit in
// order), records the change, prunes the history to its bound and NOTIFYs on commit.
import { fileURLToPath } from 'node:url';
import { flagsv1 } from '@gantry/proto';
import { GantryError, Status } from '../errors.js';
import type { Database, Sql } from '../storage/database.js';
import { loadMigrations, type Migration } from '../storage/migrations.js';
import { first, one, oneOrNone } from '../storage/rows.js';
import { fromFlagd, type FlagdFlag } from './convert.js';
import type { FlagsLimits } from './limits.js';
import type { ValidFlag } from './validation.js';

const rawMigrations = loadMigrations(fileURLToPath(new URL('./migrations', import.meta.url)));

/** The flags schema of a process running `targets`: `flags_<target>`, or the sorted targets joined by `_`. */
export function flagsSchemaFor(targets: readonly string[]): string {
  const name = `flags_${[...new Set(targets)].sort().join('_')}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (name.length > 63) throw new Error(`the flags schema name ${name} is longer than PostgreSQL's 63 characters`);
  return name;
}

/** The flags migrations for `schema`. */
export function flagsMigrations(schema: string): Migration[] {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid schema name: ${schema}`);
  return rawMigrations.map((m) => ({ ...m, sql: m.sql.replaceAll('{schema}', schema) }));
}

/** A change in the history, with the flag as of that change (undefined for a deletion). */
export interface FlagChange {
  version: bigint;
  key: string;
  type: 'PUT' | 'DELETED';
  flag: flagsv1.Flag | undefined;
  /** Approximate size, for the queues' byte bounds. */
  bytes: number;
}

/** Fixed cost counted per change on top of its JSON. */
const CHANGE_OVERHEAD_BYTES = 256;

// Rows as the adapters return them: int8 bigint, jsonb parsed, timestamptz Date (storage/column-types.ts).
interface FlagRow {
  key: string;
  flag: FlagdFlag;
  version: bigint;
  source: string;
  updated_at: Date;
}

interface ChangeRow {
  version: bigint;
  key: string;
  type: 'PUT' | 'DELETED';
  /** NULL for a deletion. */
  flag: FlagdFlag | null;
  source: string;
  at: Date;
}

/** A LEFT JOIN from the one-row head: a row of NULLs when there is nothing to join. */
type OrNulls<R> = R | { [K in keyof R]: null };

function flagOf(r: FlagRow): flagsv1.Flag {
  return fromFlagd(r.key, r.flag, { source: r.source, version: r.version, updatedAt: r.updated_at });
}

function changeOf(r: ChangeRow): FlagChange {
  const { version, key, type, flag } = r;
  return {
    version,
    key,
    type,
    flag: flag ? fromFlagd(key, flag, { source: r.source, version, updatedAt: r.at }) : undefined,
    bytes: (flag ? JSON.stringify(flag).length : 0) + CHANGE_OVERHEAD_BYTES,
  };
}

/** One process's flags store (its schema); writes serialise on the head row. */
export class FlagsStore {
  /** The NOTIFY channel writers signal after each commit (one per schema). */
  readonly channel: string;

  constructor(
    readonly db: Database,
    readonly schema: string,
    private readonly limits: Pick<FlagsLimits, 'maxFlags' | 'maxStoreBytes' | 'retainedChanges'>,
  ) {
    this.channel = `${schema}_changed`.slice(0, 63);
  }

  /** The newest committed version. */
  async headVersion(): Promise<bigint> {
    const { rows } = await this.db.query<{ version: bigint }>(`SELECT version FROM ${this.schema}.head`);
    return one(rows, `${this.schema} head`).version;
  }

  /** Every flag in key order, with the version they were read at (one snapshot). */
  async list(): Promise<{ flags: flagsv1.Flag[]; version: bigint }> {
    const { rows } = await this.db.query<{ head: bigint } & OrNulls<FlagRow>>(
      `SELECT h.version AS head, f.key, f.flag, f.version, f.source, f.updated_at
         FROM ${this.schema}.head h LEFT JOIN ${this.schema}.flags f ON true ORDER BY f.key COLLATE "C"`,
    );
    // Every row carries the head; no flags at all is one row of NULLs.
    const flags = rows.flatMap((r) => (r.key !== null ? [flagOf(r)] : []));
    return { flags, version: first(rows, `${this.schema} head`).head };
  }

  /** One flag, or undefined. */
  async get(key: string): Promise<flagsv1.Flag | undefined> {
    const { rows } = await this.db.query<FlagRow>(`SELECT key, flag, version, source, updated_at FROM ${this.schema}.flags WHERE key = $1`, [key]);
    const row = oneOrNone(rows, `flag ${key}`);
    return row && flagOf(row);
  }

  /** Changes with version > `after`, oldest first (at most `limit`), with the head and the oldest retained version of the same snapshot. */
  async changesAfter(after: bigint, limit: number): Promise<{ changes: FlagChange[]; head: bigint; oldestRetained: bigint }> {
    const { rows } = await this.db.query<{ head: bigint; oldest: bigint | null } & OrNulls<ChangeRow>>(
      `WITH h AS (SELECT version AS head, (SELECT min(version) FROM ${this.schema}.changes) AS oldest FROM ${this.schema}.head)
       SELECT h.head, h.oldest, c.version, c.key, c.type, c.flag, c.source, c.at FROM h LEFT JOIN LATERAL (
         SELECT version, key, type, flag, source, at FROM ${this.schema}.changes WHERE version > $1 ORDER BY version LIMIT $2) c ON true
        ORDER BY c.version`,
      [after.toString(), limit],
    );
    // Every row carries the head; no change after `after` is one row of NULLs.
    const { head, oldest } = first(rows, `${this.schema} head`);
    // No history at all: everything up to the head was pruned (or nothing ever changed).
    const oldestRetained = oldest ?? head + 1n;
    return { changes: rows.flatMap((r) => (r.version !== null ? [changeOf(r)] : [])), head, oldestRetained };
  }

  /** Creates or replaces a flag; ABORTED on an expected_version mismatch, RESOURCE_EXHAUSTED past the store's bounds. */
  async put(valid: ValidFlag, expectedVersion: bigint | undefined, at: Date): Promise<{ flag: flagsv1.Flag; created: boolean }> {
    return this.db.transaction(async (tx) => {
      const version = await this.nextVersion(tx);
      const { rows } = await tx.query<{ version: bigint }>(`SELECT version FROM ${this.schema}.flags WHERE key = $1`, [valid.key]);
      const current = oneOrNone(rows, `flag ${valid.key}`)?.version ?? 0n;
      if (expectedVersion !== undefined && expectedVersion !== current) {
        throw new GantryError(Status.ABORTED, current === 0n
          ? `flag ${valid.key} does not exist, so it is not at version ${expectedVersion}: re-read it and retry`
          : `flag ${valid.key} is at version ${current}, not ${expectedVersion}: re-read it and retry`);
      }
      const { rows: totals } = await tx.query<{ n: bigint; bytes: bigint }>(`SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM ${this.schema}.flags WHERE key <> $1`, [valid.key]);
      const total = one(totals, `${this.schema} totals`);
      const others = Number(total.n);
      const otherBytes = Number(total.bytes);
      if (others + 1 > this.limits.maxFlags) {
        throw new GantryError(Status.RESOURCE_EXHAUSTED, `this service holds ${others} flags, the most it may (${this.limits.maxFlags}); delete unused flags first`);
      }
      if (otherBytes + valid.bytes > this.limits.maxStoreBytes) {
        throw new GantryError(Status.RESOURCE_EXHAUSTED, `this service's flags would take ${otherBytes + valid.bytes} bytes, more than the ${this.limits.maxStoreBytes} it may hold; delete unused flags or shrink their targeting first`);
      }
      const flagJson = JSON.stringify(valid.flagd);
      await tx.query(
        `INSERT INTO ${this.schema}.flags (key, flag, version, source, updated_at, bytes) VALUES ($1, $2::jsonb, $3, $4, $5, $6)
         ON CONFLICT (key) DO UPDATE SET flag = EXCLUDED.flag, version = EXCLUDED.version, source = EXCLUDED.source, updated_at = EXCLUDED.updated_at, bytes = EXCLUDED.bytes`,
        [valid.key, flagJson, version.toString(), valid.source, at, valid.bytes],
      );
      await this.record(tx, { version, key: valid.key, type: 'PUT', flagJson, source: valid.source, at });
      return { flag: fromFlagd(valid.key, valid.flagd, { source: valid.source, version, updatedAt: at }), created: current === 0n };
    });
  }

  /** Deletes a flag; a missing one is no change (existed = false). ABORTED on an expected_version mismatch. */
  async delete(key: string, expectedVersion: bigint | undefined, source: string, at: Date): Promise<{ existed: boolean; version: bigint }> {
    return this.db.transaction(async (tx) => {
      const version = await this.nextVersion(tx);
      const { rows } = await tx.query<{ version: bigint }>(`SELECT version FROM ${this.schema}.flags WHERE key = $1`, [key]);
      const current = oneOrNone(rows, `flag ${key}`)?.version ?? 0n;
      if (expectedVersion !== undefined && expectedVersion !== current) {
        throw new GantryError(Status.ABORTED, current === 0n
          ? `flag ${key} does not exist, so it is not at version ${expectedVersion}: re-read it and retry`
          : `flag ${key} is at version ${current}, not ${expectedVersion}: re-read it and retry`);
      }
      if (current === 0n) throw new NothingToDelete();
      await tx.query(`DELETE FROM ${this.schema}.flags WHERE key = $1`, [key]);
      await this.record(tx, { version, key, type: 'DELETED', flagJson: null, source, at });
      return { existed: true, version };
    }).catch((err: unknown) => {
      // Rolled back: the version taken for it is given back.
      if (err instanceof NothingToDelete) return { existed: false, version: 0n };
      throw err;
    });
  }

  /** Takes the next version (the head's row lock orders writers, and so commits, by version). */
  private async nextVersion(tx: Sql): Promise<bigint> {
    const { rows } = await tx.query<{ version: bigint }>(`UPDATE ${this.schema}.head SET version = version + 1 RETURNING version`);
    return one(rows, `${this.schema} head`).version;
  }

  private async record(tx: Sql, c: { version: bigint; key: string; type: 'PUT' | 'DELETED'; flagJson: string | null; source: string; at: Date }): Promise<void> {
    await tx.query(
      `INSERT INTO ${this.schema}.changes (version, key, type, flag, source, at) VALUES ($1, $2, $3, $4::jsonb, $5, $6)`,
      [c.version.toString(), c.key, c.type, c.flagJson, c.source, c.at],
    );
    await tx.query(`DELETE FROM ${this.schema}.changes WHERE version <= $1`, [(c.version - BigInt(this.limits.retainedChanges)).toString()]);
    // Delivered on commit, to this replica and every other one on the database.
    await tx.query(`SELECT pg_notify('${this.channel}', $1)`, [c.version.toString()]);
  }
}

/** Rolls back a delete of a missing flag, so it takes no version. */
class NothingToDelete extends Error {}
