import { fileURLToPath } from 'node:url';
import { loadMigrations, type Database, type Sql } from '@gantry/kit';
import { CompactRange } from '../domain/merkle.js';
import { ZERO_HASH, entryHash, entryLeafHash } from '../domain/entry.js';

export const LOG_SCHEMA = 'log';
export const logMigrations = loadMigrations(fileURLToPath(new URL('./migrations', import.meta.url)));
/** NOTIFY channel: payload is the partition name, sent when an append commits. */
export const APPENDED_CHANNEL = 'log_appended';

/** One entry as stored. */
export interface StoredEntry {
  partition: string;
  seq: bigint;
  timestampMs: bigint;
  data: Buffer;
  prevHash: Buffer;
  hash: Buffer;
}

export interface PartitionRow {
  name: string;
  size: bigint;
  headHash: Buffer;
  compactRange: Buffer;
  createdAt: Date;
  lastAppendedAt: Date | null;
}

type Row = Record<string, unknown>;

/** bytea comes back as Buffer from pg and Uint8Array from PGlite. */
const bytes = (v: unknown): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array));
/** int8 comes back as string (pg) or bigint/number (PGlite). */
const big = (v: unknown): bigint => BigInt(v as string | number | bigint);

function toEntry(r: Row): StoredEntry {
  return { partition: r.partition as string, seq: big(r.seq), timestampMs: big(r.ts_ms), data: bytes(r.data), prevHash: bytes(r.prev_hash), hash: bytes(r.hash) };
}

function toPartition(r: Row): PartitionRow {
  return {
    name: r.name as string,
    size: big(r.size),
    headHash: bytes(r.head_hash),
    compactRange: bytes(r.compact_range),
    createdAt: new Date(r.created_at as string),
    lastAppendedAt: r.last_appended_at ? new Date(r.last_appended_at as string) : null,
  };
}

const ENTRY_COLUMNS = 'partition, seq, ts_ms, data, prev_hash, hash';

/**
 * `($1::t1, $2::t2), (...)` for `rows` rows of the given column types, starting at $`from`. The
 * casts sit on the placeholders: inside VALUES, PostgreSQL would otherwise type them as text.
 */
function valuesList(rows: number, types: readonly string[], from = 1): string {
  const out: string[] = [];
  for (let r = 0; r < rows; r++) out.push(`(${types.map((t, c) => `$${from + r * types.length + c}::${t}`).join(', ')})`);
  return out.join(', ');
}

/** The log's SQL. Every statement names the `log` schema; nothing here knows about gRPC. */
export class LogStore {
  constructor(private readonly db: Database) {}

  /**
   * Appends `payloads` to `partition` in one transaction and returns the stored entries. The
   * partition row is locked FOR UPDATE, so appenders on any number of replicas take turns and
   * seqs stay gapless; the NOTIFY is delivered only if the transaction commits.
   */
  appendBatch(partition: string, payloads: readonly Buffer[], nowMs: bigint): Promise<StoredEntry[]> {
    return this.db.transaction(async (tx) => {
      const head = await lockPartition(tx, partition);
      const range = CompactRange.deserialize(head.size, head.compactRange);
      let prevHash = head.headHash;
      const entries: StoredEntry[] = [];
      const nodes: { level: number; index: bigint; hash: Buffer }[] = [];
      for (const [i, data] of payloads.entries()) {
        const e = { partition, seq: head.size + BigInt(i), timestampMs: nowMs, data, prevHash };
        const hash = entryHash(e);
        entries.push({ ...e, hash });
        for (const node of range.append(entryLeafHash(e))) nodes.push({ level: node.level, index: BigInt(node.index), hash: node.hash });
        prevHash = hash;
      }
      // One statement (data-modifying CTEs) instead of four: each round trip is time the
      // partition's row lock is held, and that bounds how fast one partition can grow.
      const entryParams = entries.flatMap((e) => [e.seq.toString(), e.timestampMs.toString(), e.data, e.prevHash, e.hash]);
      const nodeParams = nodes.flatMap((n) => [n.level, n.index.toString(), n.hash]);
      const nodesFrom = 6 + entryParams.length;
      await tx.query(
        `WITH new_entries AS (
           INSERT INTO log.entries (${ENTRY_COLUMNS})
           SELECT $1, v.seq, v.ts_ms, v.data, v.prev_hash, v.hash
           FROM (VALUES ${valuesList(entries.length, ['bigint', 'bigint', 'bytea', 'bytea', 'bytea'], 6)}) AS v (seq, ts_ms, data, prev_hash, hash)
         ), new_nodes AS (
           INSERT INTO log.tree_nodes (partition, level, idx, hash)
           SELECT $1, v.level, v.idx, v.hash
           FROM (VALUES ${valuesList(nodes.length, ['smallint', 'bigint', 'bytea'], nodesFrom)}) AS v (level, idx, hash)
         ), head AS (
           UPDATE log.partitions SET size = $2, head_hash = $3, compact_range = $4, last_appended_at = to_timestamp($5::bigint / 1000.0)
           WHERE name = $1
         )
         SELECT pg_notify('${APPENDED_CHANNEL}', $1)`,
        [partition, (head.size + BigInt(payloads.length)).toString(), prevHash, range.serialize(), nowMs.toString(), ...entryParams, ...nodeParams],
      );
      return entries;
    });
  }

