import { bearerMetadata, unary, type RelayedEvent, type RelaySink, type ServiceTokenSource } from '@gantry/kit';
import { eventsv1, type webhooksv1 } from '@gantry/proto';

/**
 * Webhook subscribers, as an outbox relay's sink: each event published with its id as the
 * idempotency key and the proto3 JSON of the event as the body (what receivers parse; docs/events.md).
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
