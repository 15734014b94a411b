import { defineService, type ServiceFactory } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { approvalsScopes } from './api/scopes.js';

/** The approvals target. Its contract and scopes are served now; handlers arrive with issue #5. */
export const approvalsService: ServiceFactory = {
  target: 'approvals',
  create: () => [
    defineService({
      name: 'gantry.approvals.v1.ApprovalsService',
      definition: approvalsv1.ApprovalsServiceService,
      scopes: approvalsScopes,
      handlers: {},
      unimplementedReason: 'the approvals service lands with issue #5',
    }),
  ],
};
