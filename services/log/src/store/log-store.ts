import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { GantryError, Status, loadMigrations, one, oneOrNone, type Database, type Sql } from '@gantry/kit';
import { CompactRange } from '../domain/merkle.js';
import { HASH_BYTES, ZERO_HASH, entryHashes } from '../domain/entry.js';
import { PARTITION_WIDE_KEY_OWNER } from '../domain/authority.js';
import { byteaArray, int8Array, textArray } from './pg-binary.js';
import { PAGE_ENTRY, authorLengthAt, entryOffsets, hashAt, prevHashAt, seqAt } from './entry-page.js';

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
  /** Who appended it; undefined for entries from before authors were recorded (column NULL). */
  author: string | undefined;
}

/** Entries as the page query packs them (store/entry-page.ts): the bytes and where each entry starts, in seq order. */
export interface EntryPage {
  partition: string;
  bytes: Buffer;
  offsets: readonly number[];
}

/** A payload to append and the subject of the caller appending it (validated by the API). */
export interface NewEntry {
  data: Buffer;
  author: string;
}

/** Where an append landed; `duplicate` when its idempotency key named an earlier entry. */
export interface AppendReceipt {
  seq: bigint;
  timestampMs: bigint;
  prevHash: Buffer;
  hash: Buffer;
  /** The entry's author: for a duplicate, whoever appended the earlier entry. */
  author: string | undefined;
  duplicate: boolean;
}

/** Whose keys a keyed append uses, and who appends (domain/authority.ts idempotencyKeyOwner). */
export interface KeyedAppender {
  author: string;
  keyOwner: string;
}

export interface PartitionRow {
  name: string;
  size: bigint;
  headHash: Buffer;
  compactRange: Buffer;
  createdAt: Date;
  lastAppendedAt: Date | null;
}

// Rows as the adapters return them: int8 bigint, bytea Buffer, timestamptz Date (kit column-types.ts).
interface EntryRow {
  partition: string;
  seq: bigint;
  ts_ms: bigint;
  data: Buffer;
  prev_hash: Buffer;
  hash: Buffer;
  author: string | null;
}

interface PartitionTableRow {
  name: string;
  size: bigint;
  head_hash: Buffer;
  compact_range: Buffer;
  created_at: Date;
  last_appended_at: Date | null;
}

function toEntry(r: EntryRow): StoredEntry {
  return { partition: r.partition, seq: r.seq, timestampMs: r.ts_ms, data: r.data, prevHash: r.prev_hash, hash: r.hash, author: r.author ?? undefined };
}

function toPartition(r: PartitionTableRow): PartitionRow {
  return { name: r.name, size: r.size, headHash: r.head_hash, compactRange: r.compact_range, createdAt: r.created_at, lastAppendedAt: r.last_appended_at };
}

