// The domain events approvals announces (docs/events.md): one per creation, one per vote cast, one
// when a request is decided or expires. Built from the changes a transaction records, so they are
// written to the outbox in that same transaction.
import type { Outbox, OutboxEvent } from '@gantry/kit';
import type { RequestRecord } from '../domain/approval.js';
import { count, tally, type Tally } from '../domain/quorum.js';
import { wireDecision, wireKind, wirePriority, wireState, wireTally } from '../domain/wire.js';
import type { Change, NewRequest } from './approvals-store.js';

/** The event of a new request. */
export function createdEvent(outbox: Pick<Outbox, 'event'>, r: NewRequest): OutboxEvent {
  return outbox.event(r.id, r.createdAt, {
    $case: 'approvalCreated',
    value: {
      approvalId: r.id,
      type: wireKind(r.type),
      priority: wirePriority(r.priority),
      requester: r.requester,
      title: r.title,
      contentHash: r.contentHash,
      validators: r.validators,
      requiredApprovals: r.requiredApprovals,
      expiresAt: r.expiresAt,
      labels: r.labels,
    },
  });
}

/**
 * The events of `changes`, in order, to requests as `locked` had them before: a vote cast, then
 * (for the vote that decides, or an expiry) the final state, each with the tally after it.
 */
export function changeEvents(outbox: Pick<Outbox, 'event'>, changes: readonly Change[], locked: ReadonlyMap<string, RequestRecord>): OutboxEvent[] {
  // The tally of each request as the changes go: a change's vote is always a new validator's (a
  // repeated vote changes nothing), so counting it in is the tally after it.
  const tallies = new Map<string, Tally>();
  const events: OutboxEvent[] = [];
  for (const c of changes) {
    const request = locked.get(c.approvalId);
    if (!request) throw new Error(`change to ${c.approvalId}, which this transaction did not lock`);
    let t = tallies.get(c.approvalId);
    if (!t) tallies.set(c.approvalId, (t = tally(request.votes)));
    if (c.vote) {
      count(t, c.vote.decision);
      const value = { approvalId: c.approvalId, validator: c.vote.validator, decision: wireDecision(c.vote.decision), reason: c.vote.reason, tally: wireTally(t, request.validators.length) };
      events.push(outbox.event(c.approvalId, c.at, { $case: 'approvalVoteCast', value }));
    }
    if (c.type !== 'FINALIZED') continue;
    const final = wireTally(t, request.validators.length);
    const at = c.finalizedAt ?? c.at;
    events.push(
      c.state === 'EXPIRED'
        ? outbox.event(c.approvalId, c.at, { $case: 'approvalExpired', value: { approvalId: c.approvalId, tally: final, expiredAt: at } })
        : outbox.event(c.approvalId, c.at, { $case: 'approvalFinalized', value: { approvalId: c.approvalId, state: wireState(c.state), tally: final, finalizedAt: at } }),
    );
  }
  return events;
}
