// An approval request as the service keeps it, and the views of it at a given version. The quorum
// rules themselves are in quorum.ts; this file only says what a request and a change are.
import type { ApprovalState, Decision, QuorumRequest } from './quorum.js';

export type ApprovalKind = 'LARGE_TRANSACTION' | 'CONTRACT_DEPLOYMENT' | 'PARAMETER_CHANGE' | 'ACCESS_GRANT' | 'OTHER';

/** 1 NORMAL, 2 HIGH, 3 CRITICAL: a rank, so that "at least HIGH" is a comparison. */
export type PriorityRank = 1 | 2 | 3;

/** What a change did to a request; one change, one version. A vote that decides is FINALIZED. */
export type ChangeType = 'CREATED' | 'VOTED' | 'FINALIZED';

export interface VoteRecord {
  validator: string;
  decision: Decision;
  reason: string;
  castAt: Date;
  /** The version of the change that recorded this vote. */
  version: bigint;
}

/** A request without its content (which is fetched only when it is sent: up to 1 MiB each). */
export interface RequestRecord {
  id: string;
  /** Version of the change that created it: orders requests newest first. */
  createdVersion: bigint;
  /** Version of its last change. */
  version: bigint;
  requester: string;
  type: ApprovalKind;
  priority: PriorityRank;
  title: string;
  contentHash: Buffer;
  contentBytes: number;
  validators: string[];
  requiredApprovals: number;
  state: ApprovalState;
  labels: Record<string, string>;
  createdAt: Date;
  expiresAt: Date;
  finalizedAt: Date | null;
  /** Votes in the order they were cast. */
  votes: VoteRecord[];
}

/** A request with its content: what the API sends. */
export interface ApprovalRecord extends RequestRecord {
  content: Buffer;
}

/** One row of the change history. */
export interface ChangeRecord {
  version: bigint;
  approvalId: string;
  type: ChangeType;
  /** The request's state after the change. */
  state: ApprovalState;
}

/** The request as it was right after `change`: its votes up to that version, that state. */
export function asOf<R extends RequestRecord>(request: R, change: ChangeRecord): R {
  const terminal = change.state !== 'PENDING';
  return {
    ...request,
    version: change.version,
    state: change.state,
    finalizedAt: terminal ? request.finalizedAt : null,
    votes: request.votes.filter((v) => v.version <= change.version),
  };
}

/** The request as the quorum rules see it (its vote list, not a copy). */
export function quorumView(r: RequestRecord): QuorumRequest {
  return {
    id: r.id,
    requester: r.requester,
    validators: r.validators,
    requiredApprovals: r.requiredApprovals,
    state: r.state,
    expiresAtMs: r.expiresAt.getTime(),
    votes: r.votes,
  };
}

/** A request as it stands at `nowMs`: a PENDING one past its deadline that the sweeper has not reached yet is EXPIRED. */
export const presentAt = <R extends RequestRecord>(r: R, nowMs: number): R =>
  r.state === 'PENDING' && nowMs >= r.expiresAt.getTime() ? { ...r, state: 'EXPIRED', finalizedAt: r.expiresAt } : r;

/** True when `validator` has a vote recorded on `r`. */
export const hasVoted = (r: RequestRecord, validator: string): boolean => r.votes.some((v) => v.validator === validator);