const ENTRY_COLUMNS = 'partition, seq, ts_ms, data, prev_hash, hash, author';

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

  /** Partition heads this process last wrote or read: the expected state of the next append. */
  private readonly heads = new Map<string, PartitionHead>();

  /** Binary array parameters on PostgreSQL (pg-binary.ts); PGlite takes plain arrays. */
  private get binaryArrays(): boolean {
    return this.db.engine === 'postgres';
  }

  /**
   * Appends `payloads` to `partition` and returns the stored entries, durable once this resolves.
   *
   * Optimistic and one round trip in the common case: the entries are built on the cached head,
   * and a single statement moves the partition from the expected head (size and hash) to the new
   * one and inserts the entries and tree nodes only if that move happened. If another replica
   * appended in between, PostgreSQL re-checks the expected head after waiting for its row lock,
   * nothing is written, and we reload the head and try again. After a few misses the append takes
   * the row lock (SELECT … FOR UPDATE), so it cannot lose again. Seqs stay gapless either way.
   */
  async appendBatch(partition: string, payloads: readonly NewEntry[], nowMs: bigint): Promise<StoredEntry[]> {
    for (let attempt = 0; attempt < OPTIMISTIC_ATTEMPTS; attempt++) {
      const head = this.heads.get(partition) ?? (await readHead(this.db, partition));
      // A new partition is created inside the locked transaction below, so a failed first
      // append leaves no empty partition behind.
      if (!head) break;
      const planned = planAppend(partition, head, payloads, nowMs);
      if (await writeIfHead(this.db, partition, head, planned, this.binaryArrays)) {
        this.remember(partition, planned.newHead);
        return planned.entries;
      }
      this.heads.delete(partition);
    }
    const planned = await this.db.transaction(async (tx) => {
      const head = await lockPartition(tx, partition);
      const plan = planAppend(partition, head, payloads, nowMs);
      if (!(await writeIfHead(tx, partition, head, plan, this.binaryArrays))) throw new Error(`partition ${partition} changed under its row lock`);
      return plan;
    });
    this.remember(partition, planned.newHead);
    return planned.entries;
  }

  /** Whether the partition's head is cached, so an append can be pipelined (appendPipelined). */
  knowsHead(partition: string): boolean {
    return this.heads.has(partition);
  }

  /**
   * Appends `payloads` planned on the head this process expects `partition` to have once every
   * append it has already sent has landed, and sends the statement on the database's ordered
   * connection without waiting for those: PostgreSQL runs it after them, so it finds their head.
   * Returns undefined, having sent nothing, when no head is cached (a partition's first append,
   * or the first after a miss): appendBatch then reads the head, and appends after it pipeline.
   *
   * Resolves with the stored entries once durable, or undefined when the partition was not at the
   * expected head (another replica appended, or an append sent before this one missed): nothing
   * was written, and the caller appends again with appendBatch. The cache only ever costs a miss,
   * never a wrong entry: every write is conditional on the stored head (writeIfHead).
   */
  appendPipelined(partition: string, payloads: readonly NewEntry[], nowMs: bigint): Promise<StoredEntry[] | undefined> | undefined {
    const head = this.heads.get(partition);
    if (!head) return undefined;
    const planned = planAppend(partition, head, payloads, nowMs);
    // The next append is planned on this one's head before this one lands.
    this.remember(partition, planned.newHead);
    return writeIfHead(this.db.ordered, partition, head, planned, this.binaryArrays).then(
      (written) => {
        if (written) return planned.entries;
        this.heads.delete(partition);
        return undefined;
      },
      (err: unknown) => {
        this.heads.delete(partition);
        throw err;
      },
    );
  }

  /**
   * Appends `payloads` as `by.author`, each named by the idempotency key at the same index
   * (distinct, validated), and returns one receipt per payload in request order. Keys are looked
   * up among `by.keyOwner`'s and the partition-wide ones, and new keys are recorded as
   * `by.keyOwner`'s. A payload whose key names an earlier entry is not appended again: its
   * receipt is that entry's, with `duplicate`; the others are appended in request order with
   * consecutive seqs. A key that names an entry with other data is ALREADY_EXISTS, and nothing is
   * written.
   *
   * Always under the partition's row lock, and the keys are looked up only once it is held: a
   * replica appending the same key has then either committed (we see its key) or not started, so
   * one key never becomes two entries. The optimistic path cannot offer that without a lookup of
   * its own, which is why unkeyed appends never come here.
   */
  async appendKeyed(partition: string, payloads: readonly Buffer[], keys: readonly string[], by: KeyedAppender, nowMs: bigint): Promise<AppendReceipt[]> {
    if (keys.length !== payloads.length || new Set(keys).size !== keys.length) throw new Error('appendKeyed needs one distinct key per payload (validated by the API)');
    const { receipts, head } = await this.db.transaction(async (tx) => {
      const head = await lockPartition(tx, partition);
      const earlier = await usedKeys(tx, partition, by.keyOwner, keys);
      const fresh: number[] = [];
      for (const [i, key] of keys.entries()) {
        const prior = earlier.get(key);
        if (!prior) fresh.push(i);
        else if (!prior.dataDigest.equals(sha256(payloads[i]!))) {
          throw new GantryError(
            Status.ALREADY_EXISTS,
            `idempotency key ${JSON.stringify(key)} was used for seq ${prior.seq} of partition ${partition} with different data; resend that data unchanged, or use a new key for new data`,
          );
        }
      }
      if (fresh.length === 0) return { head, receipts: keys.map((k) => duplicateOf(earlier.get(k)!)) };
      const plan = planAppend(partition, head, fresh.map((i) => ({ data: payloads[i]!, author: by.author })), nowMs);
      const written = await writeIfHead(tx, partition, head, plan, this.binaryArrays, { owner: by.keyOwner, keys: fresh.map((i) => keys[i]!) });
      if (!written) throw new Error(`partition ${partition} changed under its row lock`);
      const entryByKey = new Map(fresh.map((i, n) => [keys[i]!, plan.entries[n]!]));
      const receipts = keys.map((k): AppendReceipt => {
        const e = entryByKey.get(k);
        return e ? { seq: e.seq, timestampMs: e.timestampMs, prevHash: e.prevHash, hash: e.hash, author: e.author, duplicate: false } : duplicateOf(earlier.get(k)!);
      });
      return { head: plan.newHead, receipts };
    });
    // The head read under the lock is current even when nothing was written.
    this.remember(partition, head);
    return receipts;
  }

  private remember(partition: string, head: PartitionHead): void {
    if (!this.heads.has(partition) && this.heads.size >= MAX_CACHED_HEADS) this.heads.delete(this.heads.keys().next().value!);
    this.heads.set(partition, head);
  }

  async partition(name: string): Promise<PartitionRow | undefined> {
    const { rows } = await this.db.query<PartitionTableRow>('SELECT * FROM log.partitions WHERE name = $1', [name]);
    const row = oneOrNone(rows, `partition ${name}`);
    return row && toPartition(row);
  }

  /** Partitions in name order after `after`, filtered by prefix. */
  async listPartitions(prefix: string, after: string, limit: number): Promise<PartitionRow[]> {
    const { rows } = await this.db.query<PartitionTableRow>(
      // starts_with keeps LIKE wildcards in the prefix from meaning anything.
      'SELECT * FROM log.partitions WHERE starts_with(name, $1) AND name > $2 ORDER BY name LIMIT $3',
      [prefix, after, limit],
    );
    return rows.map(toPartition);
  }

  /**
   * Entries with fromSeq <= seq < toSeq, in seq order, at most `limit`, and at most about
   * READ_PAGE_BYTES of payload and author (always at least one entry): a caller pages on from the
   * last seq returned.
   */
  async readRange(partition: string, fromSeq: bigint, toSeq: bigint, limit: number): Promise<StoredEntry[]> {
    const page = await this.readPage(partition, fromSeq, toSeq, limit);
    return page ? unpackPage(page) : [];
  }

  /**
   * The entries readRange returns, as the page of rows PostgreSQL sent (store/entry-page.ts), for
   * readers that turn them into bytes again (Read and Tail) and need no object per entry;
   * undefined when there are none.
   */
  async readPage(partition: string, fromSeq: bigint, toSeq: bigint, limit: number): Promise<EntryPage | undefined> {
    // Seqs are dense, so the range alone holds at most `limit` rows, whatever plan PostgreSQL picks:
    // a partition filled since the table's last ANALYZE looks nearly empty to the planner, which then
    // sorts every row from fromSeq on, for each page (a 100,000-entry Read ran at a fifth of its rate).
    const pageEnd = fromSeq + BigInt(limit);
    const upTo = pageEnd < toSeq ? pageEnd : toSeq;
    const bytes = await this.db.copyRows(READ_PAGE_SQL, [partition, fromSeq, upTo, limit, READ_PAGE_BYTES]);
    if (bytes.length === 0) return undefined;
    return { partition, bytes, offsets: entryOffsets(partition, bytes) };
  }

  async lastEntry(partition: string): Promise<StoredEntry | undefined> {
    const { rows } = await this.db.query<EntryRow>(`SELECT ${ENTRY_COLUMNS} FROM log.entries WHERE partition = $1 ORDER BY seq DESC LIMIT 1`, [partition]);
    const row = oneOrNone(rows, `last entry of ${partition}`);
    return row && toEntry(row);
  }

  /**
   * Perfect-subtree hashes by (level, index), for proofs: from the rows of the entries that
   * completed them (migration 004), and those completed before it from log.tree_nodes.
   */
  async treeNodes(partition: string, refs: readonly { level: number; index: number | bigint }[]): Promise<Map<string, Buffer>> {
    const found = new Map<string, Buffer>();
    if (refs.length === 0) return found;
    const bySeq = new Map<bigint, { level: number; index: bigint }[]>();
    for (const r of refs) {
      const ref = { level: r.level, index: BigInt(r.index) };
      const seq = completingSeq(ref.level, ref.index);
      bySeq.set(seq, [...(bySeq.get(seq) ?? []), ref]);
    }
    const { rows } = await this.db.queryArrays('SELECT seq, nodes FROM log.entries WHERE partition = $1 AND seq = ANY($2::bigint[]) AND nodes IS NOT NULL', [
      partition,
      [...bySeq.keys()].map(String),
    ]);
    for (const [seq, nodes] of rows as [bigint, Buffer][]) {
      for (const ref of bySeq.get(seq) ?? []) {
        const hash = nodes.subarray(ref.level * HASH_BYTES, (ref.level + 1) * HASH_BYTES);
        if (hash.length === HASH_BYTES) found.set(nodeKey(ref.level, ref.index), hash);
      }
    }
    const older = refs.filter((r) => !found.has(nodeKey(r.level, r.index)));
    if (older.length === 0) return found;
    const { rows: legacy } = await this.db.query<{ level: number; idx: bigint; hash: Buffer }>(
      `SELECT level, idx, hash FROM log.tree_nodes WHERE partition = $1 AND (level, idx) IN (${valuesList(older.length, ['smallint', 'bigint'], 2)})`,
      [partition, ...older.flatMap((r) => [r.level, r.index.toString()])],
    );
    for (const r of legacy) found.set(nodeKey(r.level, r.idx), r.hash);
    return found;
  }
}

