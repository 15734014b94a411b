// Request checks for the approvals API: field shapes (INVALID_ARGUMENT) before anything is read or
// written. Nothing here touches the database.
import { createHash } from 'node:crypto';
import { checkText, checkTimestamp, durationToMs, invalidArgument, pageTokenCodec } from '@gantry/kit';
import type { approvalsv1 } from '@gantry/proto';
import type { ApprovalKind, PriorityRank } from '../domain/approval.js';
import type { ApprovalState, Decision } from '../domain/quorum.js';
import type { ListFilter } from '../store/approvals-store.js';
import { DECISIONS, KINDS, PRIORITIES, STATES } from '../domain/wire.js';

/** Limits of the approvals API; each is part of the contract (approvals.proto). */
export const LIMITS = {
  maxValidators: 100,
  maxContentBytes: 1024 * 1024,
  contentHashBytes: 32,
  maxTitleChars: 256,
  /** approval_id and request_id. */
  maxIdChars: 128,
  /** Requester and validator identities (JWT subjects). */
  maxSubjectChars: 256,
  maxLabels: 32,
  maxLabelKeyChars: 64,
  maxLabelValueChars: 256,
  maxReasonChars: 1024,
  maxExpiryMs: 30 * 24 * 3600 * 1000,
  maxBatchVotes: 1000,
  defaultPageSize: 50,
  maxPageSize: 500,
  /**
   * Content one ListApprovals page carries at most (a request holds up to 1 MiB): a page can hold
   * fewer than page_size requests, and next_page_token continues it. Below the server's default
   * 4 MiB message limit (limits.maxSendMessageBytes), with room for everything but content.
   */
  maxPageContentBytes: 3 * 1024 * 1024,
} as const;

const quote = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

/** A required identifier of at most `max` characters. */
export function checkId(field: string, id: string, max: number = LIMITS.maxIdChars): string {
  if (id.length === 0) throw invalidArgument(field, 'is required');
  if (id.length > max) throw invalidArgument(field, `is ${id.length} characters; the maximum is ${max}`);
  return id;
}


export function checkDecision(field: string, d: approvalsv1.VoteDecision): Decision {
  const decision = DECISIONS.get(d);
  if (!decision) throw invalidArgument(field, 'must be APPROVE, REJECT or ABSTAIN');
  return decision;
}

export function checkKind(field: string, t: approvalsv1.ApprovalType): ApprovalKind {
  const kind = KINDS.get(t);
  if (!kind) throw invalidArgument(field, 'must be a known approval type (not UNSPECIFIED)');
  return kind;
}

export function checkPriority(field: string, p: approvalsv1.ApprovalPriority): PriorityRank {
  const rank = PRIORITIES.get(p);
  if (!rank) throw invalidArgument(field, 'must be NORMAL, HIGH or CRITICAL (not UNSPECIFIED)');
  return rank;
}

/** The validator set: 1 to 100 distinct, non-empty identities. */
export function checkValidators(validators: string[]): string[] {
  if (validators.length === 0) throw invalidArgument('validators', 'must name at least one validator');
  if (validators.length > LIMITS.maxValidators) throw invalidArgument('validators', `names ${validators.length} validators; the maximum is ${LIMITS.maxValidators}`);
  const seen = new Set<string>();
  validators.forEach((v, i) => {
    checkId(`validators[${i}]`, v, LIMITS.maxSubjectChars);
    if (seen.has(v)) throw invalidArgument(`validators[${i}]`, `${quote(v)} appears twice; each validator votes once`);
    seen.add(v);
  });
  return validators;
}

export function checkRequiredApprovals(m: number, n: number): number {
  if (m === 0) throw invalidArgument('required_approvals', 'must be at least 1');
  if (m > n) throw invalidArgument('required_approvals', `is ${m} but there are only ${n} validators; M must be at most N`);
  return m;
}

/** Content (1 byte to 1 MiB) and its SHA-256, which the caller sends and the server checks. */
export function checkContent(content: Buffer, contentHash: Buffer): void {
  if (content.length === 0) throw invalidArgument('content', 'must not be empty');
  if (content.length > LIMITS.maxContentBytes) throw invalidArgument('content', `is ${content.length} bytes; the maximum is ${LIMITS.maxContentBytes} (1 MiB)`);
  if (contentHash.length !== LIMITS.contentHashBytes) throw invalidArgument('content_hash', `must be the 32-byte SHA-256 of content, got ${contentHash.length} bytes`);
  if (!createHash('sha256').update(content).digest().equals(contentHash)) throw invalidArgument('content_hash', 'does not match SHA-256(content): the content was altered or hashed differently');
}

