import { createHash } from 'node:crypto';
import { checkText, GantryError, Status, alreadyExists, invalidArgument, notFound, outOfRange, permissionDenied, unauthenticated, type CallContext, type Handlers } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import type { ApprovalRecord, RequestRecord } from '../domain/approval.js';
import type { ApprovalState, Decision } from '../domain/quorum.js';
import { IdempotencyRace, type ApprovalsTx } from '../store/approvals-store.js';
import type { VoteCommitter, VoteOutcome } from '../store/vote-committer.js';
import { APPROVALS_ADMIN_SCOPE } from './scopes.js';
import { wireEventType, wireState } from '../domain/wire.js';
import { toApproval } from './convert.js';
import { follow, mergeUntil, pendingFor, type PendingChangeOut, type PendingFilterSpec, type StreamDeps } from './streams.js';
import {
  LIMITS,
  checkContent,
  checkDecision,
  checkExpiry,
  checkId,
  checkKind,
  checkLabels,
  checkListFilter,
  checkPageSize,
  checkPendingFilter,
  checkPriority,
  checkRequiredApprovals,
  checkValidators,
  decodePageToken,
  encodePageToken,
  filterDigest,
} from './validation.js';

export interface ApprovalsDeps extends StreamDeps {
  /** New approval ids. */
  newId: () => string;
  /** Applies votes in group transactions. */
  committer: VoteCommitter;
}

const { PENDING_CHANGE_ADDED: ADDED, PENDING_CHANGE_REMOVED: REMOVED } = approvalsv1.PendingChange;

function callerOf(ctx: CallContext): string {
  if (!ctx.principal) throw unauthenticated('no authenticated caller');
  return ctx.principal.subject;
}

/** A listed request as it stands at `nowMs`: one past its deadline that the sweeper has not reached yet is EXPIRED. */
const presentAt = (r: ApprovalRecord, nowMs: number): ApprovalRecord =>
  r.state === 'PENDING' && nowMs >= r.expiresAt.getTime() ? { ...r, state: 'EXPIRED', finalizedAt: r.expiresAt } : r;

const toPending = (u: PendingChangeOut): approvalsv1.PendingUpdate => ({ change: u.change === 'ADDED' ? ADDED : REMOVED, approval: toApproval(u.approval) });

