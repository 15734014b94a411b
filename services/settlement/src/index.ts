import { defineService, type ServiceFactory } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import { settlementScopes } from './api/scopes.js';

/** The settlement target. Its contract and scopes are served now; handlers arrive with issue #4. */
export const settlementService: ServiceFactory = {
  target: 'settlement',
  create: () => [
    defineService({
      name: 'gantry.settlement.v1.SettlementService',
      definition: settlementv1.SettlementServiceService,
      scopes: settlementScopes,
      handlers: {},
      unimplementedReason: 'the settlement service lands with issue #4',
    }),
  ],
};
