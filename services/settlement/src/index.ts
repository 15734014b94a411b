import { randomUUID } from 'node:crypto';
import { defineService, type ServiceFactory } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import { settlementHandlers } from './api/handlers.js';
import { settlementScopes } from './api/scopes.js';
import { SETTLEMENT_SCHEMA, SettlementStore, settlementMigrations } from './store/settlement-store.js';

export interface SettlementOptions {
  /** The clock in milliseconds since the epoch; tests pass a fake one. */
  now?: () => number;
}

/** The `source` of settlement's domain events. */
export const SETTLEMENT_EVENT_SOURCE = 'gantry.settlement';

/** The settlement target with an injected clock (tests); `settlementService` uses the real one. */
export function createSettlementService(opts: SettlementOptions = {}): ServiceFactory {
  return {
    target: 'settlement',
    schema: { name: SETTLEMENT_SCHEMA, migrations: settlementMigrations },
    events: { source: SETTLEMENT_EVENT_SOURCE },
    create: ({ db, outbox, flags }) => [
      defineService({
        name: 'gantry.settlement.v1.SettlementService',
        definition: settlementv1.SettlementServiceService,
        scopes: settlementScopes,
        handlers: settlementHandlers({ store: new SettlementStore(db, outbox), events: outbox, now: opts.now ?? Date.now, newId: randomUUID, flags }),
        unimplementedReason: 'ExecuteSettlement and RequestReimbursement are kept only for wire compatibility: settle a session with CreditSettle, which returns its funds to L1',
      }),
    ],
  };
}

/** The settlement target: credit lines between wallets' L1 balances and game sessions on a double-entry ledger. */
export const settlementService: ServiceFactory = createSettlementService();

export { SETTLEMENT_SCHEMA, SettlementStore } from './store/settlement-store.js';
