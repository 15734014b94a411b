// The ApprovalsService handlers, in three groups (submit and read, votes, streams) over shared
// helpers: each validates, calls the store or the vote committer, and maps the result.
import { createHash } from 'node:crypto';
import { acceptingEncoded, checkText, EncodedMessage, GantryError, Status, alreadyExists, invalidArgument, notFound, outOfRange, permissionDenied, type HandlerContext, type Handlers } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { presentAt, type ApprovalRecord, type RequestRecord } from '../domain/approval.js';
import type { ApprovalState, Decision } from '../domain/quorum.js';
import { IdempotencyRace, type ApprovalsTx, type NewRequest } from '../store/approvals-store.js';
import { publishCommitted, type FeedEvent } from '../store/change-feed.js';
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
  pageTokenFilter,
  pageTokens,
} from './validation.js';

export interface ApprovalsDeps extends StreamDeps {
  /** New approval ids. */
  newId: () => string;
  /** Applies votes in group transactions. */
  committer: VoteCommitter;
}

const { PENDING_CHANGE_ADDED: ADDED, PENDING_CHANGE_REMOVED: REMOVED } = approvalsv1.PendingChange;

/** The service's definition, in which watches may send a change encoded once for all of them. */
export const approvalsDefinition = acceptingEncoded(approvalsv1.ApprovalsServiceService, ['watchApprovalUpdates']);

type ApprovalsHandlers = Handlers<typeof approvalsDefinition>;

/** Each change's WatchApprovalUpdatesResponse, encoded once however many watchers send it (the feed hands them one object). */
const encodedChanges = new WeakMap<FeedEvent, EncodedMessage>();

function encodedChange(e: FeedEvent): EncodedMessage {
  let encoded = encodedChanges.get(e);
  if (!encoded) {
    const message = { type: wireEventType(e.type), approval: toApproval(e.approval), version: e.version };
    encoded = new EncodedMessage(Buffer.from(approvalsv1.WatchApprovalUpdatesResponse.encode(message).finish()));
    encodedChanges.set(e, encoded);
  }
  return encoded;
}

const toPending = (u: PendingChangeOut): approvalsv1.PendingUpdate => ({ change: u.change === 'ADDED' ? ADDED : REMOVED, approval: toApproval(u.approval) });

const signalsOf = (ctx: HandlerContext) => ({ signal: ctx.signal, draining: ctx.draining });

/** Records EXPIRED for a locked request whose deadline has passed; returns the new version. */
const expire = (tx: ApprovalsTx, r: RequestRecord, at: Date) => tx.record([{ approvalId: r.id, type: 'FINALIZED', state: 'EXPIRED', at, finalizedAt: r.expiresAt }], new Map([[r.id, r]]));

/** A request with its content; a PENDING one past its deadline is expired first (lazily, with its own version). */
async function current(deps: ApprovalsDeps, id: string): Promise<ApprovalRecord> {
  const r = await deps.store.approval(id);
  if (!r) throw notFound(`approval ${id} does not exist`);
  const nowMs = deps.now();
  if (r.state !== 'PENDING' || nowMs < r.expiresAt.getTime()) return r;
  const expired = await deps.store.transaction(async (tx) => {
    const locked = await tx.lock(id);
    return locked?.state === 'PENDING' && nowMs >= locked.expiresAt.getTime() ? expire(tx, locked, new Date(nowMs)) : undefined;
  });
  if (expired !== undefined) deps.feed.wake();
  return (await deps.store.approval(id))!;
}

/** One vote by `validator`, through the group commit: a refusal is an outcome with its code, not a throw. */
const vote = (deps: ApprovalsDeps, validator: string, approvalId: string, decision: Decision, reason: string): Promise<VoteOutcome> =>
  deps.committer.submit({ validator, approvalId, decision, reason, nowMs: deps.now() });

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
async function streamVote(deps: ApprovalsDeps, validator: string, v: CheckedVote): Promise<approvalsv1.VoteResult> {
  if ('refused' in v) return v.refused;
  const out = await vote(deps, validator, v.approvalId, v.decision, v.reason);
  if (out.ok) return { approvalId: v.approvalId, code: Status.OK, message: '', state: wireState(out.approval.state), duplicate: out.duplicate };
  return refusal(v.approvalId, out.error, out.state);
}

/** A submitted request, checked, with the digest of the body a retry with its request_id must repeat: the store's new request before it has an id and a time. */
type Submission = Omit<NewRequest, 'id' | 'createdAt' | 'expiresAt'> & { expiresAtMs: number };

