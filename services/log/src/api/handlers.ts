import { GantryError, Status, notFound, outOfRange, invalidArgument, type CallContext, type Handlers, type Principal } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { appendRefusal, authorRefusal, idempotencyKeyOwner } from '../domain/authority.js';
import { ChainVerifier } from '../domain/entry.js';
import { CompactRange, buildProof, consistencyProofPlan, inclusionProofPlan, nodesNeeded } from '../domain/merkle.js';
import type { CheckpointSigner } from '../signer.js';
import { appendMetrics } from '../metrics.js';
import type { AppendNotifier } from '../store/append-notifier.js';
import { appendFailure, type GroupCommitter } from '../store/group-commit.js';
import { seqAt } from '../store/entry-page.js';
import { nodeKey, type AppendReceipt, type KeyedAppender, type LogStore, type PartitionRow, type StoredEntry } from '../store/log-store.js';
import {
  LIMITS,
  checkBatch,
  checkIdempotencyKey,
  checkIdempotencyKeys,
  checkPageSize,
  checkPartition,
  checkPayload,
  partitionPageTokens,
} from './validation.js';
import { EncodedEntries, encodedChunks, type logServiceDefinition } from './entry-wire.js';

export interface LogDeps {
  store: LogStore;
  committer: GroupCommitter;
  notifier: AppendNotifier;
  signer: CheckpointSigner;
  maxPayloadBytes: number;
}

/** The Entry message of a stored entry (unary answers; Read and Tail encode pages directly, entry-wire.ts, to the same bytes). */
export const toEntry = (e: StoredEntry): logv1.Entry => ({
  partition: e.partition,
  seq: e.seq,
  timestamp: new Date(Number(e.timestampMs)),
  data: e.data,
  prevHash: e.prevHash,
  hash: e.hash,
  author: e.author ?? '',
});

/** A new entry (StoredEntry) or an idempotent append's receipt, which may be a duplicate. */
const toReceipt = (e: Omit<AppendReceipt, 'duplicate'> & { duplicate?: boolean }): logv1.EntryReceipt => ({
  seq: e.seq,
  timestamp: new Date(Number(e.timestampMs)),
  prevHash: e.prevHash,
  hash: e.hash,
  author: e.author ?? '',
  duplicate: e.duplicate ?? false,
});

/** An upper bound past every seq that can exist, for reads that run to the end. */
const END_OF_LOG = LIMITS.maxSeq;

/** Rows a single query reads: enough for a few full chunks, few enough to bound memory. */
const READ_ROWS = 2 * LIMITS.maxChunkEntries;

type LogHandlers = Handlers<typeof logServiceDefinition>;

/** The service's handlers, one group per concern. */
export function logHandlers(deps: LogDeps): LogHandlers {
  return { ...writeHandlers(deps), ...readHandlers(deps), ...proofHandlers(deps) };
}

/**
 * Who appends to `partition`, checked before anything is written: the caller must be allowed to
 * write there (audit partitions belong to their family's service) and its subject must be
 * recordable as the entries' author. Returns the author and the owner of its idempotency keys.
 */
function appenderOf(partition: string, principal: Principal): KeyedAppender {
  const refusal = appendRefusal(partition, principal);
  if (refusal) throw new GantryError(Status.PERMISSION_DENIED, refusal);
  const unrecordable = authorRefusal(principal.subject);
  if (unrecordable) {
    throw new GantryError(Status.PERMISSION_DENIED, `the log records who appends every entry, and ${unrecordable}: append with a credential whose subject is 1 to 1024 bytes of UTF-8 without control characters`);
  }
  return { author: principal.subject, keyOwner: idempotencyKeyOwner(partition, principal) };
}

/**
 * Keyed appends skip group commit: each takes the partition's row lock and looks its keys up
 * under it (LogStore.appendKeyed), which a shared transaction of unkeyed appends must not wait on.
 */
async function appendKeyed(deps: LogDeps, counted: Counted, partition: string, payloads: readonly Buffer[], keys: readonly string[], by: KeyedAppender): Promise<AppendReceipt[]> {
  const receipts = await deps.store.appendKeyed(partition, payloads, keys, by, BigInt(Date.now())).catch((err: unknown) => {
    throw appendFailure(err);
  });
  const duplicates = receipts.filter((r) => r.duplicate).length;
  counted(receipts.length - duplicates, duplicates);
  if (duplicates < receipts.length) deps.notifier.wake(partition);
  return receipts;
}

async function requirePartition(store: LogStore, name: string): Promise<PartitionRow> {
  const row = await store.partition(checkPartition(name));
  if (!row) throw notFound(`partition ${name} does not exist (it is created by its first append)`);
  return row;
}

