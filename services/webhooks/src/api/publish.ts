// Publishing events, one (PublishEvent) or a batch (PublishEvents): the same checks, the same
// idempotency rule and the same statements for any number of events (one, and a second only when
// an id repeats), so a batch of 500 costs one transaction, not 500.
import { createHash } from 'node:crypto';
import { alreadyExists, checkTimestamp, invalidArgument, permissionDenied } from '@gantry/kit';
import type { webhooksv1 } from '@gantry/proto';
import { publishDecision, type Caller } from '../domain/families.js';
import { LIMITS } from '../domain/limits.js';
import type { EventRow } from '../store/events.js';
import type { WebhooksStore } from '../store/webhooks-store.js';
import { checkEventId, checkEventType, checkPayload, checkText } from './validation.js';

/** What makes an event (type, owner, content type, payload): the same id with another digest is a reuse, not a repeat. */
export function eventDigest(eventType: string, owner: string, contentType: string, payload: Buffer): Buffer {
  return createHash('sha256').update(JSON.stringify([eventType, owner, contentType, payload.toString('base64')])).digest();
}

/**
 * One event of a request, checked and addressed as `caller` may publish it (domain/families.ts):
 * a platform family's event (no owner) or an owner's. `prefix` names it in errors ('' or `events[3].`).
 */
export function checkEvent(req: webhooksv1.PublishEventRequest, prefix: string, caller: Caller): EventRow {
  const eventId = checkEventId(`${prefix}event_id`, req.eventId);
  const eventType = checkEventType(`${prefix}event_type`, req.eventType, false);
  const payload = checkPayload(`${prefix}payload`, req.payload);
  const contentType = checkText(`${prefix}content_type`, req.contentType, LIMITS.maxContentTypeChars) || 'application/json';
  const requestedOwner = checkText(`${prefix}owner`, req.owner, LIMITS.maxOwnerChars);
  const trace = Object.entries(req.traceContext);
  if (trace.length > LIMITS.maxTraceContextEntries || trace.some(([k, v]) => k.length > 64 || v.length > LIMITS.maxTraceContextValueChars)) {
    throw invalidArgument(`${prefix}trace_context`, `takes at most ${LIMITS.maxTraceContextEntries} entries (traceparent, tracestate) of up to ${LIMITS.maxTraceContextValueChars} characters`);
  }
  const decision = publishDecision(caller, eventType, requestedOwner);
  if (decision.kind === 'invalid') throw invalidArgument(`${prefix}owner`, decision.reason);
  if (decision.kind === 'denied') throw permissionDenied(`${prefix === '' ? '' : `${prefix.slice(0, -1)}: `}${decision.reason}`);
  const [owner, family] = decision.kind === 'platform' ? ['', decision.family] : [decision.owner, ''];
  return { eventId, eventType, owner, family, payload, contentType, digest: eventDigest(eventType, owner, contentType, payload), occurredAt: checkTimestamp('occurred_at', req.occurredAt) ?? null, traceContext: req.traceContext };
}

/** The events of a PublishEvents request, checked: 1 to 500, each valid, no event_id twice. */
export function checkBatch(events: webhooksv1.PublishEventRequest[], caller: Caller): EventRow[] {
  if (events.length === 0 || events.length > LIMITS.maxPublishBatch) {
    throw invalidArgument('events', `holds ${events.length} events; send 1 to ${LIMITS.maxPublishBatch} per call`);
  }
  const checked = events.map((e, i) => checkEvent(e, `events[${i}].`, caller));
  const seen = new Map<string, number>();
  checked.forEach((e, i) => {
    const first = seen.get(e.eventId);
    if (first !== undefined) throw invalidArgument(`events[${i}].event_id`, `${JSON.stringify(e.eventId)} is also events[${first}]'s; send each event once per call`);
    seen.set(e.eventId, i);
  });
  return checked;
}

/**
 * Stores the events and queues their deliveries in one transaction, in at most two statements
 * whatever their number: insert the new ones and fan them out (EventsTx.publish), then read back
 * the repeated ones, if any (a repeat answers with its deliveries, a reused id with another body
 * fails the whole call). Results
 * are in the order of `events`; `where(i)` names event i in errors.
 */
export async function publishEvents(store: Pick<WebhooksStore, 'transaction'>, events: readonly EventRow[], maxAttempts: number, at: Date, where: (i: number) => string): Promise<webhooksv1.PublishEventResponse[]> {
  return store.transaction(async (tx) => {
    // A reused id fails the call after the new events were fanned out: the throw rolls all of it back.
    // No NOTIFY in this transaction: the handler wakes the dispatchers once it committed (`queued`).
    const { inserted, queued } = await tx.events.publish(events, maxAttempts, at, { notify: false });
    const repeated = events.filter((e) => !inserted.has(e.eventId));
    const earlier = repeated.length > 0 ? await tx.events.publishedBefore(repeated.map((e) => e.eventId)) : new Map<string, never>();
    events.forEach((e, i) => {
      if (inserted.has(e.eventId) || earlier.get(e.eventId)?.digest.equals(e.digest)) return;
      throw alreadyExists(`${where(i)}event ${e.eventId} was published before with another type, owner, content type or payload; use a new event_id`);
    });
    return events.map((e) =>
      inserted.has(e.eventId)
        ? { eventId: e.eventId, duplicate: false, deliveryIds: queued.get(e.eventId) ?? [] }
        : { eventId: e.eventId, duplicate: true, deliveryIds: earlier.get(e.eventId)!.deliveryIds },
    );
  });
}