export const nodeKey = (level: number, index: number | bigint) => `${level}/${index}`;

/** Payload and author bytes one readRange returns at most (beyond its first entry). */
const READ_PAGE_BYTES = 16 * 1024 * 1024;

/**
 * A page of entries, its rows received as bytes (Database.copyRows: COPY's binary format) and
 * read in place (store/entry-page.ts): row by row, pg would decode each bytea from hex text into
 * its own Buffer and build an object per row, most of a Read's CPU. A running sum stops the page
 * at READ_PAGE_BYTES (the first row always comes), so a page of large entries stays bounded.
 *
 * PostgreSQL's share is kept small: plain rows cost it about a third less per entry than the same
 * rows packed into one bytea by string_agg, which this query did before (measured alone on
 * 2,000-row pages: 1.3-1.4 against 1.9-2.1 µs per entry). The running sum's frame is ROWS, not
 * the default RANGE, which looks for peers of each row (seq is unique: there are none); the rows
 * come out of the window in seq order, so the outer ORDER BY costs no sort, and entryOffsets
 * checks the order all the same.
 */
const READ_PAGE_SQL = `SELECT seq, ts_ms, data, prev_hash, hash, author
  FROM (
    SELECT seq, ts_ms, data, prev_hash, hash, author,
      sum(octet_length(data) + coalesce(octet_length(author), 0)) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        - octet_length(data) - coalesce(octet_length(author), 0) AS bytes_before
    FROM (
      SELECT seq, ts_ms, data, prev_hash, hash, author FROM log.entries
      WHERE partition = $1 AND seq >= $2 AND seq < $3 ORDER BY seq LIMIT $4
    ) range
  ) page
  WHERE bytes_before < $5
  ORDER BY seq`;

