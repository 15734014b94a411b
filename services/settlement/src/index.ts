import { randomUUID } from 'node:crypto';
import { defineModule, defineService, scopesOf, type GantryModule } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import { settlementHandlers } from './api/handlers.js';
import { settlementScopes } from './api/scopes.js';
import { settlementConfig, type SettlementConfig } from './config.js';
import { SETTLEMENT_EVENT_SOURCE, SETTLEMENT_EVENT_TYPES } from './events.js';
import { DRAW_COMMIT_DEFAULTS, type DrawCommitLimits } from './store/draw-committer.js';
import { NONCE_PRUNE_INTERVAL_MS, NoncePruner } from './store/nonce-pruner.js';
import { SETTLEMENT_SCHEMA, SettlementStore, settlementMigrations } from './store/settlement-store.js';

export interface SettlementOptions {
  /** The clock in milliseconds since the epoch; tests pass a fake one. */
  now?: () => number;
  /** How often each replica prunes nonces that can no longer be replayed. */
  noncePruneIntervalMs?: number;
  /** Group commit of draws: batch size, linger, queue length, transactions in flight (DRAW_COMMIT_DEFAULTS otherwise). */
  drawLimits?: Partial<DrawCommitLimits>;
}

/** The settlement target with an injected clock (tests); `settlementService` uses the real one. */
export function createSettlementService(opts: SettlementOptions = {}): GantryModule {
  return defineModule<SettlementConfig>({
    name: 'settlement',
    // Its events go out through the relay, which starts once the process serves.
    dependencies: ['events'],
    config: settlementConfig,
    scopes: scopesOf([settlementScopes]),
    schema: { name: SETTLEMENT_SCHEMA, migrations: settlementMigrations },
    events: { source: SETTLEMENT_EVENT_SOURCE, types: SETTLEMENT_EVENT_TYPES },
    create: ({ db, outbox, flags, settings, log, onShutdown }) => {
      const store = new SettlementStore(db, outbox);
      const pruner = new NoncePruner(store, { now: opts.now ?? Date.now, intervalMs: opts.noncePruneIntervalMs ?? NONCE_PRUNE_INTERVAL_MS }, log);
      pruner.start();
      onShutdown(() => pruner.stop());
      return [
        defineService({
          name: 'gantry.settlement.v1.SettlementService',
          definition: settlementv1.SettlementServiceService,
          scopes: settlementScopes,
          handlers: settlementHandlers({
            store,
            events: outbox,
            now: opts.now ?? Date.now,
            newId: randomUUID,
            flags,
            maxSessionWinningsMinor: BigInt(settings.maxSessionWinningsMinor),
            drawLimits: { ...DRAW_COMMIT_DEFAULTS, ...opts.drawLimits },
          }),
          unimplementedReason: 'ExecuteSettlement and RequestReimbursement are kept only for wire compatibility: settle a session with CreditSettle, which returns its funds to L1',
        }),
      ];
    },
  });
}

/** The settlement target: credit lines between wallets' L1 balances and game sessions on a double-entry ledger. */
export const settlementService: GantryModule = createSettlementService();

export { SETTLEMENT_SCHEMA, SettlementStore } from './store/settlement-store.js';
export { DRAW_COMMIT_DEFAULTS, type DrawCommitLimits } from './store/draw-committer.js';
export { SETTLEMENT_EVENT_SOURCE, SETTLEMENT_EVENT_TYPES } from './events.js';
export { DEFAULT_MAX_SESSION_WINNINGS_MINOR, settlementConfig, type SettlementConfig, type SettlementConfigInput } from './config.js';
