import { logv1, eventsv1, webhooksv1 } from '@gantry/proto';
import type { ServiceTokenSource } from '../auth/service-token.js';
import { bearerMetadata, unary } from '../client.js';
import type { RelayedEvent, RelaySink } from './relay.js';

/** The audit partition of a service's events in the log. */
export const auditPartition = (target: string) => `audit.${target}`;

/**
 * The audit trail: each event appended, as its binary gantry.events.v1.Event, to the service's
 * audit partition, keyed by event id, so a re-sent batch appends nothing twice.
 */
export function logSink(client: logv1.LogServiceClient, partition: string, tokens: ServiceTokenSource, timeoutMs: number): RelaySink {
  return {
    name: 'log',
    async send(events: readonly RelayedEvent[]) {
      await unary(client.appendBatch, client, { partition, data: events.map((e) => e.payload), idempotencyKeys: events.map((e) => e.id) }, bearerMetadata(tokens.token()), timeoutMs);
    },
  };
}

/**
 * Webhook subscribers: each event published with its id as the idempotency key and the proto3
 * JSON of the event as the body (what receivers parse; docs/events.md).
 */
export function webhooksSink(client: webhooksv1.WebhooksServiceClient, tokens: ServiceTokenSource, timeoutMs: number): RelaySink {
  return {
    name: 'webhooks',
    async send(events: readonly RelayedEvent[]) {
      const requests = events.map((e): webhooksv1.PublishEventRequest => {
        const event = eventsv1.Event.decode(e.payload);
        return {
          eventId: e.id,
          eventType: e.type,
          payload: Buffer.from(JSON.stringify(eventsv1.Event.toJSON(event))),
          contentType: 'application/json',
          owner: '',
          occurredAt: event.occurredAt,
          traceContext: e.traceContext,
        };
      });
      await unary(client.publishEvents, client, { events: requests }, bearerMetadata(tokens.token()), timeoutMs);
    },
  };
}