function checkSubmission(req: approvalsv1.SubmitApprovalRequestRequest, ctx: HandlerContext, nowMs: number): Submission {
  const caller = ctx.principal.subject;
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
  if (requester !== caller && !ctx.principal.scopes.has(APPROVALS_ADMIN_SCOPE)) {
    throw permissionDenied(`${caller} may submit only as itself; submitting for ${requester} needs scope ${APPROVALS_ADMIN_SCOPE}`);
  }
  // The body a retry must repeat: the expiry as sent (a ttl stays a ttl), labels in key order.
  const expiry = req.expiry!.$case === 'ttl' ? ['ttl', expiresAtMs - nowMs] : ['at', expiresAtMs];
  const sortedLabels = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const digest = createHash('sha256')
    .update(JSON.stringify([type, priority, requester, title, req.contentHash.toString('hex'), validators, requiredApprovals, expiry, sortedLabels]))
    .digest();
  return { requestId, requester, type, priority, title, content: req.content, contentHash: req.contentHash, validators, requiredApprovals, labels, expiresAtMs, digest };
}

/**
 * Inserts the request, or finds the one its request_id already created (a retry): the new id and
 * version, or the prior id without a version. The same request_id with another body is refused.
 */
function insertOnce(deps: ApprovalsDeps, s: Submission, createdAt: Date): Promise<{ id: string; version: bigint | undefined }> {
  return deps.store.transaction(async (tx) => {
    if (s.requestId) {
      const prior = await tx.byRequestId(s.requester, s.requestId);
      if (prior && !prior.digest.equals(s.digest)) throw alreadyExists(`request_id ${s.requestId} was already used by ${s.requester} for a different request; use a new one`);
      if (prior) return { id: prior.id, version: undefined };
    }
    const id = deps.newId();
    const { digest, expiresAtMs, ...fields } = s;
    const version = await tx.insert({ ...fields, id, digest, createdAt, expiresAt: new Date(expiresAtMs) });
    return { id, version };
  });
}

/** The record of a request just created, as its insert wrote it. */
function createdRecord(s: Submission, id: string, version: bigint, createdAt: Date): ApprovalRecord {
  const { requester, type, priority, title, content, contentHash, validators, requiredApprovals, labels } = s;
  const fields = { requester, type, priority, title, content, contentHash, validators, requiredApprovals, labels };
  return { ...fields, id, createdVersion: version, version, contentBytes: content.length, state: 'PENDING', createdAt, expiresAt: new Date(s.expiresAtMs), finalizedAt: null, votes: [] };
}

async function submitApprovalRequest(deps: ApprovalsDeps, req: approvalsv1.SubmitApprovalRequestRequest, ctx: HandlerContext): Promise<approvalsv1.SubmitApprovalRequestResponse> {
  const nowMs = deps.now();
  const submission = checkSubmission(req, ctx, nowMs);
  const createdAt = new Date(nowMs);
  for (let attempt = 1; ; attempt++) {
    try {
      const created = await insertOnce(deps, submission, createdAt);
      if (created.version === undefined) return { approval: toApproval(await current(deps, created.id)) };
      const record = createdRecord(submission, created.id, created.version, createdAt);
      publishCommitted(deps.feed, deps.store, [{ version: created.version, approvalId: created.id, type: 'CREATED', state: 'PENDING', request: record }]);
      return { approval: toApproval(record) };
    } catch (err) {
      // A concurrent retry with the same request_id won the insert: answer as its retry.
      if (err instanceof IdempotencyRace && attempt < 2) continue;
      throw err;
    }
  }
}

async function listApprovals(deps: ApprovalsDeps, req: approvalsv1.ListApprovalsRequest): Promise<approvalsv1.ListApprovalsResponse> {
  const filter = checkListFilter(req);
  const limit = checkPageSize(req.pageSize);
  const token = pageTokens.decode(req.pageToken, pageTokenFilter(filter));
  const nowMs = deps.now();
  const { head, requests } = await deps.store.list(filter, token?.beforeCreatedVersion, limit + 1, new Date(nowMs));
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
    approvals: (await deps.store.withContent(page)).map((r) => toApproval(presentAt(r, nowMs))),
    nextPageToken: more ? pageTokens.encode({ listVersion, beforeCreatedVersion: last.createdVersion }, pageTokenFilter(filter)) : '',
    version: listVersion,
  };
}

/** Submitting a request and reading requests. */
function requestHandlers(deps: ApprovalsDeps): Pick<ApprovalsHandlers, 'submitApprovalRequest' | 'getApprovalStatus' | 'listApprovals'> {
  return {
    submitApprovalRequest: (req, ctx) => submitApprovalRequest(deps, req, ctx),
    getApprovalStatus: async (req) => ({ approval: toApproval(await current(deps, checkId('approval_id', req.approvalId))) }),
    listApprovals: (req) => listApprovals(deps, req),
  };
}