/** The deadline from expires_at or ttl: after now, at most 30 days ahead. */
export function checkExpiry(expiry: approvalsv1.SubmitApprovalRequestRequest['expiry'], nowMs: number): number {
  if (!expiry) throw invalidArgument('expiry', 'is required: set expires_at or ttl');
  let atMs: number;
  if (expiry.$case === 'expiresAt') {
    atMs = checkTimestamp('expires_at', expiry.value).getTime();
    if (atMs <= nowMs) throw invalidArgument('expires_at', `is ${Math.round((nowMs - atMs) / 1000)} s in the past; it must be in the future`);
  } else {
    const ttlMs = durationToMs(expiry.value);
    if (ttlMs <= 0) throw invalidArgument('ttl', 'must be positive');
    atMs = nowMs + ttlMs;
  }
  if (atMs - nowMs > LIMITS.maxExpiryMs) throw invalidArgument(expiry.$case === 'expiresAt' ? 'expires_at' : 'ttl', 'is more than 30 days ahead');
  return atMs;
}

export function checkLabels(labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > LIMITS.maxLabels) throw invalidArgument('labels', `has ${entries.length} entries; the maximum is ${LIMITS.maxLabels}`);
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > LIMITS.maxLabelKeyChars) throw invalidArgument('labels', `key ${quote(k)} must be 1 to ${LIMITS.maxLabelKeyChars} characters`);
    if (v.length > LIMITS.maxLabelValueChars) throw invalidArgument(`labels[${k}]`, `is ${v.length} characters; the maximum is ${LIMITS.maxLabelValueChars}`);
  }
  return labels;
}

/** A stream's filter: known types, a known (or unspecified) minimum priority. */
export function checkPendingFilter(field: string, f: approvalsv1.PendingFilter | undefined): { types: ApprovalKind[]; minPriority: PriorityRank } {
  const types = (f?.types ?? []).map((t, i) => checkKind(`${field}.types[${i}]`, t));
  const min = f?.minPriority ?? 0;
  return { types: [...new Set(types)], minPriority: min === 0 ? 1 : checkPriority(`${field}.min_priority`, min) };
}

export function checkPageSize(pageSize: number): number {
  if (pageSize < 0 || pageSize > LIMITS.maxPageSize) throw invalidArgument('page_size', `must be between 0 and ${LIMITS.maxPageSize} (0 = ${LIMITS.defaultPageSize})`);
  return pageSize === 0 ? LIMITS.defaultPageSize : pageSize;
}

export function checkListFilter(req: approvalsv1.ListApprovalsRequest): ListFilter {
  const states = req.states.map((s, i) => {
    const state = STATES.get(s);
    if (!state) throw invalidArgument(`states[${i}]`, 'must be PENDING, APPROVED, REJECTED or EXPIRED');
    return state;
  });
  const filter: ListFilter = {
    states: [...new Set<ApprovalState>(states)].sort(),
    types: [...new Set(req.types.map((t, i) => checkKind(`types[${i}]`, t)))].sort(),
    requester: checkText('requester', req.requester, LIMITS.maxSubjectChars),
    validator: checkText('validator', req.validator, LIMITS.maxSubjectChars),
    createdAfter: checkTimestamp('created_after', req.createdAfter),
    createdBefore: checkTimestamp('created_before', req.createdBefore),
  };
  return filter;
}

/** ListApprovals page tokens: the version the first page was read at and where the next page starts, tied to the filters. */
export const pageTokens = pageTokenCodec({ listVersion: 'seq', beforeCreatedVersion: 'seq' });

/** The filters a page token is tied to, in a fixed order, so a token cannot continue a listing with other filters. */
export const pageTokenFilter = (f: ListFilter): unknown[] => [f.states, f.types, f.requester, f.validator, f.createdAfter?.toISOString() ?? '', f.createdBefore?.toISOString() ?? ''];