/** The entries of a page, in seq order; their buffers are views into its bytes. */
function unpackPage({ partition, bytes: page, offsets }: EntryPage): StoredEntry[] {
  return offsets.map((at) => {
    const dataLength = page.readInt32BE(at + PAGE_ENTRY.dataLength);
    const prevHash = prevHashAt(at, dataLength);
    const hash = hashAt(at, dataLength);
    const authorAt = authorLengthAt(at, dataLength);
    const authorLength = page.readInt32BE(authorAt);
    return {
      partition,
      seq: seqAt(page, at),
      timestampMs: page.readBigInt64BE(at + PAGE_ENTRY.timestampMs),
      data: page.subarray(at + PAGE_ENTRY.data, at + PAGE_ENTRY.data + dataLength),
      prevHash: page.subarray(prevHash, prevHash + HASH_BYTES),
      hash: page.subarray(hash, hash + HASH_BYTES),
      author: authorLength < 0 ? undefined : page.toString('utf8', authorAt + 4, authorAt + 4 + authorLength),
    };
  });
}

/** The seq whose append completes node (level, index): the last leaf it covers. */
const completingSeq = (level: number, index: bigint): bigint => ((index + 1n) << BigInt(level)) - 1n;

/** Misses of the optimistic append before it takes the partition's row lock. */
const OPTIMISTIC_ATTEMPTS = 3;
/** Bounds the head cache; an evicted head only costs one extra read on its next append. */
const MAX_CACHED_HEADS = 10_000;

