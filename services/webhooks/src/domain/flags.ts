// Feature flags the webhooks service evaluates (docs/flags.md).

/**
 * Kill switch: while true, no replica starts a delivery attempt. Deliveries keep being queued and
 * go out, in order and signed as usual, once it is false again; attempts already in flight finish.
 */
export const DELIVERY_PAUSED_FLAG = 'webhooks.delivery.paused';