  async partition(name: string): Promise<PartitionRow | undefined> {
    const { rows } = await this.db.query('SELECT * FROM log.partitions WHERE name = $1', [name]);
    return rows[0] ? toPartition(rows[0]) : undefined;
  }

  /** Partitions in name order after `after`, filtered by prefix. */
  async listPartitions(prefix: string, after: string, limit: number): Promise<PartitionRow[]> {
    const { rows } = await this.db.query(
      // starts_with keeps LIKE wildcards in the prefix from meaning anything.
      'SELECT * FROM log.partitions WHERE starts_with(name, $1) AND name > $2 ORDER BY name LIMIT $3',
      [prefix, after, limit],
    );
    return rows.map(toPartition);
  }

  /** Entries with fromSeq <= seq < toSeq, in seq order, at most `limit`. */
  async readRange(partition: string, fromSeq: bigint, toSeq: bigint, limit: number): Promise<StoredEntry[]> {
    const { rows } = await this.db.query(
      `SELECT ${ENTRY_COLUMNS} FROM log.entries WHERE partition = $1 AND seq >= $2 AND seq < $3 ORDER BY seq LIMIT $4`,
      [partition, fromSeq.toString(), toSeq.toString(), limit],
    );
    return rows.map(toEntry);
  }

  /** Stored rows in their physical seq order as they are, for Verify: it must see what an attacker left. */
  async scan(partition: string, afterSeq: bigint, limit: number): Promise<StoredEntry[]> {
    const { rows } = await this.db.query(
      `SELECT ${ENTRY_COLUMNS} FROM log.entries WHERE partition = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
      [partition, afterSeq.toString(), limit],
    );
    return rows.map(toEntry);
  }

  async lastEntry(partition: string): Promise<StoredEntry | undefined> {
    const { rows } = await this.db.query(`SELECT ${ENTRY_COLUMNS} FROM log.entries WHERE partition = $1 ORDER BY seq DESC LIMIT 1`, [partition]);
    return rows[0] ? toEntry(rows[0]) : undefined;
  }

  /** Perfect-subtree hashes by (level, index), for proofs. */
  async treeNodes(partition: string, refs: readonly { level: number; index: number | bigint }[]): Promise<Map<string, Buffer>> {
    const found = new Map<string, Buffer>();
    if (refs.length === 0) return found;
    const { rows } = await this.db.query(
      `SELECT level, idx, hash FROM log.tree_nodes WHERE partition = $1 AND (level, idx) IN (${valuesList(refs.length, ['smallint', 'bigint'], 2)})`,
      [partition, ...refs.flatMap((r) => [r.level, r.index.toString()])],
    );
    for (const r of rows) found.set(nodeKey(Number(r.level), big(r.idx)), bytes(r.hash));
    return found;
  }
}

export const nodeKey = (level: number, index: number | bigint) => `${level}/${index}`;

/** Locks the partition's row, creating the partition on first use. */
async function lockPartition(tx: Sql, partition: string): Promise<{ size: bigint; headHash: Buffer; compactRange: Buffer }> {
  const select = () => tx.query('SELECT size, head_hash, compact_range FROM log.partitions WHERE name = $1 FOR UPDATE', [partition]);
  let { rows } = await select();
  if (!rows[0]) {
    await tx.query('INSERT INTO log.partitions (name, head_hash, compact_range) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING', [
      partition,
      ZERO_HASH,
      CompactRange.empty().serialize(),
    ]);
    ({ rows } = await select());
  }
  const r = rows[0]!;
  return { size: big(r.size), headHash: bytes(r.head_hash), compactRange: bytes(r.compact_range) };
}