/** Streams entries [from, to) in chunks; `to` undefined = follow forever (Tail -f). */
async function* stream(deps: LogDeps, partition: string, from: bigint, to: bigint | undefined, ctx: CallContext): AsyncGenerator<EncodedEntries> {
  const { store, notifier } = deps;
  // The mark is taken before the query, so an append that commits after the query looked wakes
  // the follower instead of being missed.
  const fetch = (at: bigint) => {
    const mark = notifier.mark();
    const page = store.readPage(partition, at, to ?? END_OF_LOG, READ_ROWS);
    // A prefetch may settle after the client has gone; its error is then nobody's to handle.
    page.catch(() => {});
    return { mark, page };
  };
  let next = from;
  let pending = fetch(next);
  while (!ctx.signal.aborted && (to === undefined || next < to)) {
    const page = await pending.page;
    if (page) {
      const lastAt = page.offsets[page.offsets.length - 1];
      if (lastAt === undefined) throw new Error(`a page of partition ${partition} holds no entries`);
      next = seqAt(page.bytes, lastAt) + 1n;
      // The next page is read from the database while this one is encoded and sent.
      if (to === undefined || next < to) pending = fetch(next);
      yield* encodedChunks(page, LIMITS.maxChunkEntries, LIMITS.maxChunkBytes);
      continue;
    }
    if (to !== undefined) return;
    if (ctx.draining.aborted) {
      throw new GantryError(Status.UNAVAILABLE, `server is shutting down; resume the tail with start_seq ${next} on another replica`, {
        trailers: { 'gantry-resume-seq': next.toString() },
      });
    }
    await notifier.next(partition, pending.mark, LIMITS.followPollMs, AbortSignal.any([ctx.signal, ctx.draining]));
    pending = fetch(next);
  }
}

type Counted = ReturnType<typeof appendMetrics>;

/** Appends: one entry, or a batch; keyed ones are idempotent. Each entry records its author. */
function writeHandlers(deps: LogDeps): Pick<LogHandlers, 'append' | 'appendBatch'> {
  const { committer, notifier } = deps;
  const counted = appendMetrics();
  return {
    async append(req, ctx) {
      const partition = checkPartition(req.partition);
      const by = appenderOf(partition, ctx.principal);
      const data = checkPayload('data', req.data, deps.maxPayloadBytes);
      if (req.idempotencyKey !== '') {
        const [receipt] = await appendKeyed(deps, counted, partition, [data], [checkIdempotencyKey('idempotency_key', req.idempotencyKey)], by);
        return toReceipt(receipt!);
      }
      const [entry] = await committer.append(partition, by.author, [data]);
      counted(1);
      notifier.wake(partition);
      return toReceipt(entry!);
    },

    async appendBatch(req, ctx) {
      const partition = checkPartition(req.partition);
      const by = appenderOf(partition, ctx.principal);
      const payloads = checkBatch(req.data, deps.maxPayloadBytes);
      const keys = checkIdempotencyKeys(req.idempotencyKeys, payloads.length);
      if (keys.length > 0) return { receipts: (await appendKeyed(deps, counted, partition, payloads, keys, by)).map(toReceipt) };
      const entries = await committer.append(partition, by.author, payloads);
      counted(entries.length);
      notifier.wake(partition);
      return { receipts: entries.map(toReceipt) };
    },
  };
}

/** Reading entries (a range, or the tail and what follows) and the partitions' heads. */
function readHandlers(deps: LogDeps): Pick<LogHandlers, 'read' | 'tail' | 'listPartitions' | 'getLastEntry'> {
  const { store } = deps;
  return {
    async *read(req, ctx) {
      const head = await requirePartition(store, req.partition);
      if (req.startSeq > head.size) throw outOfRange(`start_seq ${req.startSeq} is past the end of partition ${head.name} (size ${head.size})`);
      const end = req.limit === 0n || req.startSeq + req.limit > head.size ? head.size : req.startSeq + req.limit;
      yield* stream(deps, head.name, req.startSeq, end, ctx);
    },

    async *tail(req, ctx) {
      const partition = checkPartition(req.partition);
      if (req.last > LIMITS.maxTailLast) throw invalidArgument('last', `must be at most ${LIMITS.maxTailLast}`);
      const head = await store.partition(partition);
      if (!head && !req.follow) throw notFound(`partition ${partition} does not exist`);
      const size = head?.size ?? 0n;
      let from: bigint;
      if (req.startSeq !== undefined) {
        if (req.startSeq > LIMITS.maxSeq) throw outOfRange(`start_seq ${req.startSeq} is beyond the largest possible seq (${LIMITS.maxSeq})`);
        if (req.startSeq > size && !req.follow) throw outOfRange(`start_seq ${req.startSeq} is past the end of partition ${partition} (size ${size})`);
        from = req.startSeq;
      } else {
        from = size > BigInt(req.last) ? size - BigInt(req.last) : 0n;
      }
      yield* stream(deps, partition, from, req.follow ? undefined : size, ctx);
    },

    async listPartitions(req) {
      const limit = checkPageSize(req.pageSize);
      const rows = await store.listPartitions(req.prefix, partitionPageTokens.decode(req.pageToken) ?? '', limit + 1);
      const page = rows.slice(0, limit);
      return {
        partitions: page.map((p) => ({ name: p.name, size: p.size, lastHash: p.size > 0n ? p.headHash : Buffer.alloc(0), createdAt: p.createdAt, lastAppendedAt: p.lastAppendedAt ?? undefined })),
        nextPageToken: rows.length > limit ? partitionPageTokens.encode(page[page.length - 1]!.name) : '',
      };
    },

    async getLastEntry(req) {
      const head = await requirePartition(store, req.partition);
      const entry = await store.lastEntry(head.name);
      if (!entry) throw notFound(`partition ${head.name} is empty`);
      return { entry: toEntry(entry) };
    },
  };
}

