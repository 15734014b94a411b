import type { ScopeTable } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';

/** Every WebhooksService RPC and the scopes it needs; PublishEvent(s) are for platform services only. */
export const webhooksScopes: ScopeTable<typeof webhooksv1.WebhooksServiceService> = {
  createWebhook: ['webhooks.manage'],
  getWebhook: ['webhooks.read'],
  listWebhooks: ['webhooks.read'],
  updateWebhook: ['webhooks.manage'],
  deleteWebhook: ['webhooks.manage'],
  rotateSecret: ['webhooks.manage'],
  watchWebhookRegistry: ['webhooks.read'],
  publishEvent: ['webhooks.publish'],
  publishEvents: ['webhooks.publish'],
  triggerWebhook: ['webhooks.manage'],
  getDeliveryHistory: ['webhooks.read'],
  watchDeliveries: ['webhooks.read'],
  retryFailedDeliveries: ['webhooks.manage'],
  getWebhookStatistics: ['webhooks.read'],
};

/** Acting on another owner's webhooks (create for, list, read, change) needs this scope besides the method's. */
export const WEBHOOKS_ADMIN_SCOPE = 'webhooks.admin';
