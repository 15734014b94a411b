import { defineService, type ServiceFactory } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import { webhooksScopes } from './api/scopes.js';

/** The webhooks target. Its contract and scopes are served now; handlers arrive with issue #6. */
export const webhooksService: ServiceFactory = {
  target: 'webhooks',
  create: () => [
    defineService({
      name: 'gantry.webhooks.v1.WebhooksService',
      definition: webhooksv1.WebhooksServiceService,
      scopes: webhooksScopes,
      handlers: {},
      unimplementedReason: 'the webhooks service lands with issue #6',
    }),
  ],
};
