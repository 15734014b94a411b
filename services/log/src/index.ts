import { defineService, type ServiceFactory } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { logScopes } from './api/scopes.js';

/** The log target. Its contract and scopes are served now; handlers arrive with issue #3. */
export const logService: ServiceFactory = {
  target: 'log',
  create: () => [
    defineService({
      name: 'gantry.log.v1.LogService',
      definition: logv1.LogServiceService,
      scopes: logScopes,
      handlers: {},
      unimplementedReason: 'the log service lands with issue #3',
    }),
  ],
};