export function approvalsHandlers(deps: ApprovalsDeps): Handlers<typeof approvalsv1.ApprovalsServiceService> {
  const { store, feed, committer } = deps;

  /** Records EXPIRED for a locked request whose deadline has passed; returns the new version. */
  const expire = (tx: ApprovalsTx, r: RequestRecord, at: Date) => tx.record([{ approvalId: r.id, type: 'FINALIZED', state: 'EXPIRED', at, finalizedAt: r.expiresAt }], new Map([[r.id, r]]));

  /** A request with its content; a PENDING one past its deadline is expired first (lazily, with its own version). */
  async function current(id: string): Promise<ApprovalRecord> {
    const r = await store.approval(id);
    if (!r) throw notFound(`approval ${id} does not exist`);
    const nowMs = deps.now();
    if (r.state !== 'PENDING' || nowMs < r.expiresAt.getTime()) return r;
    const expired = await store.transaction(async (tx) => {
      const locked = await tx.lock(id);
      return locked?.state === 'PENDING' && nowMs >= locked.expiresAt.getTime() ? expire(tx, locked, new Date(nowMs)) : undefined;
    });
    if (expired !== undefined) feed.wake();
    return (await store.approval(id))!;
  }

  /** One vote by `validator`, through the group commit: a refusal is an outcome with its code, not a throw. */
  const vote = (validator: string, approvalId: string, decision: Decision, reason: string): Promise<VoteOutcome> =>
    committer.submit({ validator, approvalId, decision, reason, nowMs: deps.now() });

  type StreamedVote = { approvalId: string; decision: approvalsv1.VoteDecision; reason: string };
  type CheckedVote = { approvalId: string; decision: Decision; reason: string } | { refused: approvalsv1.VoteResult };
  const refusal = (approvalId: string, error: GantryError, state?: ApprovalState): approvalsv1.VoteResult => ({
    // Only the first 128 characters of an overlong id are echoed back.
    approvalId: approvalId.slice(0, LIMITS.maxIdChars),
    code: error.code,
    message: error.message,
    state: state ? wireState(state) : approvalsv1.ApprovalState.APPROVAL_STATE_UNSPECIFIED,
    duplicate: false,
  });

  /** A vote from a stream, checked as it arrives: a refused one keeps only its result, not its (maybe huge) fields. */
  function checkStreamed(v: StreamedVote): CheckedVote {
    try {
      return { approvalId: checkId('approval_id', v.approvalId), decision: checkDecision('decision', v.decision), reason: checkText('reason', v.reason, LIMITS.maxReasonChars) };
    } catch (err) {
      if (!(err instanceof GantryError)) throw err;
      return { refused: refusal(v.approvalId, err) };
    }
  }

  /** A checked vote applied and reported as a VoteResult (never thrown). */
  async function streamVote(validator: string, v: CheckedVote): Promise<approvalsv1.VoteResult> {
    if ('refused' in v) return v.refused;
    const out = await vote(validator, v.approvalId, v.decision, v.reason);
    if (out.ok) return { approvalId: v.approvalId, code: Status.OK, message: '', state: wireState(out.approval.state), duplicate: out.duplicate };
    return refusal(v.approvalId, out.error, out.state);
  }

  const signalsOf = (ctx: CallContext) => ({ signal: ctx.signal, draining: ctx.draining });

  return {
    async submitApprovalRequest(req, ctx) {
      const caller = callerOf(ctx);
      const nowMs = deps.now();
      const requestId = req.requestId === '' ? null : checkId('request_id', req.requestId);
      const type = checkKind('type', req.type);
      const priority = checkPriority('priority', req.priority);
      const title = checkText('title', req.title, LIMITS.maxTitleChars);
      checkContent(req.content, req.contentHash);
      const validators = checkValidators(req.validators);
      const requiredApprovals = checkRequiredApprovals(req.requiredApprovals, validators.length);
      const expiresAtMs = checkExpiry(req.expiry, nowMs);
      const labels = checkLabels(req.labels);
      const requester = req.requester === '' ? caller : checkId('requester', req.requester, LIMITS.maxSubjectChars);
      if (requester !== caller && !ctx.principal!.scopes.has(APPROVALS_ADMIN_SCOPE)) {
        throw permissionDenied(`${caller} may submit only as itself; submitting for ${requester} needs scope ${APPROVALS_ADMIN_SCOPE}`);
      }
      // The body a retry must repeat: the expiry as sent (a ttl stays a ttl), labels in key order.
      const expiry = req.expiry!.$case === 'ttl' ? ['ttl', expiresAtMs - nowMs] : ['at', expiresAtMs];
      const sortedLabels = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const digest = createHash('sha256')
        .update(JSON.stringify([type, priority, requester, title, req.contentHash.toString('hex'), validators, requiredApprovals, expiry, sortedLabels]))
        .digest();
      const createdAt = new Date(nowMs);
      for (let attempt = 1; ; attempt++) {
        try {
          const created = await store.transaction(async (tx) => {
            if (requestId) {
              const prior = await tx.byRequestId(requester, requestId);
              if (prior && !prior.digest.equals(digest)) throw alreadyExists(`request_id ${requestId} was already used by ${requester} for a different request; use a new one`);
              if (prior) return { id: prior.id, version: undefined };
            }
            const id = deps.newId();
            const version = await tx.insert({ id, requester, requestId, digest, type, priority, title, content: req.content, contentHash: req.contentHash, validators, requiredApprovals, labels, createdAt, expiresAt: new Date(expiresAtMs) });
            return { id, version };
          });
          if (created.version === undefined) return { approval: toApproval(await current(created.id)) };
          feed.wake();
          const approval: ApprovalRecord = {
            id: created.id,
            createdVersion: created.version,
            version: created.version,
            requester,
            type,
            priority,
            title,
            content: req.content,
            contentHash: req.contentHash,
            contentBytes: req.content.length,
            validators,
            requiredApprovals,
            state: 'PENDING',
            labels,
            createdAt,
            expiresAt: new Date(expiresAtMs),
            finalizedAt: null,
            votes: [],
          };
          return { approval: toApproval(approval) };
        } catch (err) {
          // A concurrent retry with the same request_id won the insert: answer as its retry.
          if (err instanceof IdempotencyRace && attempt < 2) continue;
          throw err;
        }
      }
    },

    async getApprovalStatus(req) {
      return { approval: toApproval(await current(checkId('approval_id', req.approvalId))) };
    },

    async submitValidatorResponse(req, ctx) {
      const validator = callerOf(ctx);
      const out = await vote(validator, checkId('approval_id', req.approvalId), checkDecision('decision', req.decision), checkText('reason', req.reason, LIMITS.maxReasonChars));
      if (!out.ok) throw out.error;
      return { approval: toApproval(out.approval), duplicate: out.duplicate };
    },

    async *watchApprovalUpdates(req, ctx) {
      callerOf(ctx);
      const approvalId = req.approvalId === '' ? '' : checkId('approval_id', req.approvalId);
      if (approvalId && !(await store.request(approvalId))) throw notFound(`approval ${approvalId} does not exist`);
      const head = await store.headVersion();
      if (req.fromVersion > head) throw outOfRange(`from_version ${req.fromVersion} is ahead of the current version ${head}; resume from a version this service returned`);
      let from = req.fromVersion;
      if (from === 0n) {
        from = head;
        yield { type: approvalsv1.ApprovalEventType.APPROVAL_EVENT_TYPE_BOOKMARK, approval: undefined, version: head };
      }
      const accepts = approvalId ? (e: { approvalId: string }) => e.approvalId === approvalId : () => true;
      for await (const item of follow(deps, from, approvalId, accepts, signalsOf(ctx), true)) {
        if ('bookmark' in item) yield { type: approvalsv1.ApprovalEventType.APPROVAL_EVENT_TYPE_BOOKMARK, approval: undefined, version: item.bookmark };
        else yield { type: wireEventType(item.event.type), approval: toApproval(item.event.approval), version: item.event.version };
      }
    },

    async *streamPendingApprovals(req, ctx) {
      const validator = callerOf(ctx);
      const filter = checkPendingFilter('filter', req.filter);
      for await (const u of pendingFor(deps, validator, filter, signalsOf(ctx))) yield { change: u.change === 'ADDED' ? ADDED : REMOVED, approval: toApproval(u.approval) };
    },

    async batchSubmitResponses(requests, ctx) {
      const validator = callerOf(ctx);
      // Every vote is read before any is applied, so a batch over the limit writes nothing.
      const votes: CheckedVote[] = [];
      for await (const v of requests) {
        if (votes.length === LIMITS.maxBatchVotes) throw invalidArgument('votes', `a batch holds at most ${LIMITS.maxBatchVotes} votes; send the rest in another batch (nothing was recorded)`);
        votes.push(checkStreamed(v));
      }
      const results: approvalsv1.VoteResult[] = [];
      for (const v of votes) {
        if (ctx.signal.aborted) throw new GantryError(Status.CANCELLED, 'batch cancelled by the client; the votes before it were recorded');
        results.push(await streamVote(validator, v));
      }
      const accepted = results.filter((r) => r.code === Status.OK).length;
      return { results, accepted, failed: results.length - accepted };
    },

    async *bidirectionalApprovalStream(requests, ctx) {
      const validator = callerOf(ctx);
      const session = new AbortController();
      const signals = { signal: AbortSignal.any([ctx.signal, session.signal]), draining: ctx.draining };
      let startPushes: (f: PendingFilterSpec | undefined) => void = () => {};
      const started = new Promise<PendingFilterSpec | undefined>((resolve) => (startPushes = resolve));
      signals.signal.addEventListener('abort', () => startPushes(undefined), { once: true });

      // The client's messages, in order: each vote is answered before the next message is read,
      // so a client that sends votes faster than it reads results is held back by flow control.
      async function* votes(): AsyncGenerator<approvalsv1.BidirectionalApprovalStreamResponse> {
        let first = true;
        for await (const msg of requests) {
          const m = msg.message;
          if (m?.$case === 'subscribe') {
            if (!first) throw invalidArgument('subscribe', 'must be the first message of the stream and sent once');
            startPushes(checkPendingFilter('subscribe.filter', m.value.filter));
          } else if (m?.$case === 'vote') {
            if (first) startPushes(checkPendingFilter('subscribe.filter', undefined));
            yield { message: { $case: 'voteResult', value: await streamVote(validator, checkStreamed(m.value)) } };
          } else {
            throw invalidArgument('message', 'must be a subscribe or a vote');
          }
          first = false;
        }
      }

      // The to-do list, from the first client message on (a subscribe sets its filter).
      async function* pushes(): AsyncGenerator<approvalsv1.BidirectionalApprovalStreamResponse> {
        const filter = await started;
        if (!filter) return;
        for await (const u of pendingFor(deps, validator, filter, signals)) yield { message: { $case: 'pending', value: toPending(u) } };
      }

      try {
        yield* mergeUntil(votes(), pushes());
      } finally {
        session.abort();
      }
    },

    async listApprovals(req) {
      const filter = checkListFilter(req);
      const limit = checkPageSize(req.pageSize);
      const token = decodePageToken(req.pageToken, filter);
      const nowMs = deps.now();
      const { head, requests } = await store.list(filter, token?.beforeCreatedVersion, limit + 1, new Date(nowMs));
      const page: RequestRecord[] = [];
      let bytes = 0;
      for (const r of requests.slice(0, limit)) {
        if (page.length > 0 && bytes + r.contentBytes > LIMITS.maxPageContentBytes) break;
        page.push(r);
        bytes += r.contentBytes;
      }
      const listVersion = token?.listVersion ?? head;
      const last = page[page.length - 1];
      const more = requests.length > page.length && last !== undefined;
      return {
        approvals: (await store.withContent(page)).map((r) => toApproval(presentAt(r, nowMs))),
        nextPageToken: more ? encodePageToken({ listVersion, beforeCreatedVersion: last.createdVersion, filter: filterDigest(filter) }) : '',
        version: listVersion,
      };
    },
  };
}
