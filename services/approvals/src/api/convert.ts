// Between the contract's messages and the service's records. Nothing here touches the database or
// decides anything; the enum tables are in ../domain/wire.ts.
import type { approvalsv1 } from '@gantry/proto';
import type { ApprovalRecord } from '../domain/approval.js';
import { tally } from '../domain/quorum.js';
import { wireDecision, wireKind, wirePriority, wireState, wireTally } from '../domain/wire.js';

/** The contract's Approval for a record (state and votes as the record has them). */
export function toApproval(r: ApprovalRecord): approvalsv1.Approval {
  return {
    approvalId: r.id,
    type: wireKind(r.type),
    priority: wirePriority(r.priority),
    requester: r.requester,
    title: r.title,
    content: r.content,
    contentHash: r.contentHash,
    validators: r.validators,
    requiredApprovals: r.requiredApprovals,
    state: wireState(r.state),
    votes: r.votes.map((v) => ({ validator: v.validator, decision: wireDecision(v.decision), reason: v.reason, castAt: v.castAt })),
    tally: wireTally(tally(r.votes), r.validators.length),
    version: r.version,
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
    finalizedAt: r.finalizedAt ?? undefined,
    labels: r.labels,
  };
}
