import type { EventCatalogue } from '@gantry/kit';

/** The `source` of settlement's domain events. */
export const SETTLEMENT_EVENT_SOURCE = 'gantry.settlement';

/** Settlement's part of the event catalogue (docs/events.md). */
export const SETTLEMENT_EVENT_TYPES = {
  creditLineApproved: 'settlement.credit_line.approved',
  creditDrawn: 'settlement.credit.drawn',
  creditLineSettled: 'settlement.credit_line.settled',
} as const satisfies EventCatalogue;
