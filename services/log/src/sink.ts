import { bearerMetadata, unary, type RelayedEvent, type RelaySink, type ServiceTokenSource } from '@gantry/kit';
import type { logv1 } from '@gantry/proto';

/** The audit partition of a module's events in the log. */
export const auditPartition = (module: string) => `audit.${module}`;

/**
 * The audit trail, as an outbox relay's sink: each event appended, as its binary
 * gantry.events.v1.Event, to the module's audit partition, keyed by event id, so a re-sent batch
 * appends nothing twice. The log accepts these appends only from a workload that owns the module's
 * event family (the relay calls by its certificate: `tokens` is certificateIdentity), so no token
 * holder can forge audit entries or take an event's idempotency key first (docs/log.md).
 */
export function logSink(client: logv1.LogServiceClient, partition: string, tokens: ServiceTokenSource, timeoutMs: number): RelaySink {
  return {
    name: 'log',
    async send(events: readonly RelayedEvent[]) {
      await unary(client.appendBatch, client, { partition, data: events.map((e) => e.payload), idempotencyKeys: events.map((e) => e.id) }, bearerMetadata(tokens.token()), timeoutMs);
    },
  };
}
