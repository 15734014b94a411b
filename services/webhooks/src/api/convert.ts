// Between the contract's messages and enums and the service's records. Nothing here touches the
// database or decides anything.
import { webhooksv1 } from '@gantry/proto';
import type { AttemptRecord, DeliveryRecord, DeliveryState, RegistryChangeType, WebhookRecord } from '../domain/webhook.js';

const { WebhookStatus: WS, DeliveryStatus: DS, RegistryEventType: RT } = webhooksv1;

export function wireStatus(w: WebhookRecord): webhooksv1.WebhookStatus {
  if (w.state === 'DELETED') return WS.WEBHOOK_STATUS_DELETED;
  if (w.state === 'DISABLED') return WS.WEBHOOK_STATUS_DISABLED;
  return w.spec.paused ? WS.WEBHOOK_STATUS_PAUSED : WS.WEBHOOK_STATUS_ACTIVE;
}

/** The list filter's name for a wire status ('' = every status but DELETED). */
export function statusFilter(s: webhooksv1.WebhookStatus): '' | 'ACTIVE' | 'PAUSED' | 'DISABLED' | 'DELETED' | undefined {
  switch (s) {
    case WS.WEBHOOK_STATUS_UNSPECIFIED: return '';
    case WS.WEBHOOK_STATUS_ACTIVE: return 'ACTIVE';
    case WS.WEBHOOK_STATUS_PAUSED: return 'PAUSED';
    case WS.WEBHOOK_STATUS_DISABLED: return 'DISABLED';
    case WS.WEBHOOK_STATUS_DELETED: return 'DELETED';
    default: return undefined;
  }
}

export function toWebhook(w: WebhookRecord): webhooksv1.Webhook {
  return {
    webhookId: w.id,
    owner: w.owner,
    externalId: w.externalId,
    // Header values are write-only: a reader learns the names, never a receiver's credentials.
    spec: { ...w.spec, headers: {} },
    headerNames: Object.keys(w.spec.headers).sort(),
    eventFamilies: [...w.families],
    status: wireStatus(w),
    disabledReason: w.disabledReason,
    consecutiveFailures: w.consecutiveFailures,
    secretRotatedAt: w.secretRotatedAt,
    previousSecretExpiresAt: w.previousSecretExpiresAt ?? undefined,
    version: w.version,
    createdAt: w.createdAt,
    updatedAt: w.updatedAt,
  };
}

const DELIVERY_STATUS: Record<DeliveryState, webhooksv1.DeliveryStatus> = {
  PENDING: DS.DELIVERY_STATUS_PENDING,
  SUCCEEDED: DS.DELIVERY_STATUS_SUCCEEDED,
  DEAD_LETTERED: DS.DELIVERY_STATUS_DEAD_LETTERED,
  CANCELLED: DS.DELIVERY_STATUS_CANCELLED,
};

export function deliveryStatusFilter(s: webhooksv1.DeliveryStatus): DeliveryState | '' | undefined {
  if (s === DS.DELIVERY_STATUS_UNSPECIFIED) return '';
  return (Object.keys(DELIVERY_STATUS) as DeliveryState[]).find((k) => DELIVERY_STATUS[k] === s);
}

export const toAttempt = (a: AttemptRecord): webhooksv1.DeliveryAttempt => ({ ...a });

export function toDelivery(d: DeliveryRecord): webhooksv1.Delivery {
  return {
    deliveryId: d.id,
    webhookId: d.webhookId,
    eventId: d.eventId,
    eventType: d.eventType,
    status: DELIVERY_STATUS[d.status],
    attempts: d.attempts.map(toAttempt),
    maxAttempts: d.maxAttempts,
    nextAttemptAt: d.nextAttemptAt ?? undefined,
    createdAt: d.createdAt,
    completedAt: d.completedAt ?? undefined,
  };
}

export const REGISTRY_EVENT: Record<RegistryChangeType, webhooksv1.RegistryEventType> = {
  CREATED: RT.REGISTRY_EVENT_TYPE_CREATED,
  UPDATED: RT.REGISTRY_EVENT_TYPE_UPDATED,
  DELETED: RT.REGISTRY_EVENT_TYPE_DELETED,
  SECRET_ROTATED: RT.REGISTRY_EVENT_TYPE_SECRET_ROTATED,
};
