import type { ScopeTable } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';

/** Every ApprovalsService RPC and the scopes it needs. */
export const approvalsScopes: ScopeTable<typeof approvalsv1.ApprovalsServiceService> = {
  submitApprovalRequest: ['approvals.submit'],
  getApprovalStatus: ['approvals.read'],
  submitValidatorResponse: ['approvals.vote'],
  watchApprovalUpdates: ['approvals.read'],
  streamPendingApprovals: ['approvals.vote'],
  batchSubmitResponses: ['approvals.vote'],
  bidirectionalApprovalStream: ['approvals.vote'],
  listApprovals: ['approvals.read'],
};

/** Lets a caller submit a request on behalf of another requester. */
export const APPROVALS_ADMIN_SCOPE = 'approvals.admin';
