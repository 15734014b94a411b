// The quorum rules of an M-of-N approval, in one place. Pure: the store applies what these
// functions decide inside the transaction that holds the request's row lock.
//
//   APPROVED  as soon as approvals >= M (required approvals)
//   REJECTED  as soon as approval can no longer be reached: approvals + votes not yet cast < M
//             (rejections and abstentions are both cast votes that are not approvals)
//   EXPIRED   at the deadline, if neither of the above happened first
//   Terminal states never change. Each validator votes once: the same vote again is idempotent,
//   a different one is refused. The requester cannot vote on their own request.
import { alreadyExists, failedPrecondition, permissionDenied } from '@gantry/kit';

export type ApprovalState = 'PENDING' | 'APPROVED' | 'REJECTED' | 'EXPIRED';
export type Decision = 'APPROVE' | 'REJECT' | 'ABSTAIN';

export interface Tally {
  approvals: number;
  rejections: number;
  abstentions: number;
}

export interface QuorumRequest {
  id: string;
  requester: string;
  /** The validator set, without duplicates. */
  validators: readonly string[];
  /** M: 1 <= M <= validators.length. */
  requiredApprovals: number;
  state: ApprovalState;
  expiresAtMs: number;
  /** Votes cast so far, one per validator. A list rather than a map: N is small, and the store holds its votes as a list. */
  votes: readonly CastVote[];
}

export interface CastVote {
  validator: string;
  decision: Decision;
}

export function tally(votes: readonly CastVote[]): Tally {
  const t: Tally = { approvals: 0, rejections: 0, abstentions: 0 };
  for (const v of votes) count(t, v.decision);
  return t;
}

/** Counts one more decision into `t`. */
export function count(t: Tally, d: Decision): void {
  if (d === 'APPROVE') t.approvals++;
  else if (d === 'REJECT') t.rejections++;
  else t.abstentions++;
}

/**
 * The state the votes decide for a PENDING request of n validators needing m approvals, before
 * the deadline: APPROVED, REJECTED, or still PENDING.
 */
export function quorumState(t: Tally, n: number, m: number): 'PENDING' | 'APPROVED' | 'REJECTED' {
  if (t.approvals >= m) return 'APPROVED';
  const notYetCast = n - (t.approvals + t.rejections + t.abstentions);
  return t.approvals + notYetCast < m ? 'REJECTED' : 'PENDING';
}

/** The request's state at `nowMs`: terminal states stay; a PENDING request past its deadline is EXPIRED. */
export function stateAt(req: QuorumRequest, nowMs: number): ApprovalState {
  if (req.state !== 'PENDING') return req.state;
  return nowMs >= req.expiresAtMs ? 'EXPIRED' : 'PENDING';
}

export type VoteOutcome =
  /** The vote is new: record it; `state` is the request's state after it (maybe final). */
  | { kind: 'recorded'; state: ApprovalState }
  /** The same validator cast the same vote before: nothing changes. */
  | { kind: 'duplicate'; state: ApprovalState }
  /** The deadline passed before this vote: the request becomes EXPIRED and the vote is refused. */
  | { kind: 'expired' };

/**
 * Applies one validator's vote. Throws the contract's refusal (PERMISSION_DENIED,
 * FAILED_PRECONDITION, ALREADY_EXISTS) when the vote cannot count; returns what changes otherwise.
 */
export function castVote(req: QuorumRequest, validator: string, decision: Decision, nowMs: number): VoteOutcome {
  if (validator === req.requester) throw permissionDenied(`${validator} requested ${req.id} and cannot vote on it`);
  if (!req.validators.includes(validator)) throw permissionDenied(`${validator} is not in the validator set of ${req.id}`);
  const previous = req.votes.find((v) => v.validator === validator)?.decision;
  if (previous === decision) return { kind: 'duplicate', state: req.state };
  if (previous !== undefined) throw alreadyExists(`${validator} already voted ${previous} on ${req.id}; a vote cannot be changed`);
  const state = stateAt(req, nowMs);
  if (state === 'EXPIRED' && req.state === 'PENDING') return { kind: 'expired' };
  if (state !== 'PENDING') throw failedPrecondition(`${req.id} is already ${state}; votes are closed`);
  // The tally with this vote counted, without copying the votes: votes are decided in batches
  // that touch many requests, and building a map of up to N votes per vote was a tenth of what a
  // vote allocated.
  const t = tally(req.votes);
  count(t, decision);
  return { kind: 'recorded', state: quorumState(t, req.validators.length, req.requiredApprovals) };
}