/** Votes one at a time, or a batch of them. */
function voteHandlers(deps: ApprovalsDeps): Pick<ApprovalsHandlers, 'submitValidatorResponse' | 'batchSubmitResponses'> {
  return {
    async submitValidatorResponse(req, ctx) {
      const out = await vote(deps, ctx.principal.subject, checkId('approval_id', req.approvalId), checkDecision('decision', req.decision), checkText('reason', req.reason, LIMITS.maxReasonChars));
      if (!out.ok) throw out.error;
      return { approval: toApproval(out.approval), duplicate: out.duplicate };
    },

    async batchSubmitResponses(requests, ctx) {
      // Every vote is read before any is applied, so a batch over the limit writes nothing.
      const votes: CheckedVote[] = [];
      for await (const v of requests) {
        if (votes.length === LIMITS.maxBatchVotes) throw invalidArgument('votes', `a batch holds at most ${LIMITS.maxBatchVotes} votes; send the rest in another batch (nothing was recorded)`);
        votes.push(checkStreamed(v));
      }
      const results: approvalsv1.VoteResult[] = [];
      for (const v of votes) {
        if (ctx.signal.aborted) throw new GantryError(Status.CANCELLED, 'batch cancelled by the client; the votes before it were recorded');
        results.push(await streamVote(deps, ctx.principal.subject, v));
      }
      const accepted = results.filter((r) => r.code === Status.OK).length;
      return { results, accepted, failed: results.length - accepted };
    },
  };
}

async function* watchApprovalUpdates(deps: ApprovalsDeps, req: approvalsv1.WatchApprovalUpdatesRequest, ctx: HandlerContext): AsyncGenerator<approvalsv1.WatchApprovalUpdatesResponse | EncodedMessage> {
  const approvalId = req.approvalId === '' ? '' : checkId('approval_id', req.approvalId);
  if (approvalId && !(await deps.store.request(approvalId))) throw notFound(`approval ${approvalId} does not exist`);
  const head = await deps.store.headVersion();
  if (req.fromVersion > head) throw outOfRange(`from_version ${req.fromVersion} is ahead of the current version ${head}; resume from a version this service returned`);
  let from = req.fromVersion;
  if (from === 0n) {
    from = head;
    yield { type: approvalsv1.ApprovalEventType.APPROVAL_EVENT_TYPE_BOOKMARK, approval: undefined, version: head };
  }
  const accepts = approvalId ? (e: { approvalId: string }) => e.approvalId === approvalId : () => true;
  for await (const item of follow(deps, from, approvalId, accepts, signalsOf(ctx), true)) {
    if ('bookmark' in item) yield { type: approvalsv1.ApprovalEventType.APPROVAL_EVENT_TYPE_BOOKMARK, approval: undefined, version: item.bookmark };
    else yield encodedChange(item.event);
  }
}

/**
 * A validator's session: its votes answered in order, each before the next message is read (so a
 * client that sends faster than it reads is held back by flow control), merged with its to-do list
 * from the first message on (a subscribe sets its filter).
 */
async function* bidirectionalApprovalStream(
  deps: ApprovalsDeps,
  requests: AsyncIterable<approvalsv1.BidirectionalApprovalStreamRequest>,
  ctx: HandlerContext,
): AsyncGenerator<approvalsv1.BidirectionalApprovalStreamResponse> {
  const validator = ctx.principal.subject;
  const session = new AbortController();
  const signals = { signal: AbortSignal.any([ctx.signal, session.signal]), draining: ctx.draining };
  let startPushes: (f: PendingFilterSpec | undefined) => void = () => {};
  const started = new Promise<PendingFilterSpec | undefined>((resolve) => (startPushes = resolve));
  signals.signal.addEventListener('abort', () => startPushes(undefined), { once: true });

  async function* votes(): AsyncGenerator<approvalsv1.BidirectionalApprovalStreamResponse> {
    let first = true;
    for await (const msg of requests) {
      const m = msg.message;
      if (m?.$case === 'subscribe') {
        if (!first) throw invalidArgument('subscribe', 'must be the first message of the stream and sent once');
        startPushes(checkPendingFilter('subscribe.filter', m.value.filter));
      } else if (m?.$case === 'vote') {
        if (first) startPushes(checkPendingFilter('subscribe.filter', undefined));
        yield { message: { $case: 'voteResult', value: await streamVote(deps, validator, checkStreamed(m.value)) } };
      } else {
        throw invalidArgument('message', 'must be a subscribe or a vote');
      }
      first = false;
    }
  }

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
}

/** The streams: changes to requests, a validator's to-do list, and a validator's two-way session. */
function streamHandlers(deps: ApprovalsDeps): Pick<ApprovalsHandlers, 'watchApprovalUpdates' | 'streamPendingApprovals' | 'bidirectionalApprovalStream'> {
  return {
    watchApprovalUpdates: (req, ctx) => watchApprovalUpdates(deps, req, ctx),
    async *streamPendingApprovals(req, ctx) {
      const filter = checkPendingFilter('filter', req.filter);
      for await (const u of pendingFor(deps, ctx.principal.subject, filter, signalsOf(ctx))) yield { change: u.change === 'ADDED' ? ADDED : REMOVED, approval: toApproval(u.approval) };
    },
    bidirectionalApprovalStream: (requests, ctx) => bidirectionalApprovalStream(deps, requests, ctx),
  };
}

/** The service's handlers, one group per concern. */
export function approvalsHandlers(deps: ApprovalsDeps): ApprovalsHandlers {
  return { ...requestHandlers(deps), ...voteHandlers(deps), ...streamHandlers(deps) };
}
