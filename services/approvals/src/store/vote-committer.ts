// Group commit for votes, on the kit's GroupCommitter. Every change takes the next service-wide
// version from approvals.head, whose row lock is held through COMMIT (an fsync), so one
// transaction per vote would let the whole service commit one vote at a time. Instead, while a vote
// transaction is in flight (at most MAX_TX_IN_FLIGHT), later votes of this process queue, and the
// next transaction takes all of them (up to MAX_VOTES_PER_TX):
//
//   1. lock every request involved, in id order (replicas batching at once cannot deadlock);
//   2. decide each vote with the quorum rules (domain/quorum.ts) in arrival order, on a working
//      copy of its request, so several votes on one request in one batch see each other;
//   3. write the accepted votes, the requests' new states and one history row per change in one
//      statement that bumps approvals.head once by the number of changes (consecutive versions, in
//      order) as the transaction's last statement; commit once.
//
// Each caller gets its own outcome, and only after the commit; accepted votes are answered with
// their request's content, read outside the transaction. A refused vote writes nothing and fails
// none of the others (a vote that finds its request past the deadline records the expiry, as a
// lone vote would). If the transaction itself fails, the GroupCommitter retries its votes one per
// transaction, so one vote the database refuses cannot fail the votes batched with it.
import { GantryError, GroupCommitter, Status, notFound } from '@gantry/kit';
import { asOf, quorumView, type ApprovalRecord, type RequestRecord, type VoteRecord } from '../domain/approval.js';
import { castVote, type ApprovalState, type Decision } from '../domain/quorum.js';
import type { ApprovalsStore, Change } from './approvals-store.js';
import type { CommittedChange } from './change-feed.js';
import { RequestCache } from './request-cache.js';

/** Most votes one transaction decides and writes. */
export const MAX_VOTES_PER_TX = 256;
/** Most votes a process holds at once (queued, in flight, or being answered); beyond it a vote is RESOURCE_EXHAUSTED. */
export const MAX_QUEUED_VOTES = 4096;
/**
 * Vote transactions one process runs at once. One: a batch is four round trips (BEGIN, lock and
 * read, record, COMMIT), and the votes that arrive during one batch all go in the next, so batches
 * are about twice as large as with two in flight and the per-vote cost of those round trips halves
 * (issue #18, quick runs: PostgreSQL CPU per vote -25%, server -5%, throughput no lower). More stay
 * correct together: votes on one request wait for each other's row lock, and versions are taken in
 * commit order under the head lock.
 */
export const MAX_TX_IN_FLIGHT = 1;
/** Request content one read loads at most when answering a batch (a request holds up to 1 MiB). */
const ANSWER_READ_BYTES = 4 * 1024 * 1024;

export interface VoteCommitLimits {
  maxVotesPerTx: number;
  maxQueuedVotes: number;
  maxTxInFlight: number;
}

/** One validator's vote, with the service clock when it arrived (the deadline is judged at that time). */
export interface VoteRequest {
  validator: string;
  approvalId: string;
  decision: Decision;
  reason: string;
  nowMs: number;
}

/** The outcome of one vote: what SubmitValidatorResponse returns, or the refusal (with the state, when known). */
export type VoteOutcome = { ok: true; approval: ApprovalRecord; duplicate: boolean } | { ok: false; error: GantryError; state?: ApprovalState };

/** A vote decided in a transaction: accepted (its request is read with content once committed) or refused. */
type Decided = { ok: true; request: RequestRecord; duplicate: boolean } | { ok: false; error: GantryError; state?: ApprovalState };

/** A locked request as the batch changes it, and the index of its last change in this batch. */
interface Working {
  locked: RequestRecord;
  current: RequestRecord;
  lastChange: number | undefined;
}

export class VoteCommitter {
  private readonly group: GroupCommitter<VoteRequest, Decided, VoteOutcome>;
  /** The requests as this replica last locked or changed them, so a batch need not read them back. */
  private readonly requests = new RequestCache();

  constructor(
    private readonly store: ApprovalsStore,
    /** Called right after each commit that changed something, with its changes in version order (local streams get them at once). */
    private readonly onCommitted: (changes: CommittedChange[]) => void,
    limits: VoteCommitLimits = { maxVotesPerTx: MAX_VOTES_PER_TX, maxQueuedVotes: MAX_QUEUED_VOTES, maxTxInFlight: MAX_TX_IN_FLIGHT },
  ) {
    this.group = new GroupCommitter<VoteRequest, Decided, VoteOutcome>(
      {
        commit: (votes) => this.commit(votes),
        answer: (_votes, decided) => this.answer(decided),
        queueFull: (limit) => `this replica holds ${limit} votes waiting to commit; retry shortly (the vote was not recorded)`,
      },
      { maxBatch: limits.maxVotesPerTx, maxQueued: limits.maxQueuedVotes, maxTxInFlight: limits.maxTxInFlight, lingerMs: 0 },
    );
  }

  /**
   * Applies one vote in the next group transaction; resolves once it is committed, or with its
   * refusal (RESOURCE_EXHAUSTED when the replica holds too many votes). Rejects only when the
   * vote's own transaction failed with something other than a contract error (a database error:
   * the kit answers INTERNAL and logs it).
   */
  async submit(vote: VoteRequest): Promise<VoteOutcome> {
    try {
      return await this.group.submit(vote);
    } catch (err) {
      if (err instanceof GantryError) return { ok: false, error: err };
      throw err;
    }
  }