interface PartitionHead {
  size: bigint;
  headHash: Buffer;
  compactRange: Buffer;
}

interface PlannedAppend {
  entries: StoredEntry[];
  /** Per entry, the hashes of the tree nodes its leaf completes, level 0 first, concatenated. */
  nodes: Buffer[];
  newHead: PartitionHead;
}

/** Builds the entries, their hashes and the new tree nodes on top of `head` (pure computation). */
function planAppend(partition: string, head: PartitionHead, payloads: readonly NewEntry[], nowMs: bigint): PlannedAppend {
  const range = CompactRange.deserialize(head.size, head.compactRange);
  let prevHash = head.headHash;
  const entries: StoredEntry[] = [];
  const nodes: PlannedAppend['nodes'] = [];
  for (const [i, { data, author }] of payloads.entries()) {
    // An entry without an author would be hashed in the old layout: every new entry names its appender.
    if (author === '') throw new Error(`an append to ${partition} has no author (checked by the API)`);
    const e = { partition, seq: head.size + BigInt(i), timestampMs: nowMs, data, prevHash, author };
    const { hash, leafHash } = entryHashes(e);
    entries.push({ ...e, hash });
    const completed = range.append(leafHash);
    nodes.push(completed.length === 1 ? completed[0]!.hash : Buffer.concat(completed.map((n) => n.hash)));
    prevHash = hash;
  }
  return { entries, nodes, newHead: { size: head.size + BigInt(payloads.length), headHash: prevHash, compactRange: range.serialize() } };
}

/**
 * One statement: move the partition from the `expected` head to the planned one and, joined to
 * that UPDATE's result, insert the entries and nodes (and, with `keyed`, each new entry's
 * idempotency key under its owner). Returns false (having written nothing) when the partition was
 * not at `expected`. With `binary`, the column arrays travel in PostgreSQL's binary format.
 */
async function writeIfHead(sql: Sql, partition: string, expected: PartitionHead, planned: PlannedAppend, binary: boolean, keyed?: { owner: string; keys: readonly string[] }): Promise<boolean> {
  const { entries, nodes, newHead } = planned;
  const columns = binary
    ? [
        int8Array(entries.map((e) => e.seq)), byteaArray(entries.map((e) => e.data)), byteaArray(entries.map((e) => e.prevHash)), byteaArray(entries.map((e) => e.hash)),
        byteaArray(nodes), textArray(entries.map((e) => e.author!)),
      ]
    : [
        entries.map((e) => e.seq.toString()), entries.map((e) => e.data), entries.map((e) => e.prevHash), entries.map((e) => e.hash),
        nodes, entries.map((e) => e.author),
      ];
  const params = [partition, newHead.size.toString(), newHead.headHash, newHead.compactRange, entries[0]!.timestampMs.toString(), expected.size.toString(), ...columns, expected.headHash];
  const keyParams = keyed ? [binary ? textArray(keyed.keys) : keyed.keys, keyed.owner] : [];
  const { rows } = await sql.query<{ appended: bigint }>(keyed ? WRITE_KEYED_SQL : WRITE_SQL, [...params, ...keyParams]);
  return one(rows, `append to ${partition}`).appended === BigInt(entries.length);
}

/**
 * The statement of `writeIfHead`; two fixed texts, so each is prepared once. Columns travel as
 * arrays (unnest): PostgreSQL parses the same parameters whatever the batch size, instead of a
 * VALUES list with several parameters per entry. $11 holds each entry's completed tree nodes
 * (migration 004), $13 the expected head hash. The keyed text also inserts $14, the idempotency
 * keys aligned with the entries' seqs in $7, owned by $15.
 */