/** What proves the log: the chain check, the signed checkpoint, inclusion and consistency proofs. */
function proofHandlers(deps: LogDeps): Pick<LogHandlers, 'verify' | 'getCheckpoint' | 'getInclusionProof' | 'getConsistencyProof'> {
  const { store, signer } = deps;
  return {
    async verify(req, ctx) {
      const head = await requirePartition(store, req.partition);
      const verifier = new ChainVerifier();
      let after = -1n;
      for (;;) {
        if (ctx.signal.aborted) throw new GantryError(Status.CANCELLED, 'verify cancelled');
        const rows = await store.readRange(head.name, after + 1n, END_OF_LOG, LIMITS.verifyChunkEntries);
        if (rows.length === 0) break;
        let intact = true;
        for (const row of rows) if (!(intact = verifier.push(row))) break;
        if (!intact) break;
        after = rows[rows.length - 1]!.seq;
      }
      // The partition head says how many entries there must be: rows deleted from the end show here.
      const result = verifier.result({ size: head.size, lastHash: head.size > 0n ? head.headHash : undefined });
      return { valid: result.valid, count: BigInt(result.count), finalHash: Buffer.from(result.finalHash), firstBadSeq: result.firstBadSeq, reason: result.reason };
    },

    async getCheckpoint(req) {
      const head = await requirePartition(store, req.partition);
      const root = CompactRange.deserialize(head.size, head.compactRange).root();
      return signer.checkpoint(head.name, head.size, root);
    },

    async getInclusionProof(req) {
      const head = await requirePartition(store, req.partition);
      const treeSize = req.treeSize === 0n ? head.size : req.treeSize;
      if (treeSize > head.size) throw outOfRange(`tree_size ${treeSize} is larger than partition ${head.name} (size ${head.size})`);
      if (req.seq >= treeSize) throw outOfRange(`seq ${req.seq} is not in a tree of ${treeSize} entries`);
      const plan = inclusionProofPlan(Number(req.seq), Number(treeSize));
      const nodes = await store.treeNodes(head.name, [...nodesNeeded(plan), { level: 0, index: Number(req.seq) }]);
      const lookup = (level: number, index: number) => nodes.get(nodeKey(level, index)) ?? missingNode(head.name, level, index);
      return { seq: req.seq, treeSize, leafHash: lookup(0, Number(req.seq)), hashes: buildProof(plan, lookup) };
    },

    async getConsistencyProof(req) {
      const head = await requirePartition(store, req.partition);
      const newSize = req.newSize === 0n ? head.size : req.newSize;
      if (req.oldSize === 0n) throw invalidArgument('old_size', 'must be at least 1 (every tree is consistent with the empty tree)');
      if (newSize > head.size) throw outOfRange(`new_size ${newSize} is larger than partition ${head.name} (size ${head.size})`);
      if (req.oldSize > newSize) throw outOfRange(`old_size ${req.oldSize} is larger than new_size ${newSize}`);
      const plan = consistencyProofPlan(Number(req.oldSize), Number(newSize));
      const nodes = await store.treeNodes(head.name, nodesNeeded(plan));
      const lookup = (level: number, index: number) => nodes.get(nodeKey(level, index)) ?? missingNode(head.name, level, index);
      return { oldSize: req.oldSize, newSize, hashes: buildProof(plan, lookup) };
    },
  };
}

function missingNode(partition: string, level: number, index: number): never {
  // Tree nodes are written in the same transaction as their entries; a missing one is corruption.
  throw new GantryError(Status.DATA_LOSS, `tree node ${level}/${index} of partition ${partition} is missing; run Verify`);
}
