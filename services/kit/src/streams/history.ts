// Retention of a change history that watches resume from (the change feed's source): a table of
// changes keyed by a gapless `version` and stamped `at`, beside a one-row head table holding the
// current version. Only a prefix of the history is ever deleted (it stops at the first change still
// kept), so the history stays gapless from its oldest version and a watch from before it can be
// told so (OUT_OF_RANGE) rather than silently miss changes.
import type { Database } from '../storage/database.js';

/** What a change history keeps. */
export interface HistoryRetention {
  /** Changes made before this time go (null: no time bound). */
  olderThan: Date | null;
  /** At most this many of the newest versions stay (0: no count bound). */
  maxVersions: number;
}

const TABLE_NAME = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/;

/**
 * Deletes at most `limit` of the oldest changes of `tables.changes` past `policy`, reading only
 * those rows (by the primary key); returns how many. Replicas pruning at once delete the same rows,
 * harmlessly.
 */
export async function pruneHistory(db: Pick<Database, 'query'>, tables: { changes: string; head: string }, policy: HistoryRetention, limit: number): Promise<number> {
  for (const table of [tables.changes, tables.head]) if (!TABLE_NAME.test(table)) throw new Error(`invalid table name: ${table}`);
  const { rowCount } = await db.query(
    `WITH oldest AS (SELECT version, at FROM ${tables.changes} ORDER BY version LIMIT $3),
     kept AS (SELECT min(o.version) AS version FROM oldest o, ${tables.head} h
               WHERE NOT (($2::timestamptz IS NOT NULL AND o.at < $2) OR ($1 > 0 AND o.version <= h.version - $1)))
     DELETE FROM ${tables.changes} c USING oldest o, kept
      WHERE c.version = o.version AND (kept.version IS NULL OR o.version < kept.version)`,
    [policy.maxVersions, policy.olderThan, limit],
  );
  return rowCount;
}