  /** Decides and records `votes` in one transaction; one result per vote, in order. */
  private async commit(votes: VoteRequest[]): Promise<Decided[]> {
    const { decided, committed, after } = await this.store.transaction(async (tx) => {
      const locked = await tx.lockAll([...new Set(votes.map((v) => v.approvalId))], this.requests);
      const work = new Map<string, Working>([...locked].map(([id, r]) => [id, { locked: r, current: { ...r, votes: [...r.votes] }, lastChange: undefined }]));
      const changes: Change[] = [];
      /** Votes of this batch, whose versions are known once the batch is written. */
      const cast: { vote: VoteRecord; change: number }[] = [];
      /** Per vote: refused, or accepted as of a change of this batch (undefined: as locked). */
      const results = votes.map((v) => decide(v, work.get(v.approvalId), changes, cast));
      if (changes.length === 0) return { decided: results.map((r) => ('error' in r ? r : { ok: true as const, request: r.w.locked, duplicate: r.duplicate })), committed: [], after: [] };
      const first = await tx.record(changes, locked);
      for (const c of cast) c.vote.version = first + BigInt(c.change);
      return {
        decided: results.map((r): Decided => {
          if ('error' in r) return r;
          const { w } = r;
          const request = r.change === undefined ? w.locked : asOf(w.current, { ...changes[r.change]!, version: first + BigInt(r.change) });
          return { ok: true, request, duplicate: r.duplicate };
        }),
        // Each request as the batch left it: a change's view of it (asOf) drops the later votes.
        committed: changes.map((c, i): CommittedChange => ({ version: first + BigInt(i), approvalId: c.approvalId, type: c.type, state: c.state, request: work.get(c.approvalId)!.current })),
        // Each changed request at its last change, for the cache once committed.
        after: [...work.values()].flatMap((w) => (w.lastChange === undefined ? [] : [asOf(w.current, { ...changes[w.lastChange]!, version: first + BigInt(w.lastChange) })])),
      };
    });
    // Only now: a batch that rolled back leaves its versions to be handed out again.
    for (const r of after) this.requests.set(r);
    if (committed.length > 0) this.onCommitted(committed);
    return decided;
  }

  /** Each vote's answer: a refusal as decided, an accepted vote with its request's content. */
  private async answer(decided: Decided[]): Promise<VoteOutcome[]> {
    const outcomes: VoteOutcome[] = new Array(decided.length);
    const accepted: { at: number; request: RequestRecord; duplicate: boolean }[] = [];
    decided.forEach((d, at) => {
      if (d.ok) accepted.push({ at, request: d.request, duplicate: d.duplicate });
      else outcomes[at] = { ok: false, error: d.error, ...(d.state ? { state: d.state } : {}) };
    });
    let i = 0;
    while (i < accepted.length) {
      // Chunks of bounded content: a batch may touch up to MAX_VOTES_PER_TX requests of 1 MiB each.
      const chunk: typeof accepted = [];
      const ids = new Set<string>();
      let bytes = 0;
      while (i < accepted.length) {
        const next = accepted[i]!;
        const extra = ids.has(next.request.id) ? 0 : next.request.contentBytes;
        if (chunk.length > 0 && bytes + extra > ANSWER_READ_BYTES) break;
        ids.add(next.request.id);
        bytes += extra;
        chunk.push(next);
        i++;
      }
      try {
        const withContent = await this.store.withContent(chunk.map((a) => a.request));
        chunk.forEach((a, k) => (outcomes[a.at] = { ok: true, approval: withContent[k]!, duplicate: a.duplicate }));
      } catch (err) {
        const error = new GantryError(Status.UNAVAILABLE, 'the vote was recorded, but reading the request back failed; GetApprovalStatus shows it', { cause: err });
        for (const a of chunk) outcomes[a.at] = { ok: false, error };
      }
    }
    return outcomes;
  }
}

type Result = { ok: false; error: GantryError; state?: ApprovalState } | { w: Working; change: number | undefined; duplicate: boolean };

/**
 * One vote on its request's working copy, by the quorum rules: a refusal (nothing to write, but
 * for an expiry it discovers), or an accepted vote (a new change, or a duplicate of an earlier one).
 */
function decide(v: VoteRequest, w: Working | undefined, changes: Change[], cast: { vote: VoteRecord; change: number }[]): Result {
  if (!w) return { ok: false, error: notFound(`approval ${v.approvalId} does not exist`) };
  const r = w.current;
  const at = new Date(v.nowMs);
  let decided;
  try {
    decided = castVote(quorumView(r), v.validator, v.decision, v.nowMs);
  } catch (err) {
    if (err instanceof GantryError) return { ok: false, error: err, state: r.state };
    throw err;
  }
  if (decided.kind === 'duplicate') return { w, change: w.lastChange, duplicate: true };
  if (decided.kind === 'expired') {
    w.lastChange = changes.push({ approvalId: r.id, type: 'FINALIZED', state: 'EXPIRED', at, finalizedAt: r.expiresAt }) - 1;
    r.state = 'EXPIRED';
    r.finalizedAt = r.expiresAt;
    return { ok: false, error: new GantryError(Status.FAILED_PRECONDITION, `${r.id} expired at ${r.expiresAt.toISOString()}; votes are closed`), state: 'EXPIRED' };
  }
  const terminal = decided.state !== 'PENDING';
  const finalizedAt = terminal ? at : null;
  w.lastChange = changes.push({ approvalId: r.id, type: terminal ? 'FINALIZED' : 'VOTED', state: decided.state, vote: { validator: v.validator, decision: v.decision, reason: v.reason }, at, finalizedAt }) - 1;
  // Its version is set once the batch is written.
  const vote: VoteRecord = { validator: v.validator, decision: v.decision, reason: v.reason, castAt: at, version: 0n };
  r.votes.push(vote);
  r.state = decided.state;
  r.finalizedAt = finalizedAt;
  cast.push({ vote, change: w.lastChange });
  return { w, change: w.lastChange, duplicate: false };
}

