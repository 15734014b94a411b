// The contract's enums and the domain's values, one table each way. Shared by the API (requests in,
// responses out) and by the domain events the store writes, whose payloads are the contract's
// messages. Nothing here touches the database or decides anything.
import { approvalsv1 } from '@gantry/proto';
import type { ApprovalKind, ChangeType, PriorityRank } from './approval.js';
import type { ApprovalState, Decision, Tally } from './quorum.js';

const { ApprovalType: T, ApprovalPriority: P, ApprovalState: S, VoteDecision: D, ApprovalEventType: E } = approvalsv1;

export const KINDS = new Map<approvalsv1.ApprovalType, ApprovalKind>([
  [T.APPROVAL_TYPE_LARGE_TRANSACTION, 'LARGE_TRANSACTION'],
  [T.APPROVAL_TYPE_CONTRACT_DEPLOYMENT, 'CONTRACT_DEPLOYMENT'],
  [T.APPROVAL_TYPE_PARAMETER_CHANGE, 'PARAMETER_CHANGE'],
  [T.APPROVAL_TYPE_ACCESS_GRANT, 'ACCESS_GRANT'],
  [T.APPROVAL_TYPE_OTHER, 'OTHER'],
]);
const KIND_TO_WIRE = new Map([...KINDS].map(([wire, kind]) => [kind, wire]));

export const PRIORITIES = new Map<approvalsv1.ApprovalPriority, PriorityRank>([
  [P.APPROVAL_PRIORITY_NORMAL, 1],
  [P.APPROVAL_PRIORITY_HIGH, 2],
  [P.APPROVAL_PRIORITY_CRITICAL, 3],
]);
const PRIORITY_TO_WIRE = new Map([...PRIORITIES].map(([wire, rank]) => [rank, wire]));

export const STATES = new Map<approvalsv1.ApprovalState, ApprovalState>([
  [S.APPROVAL_STATE_PENDING, 'PENDING'],
  [S.APPROVAL_STATE_APPROVED, 'APPROVED'],
  [S.APPROVAL_STATE_REJECTED, 'REJECTED'],
  [S.APPROVAL_STATE_EXPIRED, 'EXPIRED'],
]);
const STATE_TO_WIRE = new Map([...STATES].map(([wire, state]) => [state, wire]));

export const DECISIONS = new Map<approvalsv1.VoteDecision, Decision>([
  [D.VOTE_DECISION_APPROVE, 'APPROVE'],
  [D.VOTE_DECISION_REJECT, 'REJECT'],
  [D.VOTE_DECISION_ABSTAIN, 'ABSTAIN'],
]);
const DECISION_TO_WIRE = new Map([...DECISIONS].map(([wire, d]) => [d, wire]));

const CHANGE_TO_WIRE: Record<ChangeType, approvalsv1.ApprovalEventType> = {
  CREATED: E.APPROVAL_EVENT_TYPE_CREATED,
  VOTED: E.APPROVAL_EVENT_TYPE_VOTED,
  FINALIZED: E.APPROVAL_EVENT_TYPE_FINALIZED,
};

export const wireState = (s: ApprovalState): approvalsv1.ApprovalState => STATE_TO_WIRE.get(s)!;
export const wireKind = (k: ApprovalKind): approvalsv1.ApprovalType => KIND_TO_WIRE.get(k)!;
export const wirePriority = (p: PriorityRank): approvalsv1.ApprovalPriority => PRIORITY_TO_WIRE.get(p)!;
export const wireDecision = (d: Decision): approvalsv1.VoteDecision => DECISION_TO_WIRE.get(d)!;

/** The contract's Tally: `t` among `validatorCount` validators. */
export function wireTally(t: Tally, validatorCount: number): approvalsv1.Tally {
  return { approvals: t.approvals, rejections: t.rejections, abstentions: t.abstentions, outstanding: validatorCount - (t.approvals + t.rejections + t.abstentions) };
}
export const wireEventType = (t: ChangeType): approvalsv1.ApprovalEventType => CHANGE_TO_WIRE[t];