function writeSql(withKeys: boolean): string {
  const newKeys = `, new_keys AS (
       INSERT INTO log.idempotency_keys (partition, owner, key, seq, created_ms)
       SELECT head.name, $15::text, v.key, v.seq, $5::bigint
       FROM head, unnest($14::text[], $7::bigint[]) AS v (key, seq)
     )`;
  return `WITH head AS (
       UPDATE log.partitions SET size = $2, head_hash = $3, compact_range = $4, last_appended_at = to_timestamp($5::bigint / 1000.0)
       WHERE name = $1 AND size = $6 AND head_hash = $13
       RETURNING name
     ), new_entries AS (
       INSERT INTO log.entries (${ENTRY_COLUMNS}, nodes)
       -- Every entry of one batch has the commit timestamp $5.
       SELECT head.name, v.seq, $5::bigint, v.data, v.prev_hash, v.hash, v.author, v.nodes
       FROM head, unnest($7::bigint[], $8::bytea[], $9::bytea[], $10::bytea[], $12::text[], $11::bytea[]) AS v (seq, data, prev_hash, hash, author, nodes)
       RETURNING seq
     )${withKeys ? newKeys : ''}
     SELECT (SELECT count(*) FROM new_entries) AS appended, (SELECT pg_notify('${APPENDED_CHANNEL}', name) FROM head) AS notified`;
}

const WRITE_SQL = writeSql(false);
const WRITE_KEYED_SQL = writeSql(true);

const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

type EarlierEntry = Omit<AppendReceipt, 'duplicate'> & { dataDigest: Buffer };

const duplicateOf = (e: EarlierEntry): AppendReceipt => ({ seq: e.seq, timestampMs: e.timestampMs, prevHash: e.prevHash, hash: e.hash, author: e.author, duplicate: true });

/**
 * The entries that `keys` already name in `partition`, among `owner`'s keys and the
 * partition-wide ones, by key, each with the SHA-256 of its data: the digest is compared instead
 * of the data, so a re-sent batch does not read its payloads back. One text for any number of keys
 * (an array parameter), so it is prepared once.
 */
async function usedKeys(sql: Sql, partition: string, owner: string, keys: readonly string[]): Promise<Map<string, EarlierEntry>> {
  const { rows } = await sql.query<{ key: string; seq: bigint; ts_ms: bigint; prev_hash: Buffer; hash: Buffer; author: string | null; data_digest: Buffer }>(
    `SELECT k.key, e.seq, e.ts_ms, e.prev_hash, e.hash, e.author, sha256(e.data) AS data_digest
     FROM log.idempotency_keys k JOIN log.entries e ON e.partition = k.partition AND e.seq = k.seq
     WHERE k.partition = $1 AND k.owner IN ($2, $3) AND k.key = ANY($4::text[])`,
    [partition, owner, PARTITION_WIDE_KEY_OWNER, keys],
  );
  // A key is only ever recorded under one of the two owners: a caller finds a partition-wide key
  // before it could record its own. Either row names the entry the key was first appended as.
  return new Map(rows.map((r) => [r.key, { seq: r.seq, timestampMs: r.ts_ms, prevHash: r.prev_hash, hash: r.hash, author: r.author ?? undefined, dataDigest: r.data_digest }]));
}

type HeadRow = Pick<PartitionTableRow, 'size' | 'head_hash' | 'compact_range'>;
const toHead = (r: HeadRow): PartitionHead => ({ size: r.size, headHash: r.head_hash, compactRange: r.compact_range });

/** Reads the partition's head; undefined when the partition does not exist yet. */
async function readHead(sql: Sql, partition: string): Promise<PartitionHead | undefined> {
  const { rows } = await sql.query<HeadRow>('SELECT size, head_hash, compact_range FROM log.partitions WHERE name = $1', [partition]);
  const row = oneOrNone(rows, `partition ${partition}`);
  return row && toHead(row);
}

async function createPartition(sql: Sql, partition: string): Promise<void> {
  await sql.query('INSERT INTO log.partitions (name, head_hash, compact_range) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING', [
    partition,
    ZERO_HASH,
    CompactRange.empty().serialize(),
  ]);
}

/** Locks the partition's row, creating the partition on first use. */
async function lockPartition(tx: Sql, partition: string): Promise<PartitionHead> {
  const text = 'SELECT size, head_hash, compact_range FROM log.partitions WHERE name = $1 FOR UPDATE';
  let { rows } = await tx.query<HeadRow>(text, [partition]);
  if (rows.length === 0) {
    await createPartition(tx, partition);
    ({ rows } = await tx.query<HeadRow>(text, [partition]));
  }
  return toHead(one(rows, `partition ${partition}`));
}
