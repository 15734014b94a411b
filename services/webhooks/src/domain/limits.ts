/** Limits of the webhooks API; each is part of the contract (webhooks.proto) or stated in docs/webhooks.md. */
export const LIMITS = {
  maxUrlChars: 2048,
  minEventTypes: 1,
  maxEventTypes: 64,
  maxEventTypeChars: 128,
  maxHeaders: 32,
  maxHeaderNameChars: 64,
  maxHeaderValueChars: 1024,
  maxDescriptionChars: 1024,
  maxLabels: 32,
  maxLabelKeyChars: 64,
  maxLabelValueChars: 256,
  maxExternalIdChars: 256,
  maxIdChars: 128,
  maxOwnerChars: 256,
  maxEventIdChars: 256,
  maxPayloadBytes: 256 * 1024,
  maxContentTypeChars: 256,
  maxTraceContextEntries: 8,
  maxTraceContextValueChars: 512,
  /** Events one PublishEvents call takes (one transaction). */
  maxPublishBatch: 500,
  maxRateLimitPerSecond: 10_000,
  maxMaxConcurrency: 1000,
  /** Endpoints one owner may have (not counting deleted ones). */
  maxWebhooksPerOwner: 1000,
  defaultPageSize: 50,
  maxPageSize: 500,
  defaultOverlapMs: 24 * 3600 * 1000,
  maxOverlapMs: 7 * 24 * 3600 * 1000,
  defaultStatsWindowMs: 24 * 3600 * 1000,
  maxStatsWindowMs: 30 * 24 * 3600 * 1000,
  /** Dead letters one RetryFailedDeliveries call requeues, and ids it returns. */
  maxRequeue: 10_000,
  maxRequeueIdsReturned: 1000,
  /** Webhooks of one owner GetDeliveryHistory/WatchDeliveries look at without a webhook_id. */
  maxHistoryWebhooks: 1000,
  /** Time a registration's DNS check may take before it is left to delivery time. */
  registrationLookupMs: 2000,
} as const;

/** When the service disables an endpoint that keeps failing (0 failures = never). */
export interface DisableRule {
  failures: number;
  forMs: number;
}
