import type { EventCatalogue } from '@gantry/kit';

/** The `source` of approvals' domain events. */
export const APPROVALS_EVENT_SOURCE = 'gantry.approvals';

/** Approvals' part of the event catalogue (docs/events.md). */
export const APPROVALS_EVENT_TYPES = {
  approvalCreated: 'approvals.approval.created',
  approvalVoteCast: 'approvals.vote.cast',
  approvalFinalized: 'approvals.approval.finalized',
  approvalExpired: 'approvals.approval.expired',
} as const satisfies EventCatalogue;
