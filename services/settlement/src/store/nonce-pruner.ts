// Prunes wallet nonces that can no longer be replayed. A signed request is accepted only within
// MAX_CLOCK_SKEW_MS of the server clock, and its nonce was claimed (created_at, the server clock)
// within that window of its signed timestamp: a nonce claimed more than twice the window ago only
// comes back with a timestamp the server refuses before it looks at nonces. The margin covers
// replicas whose clocks disagree. Every replica runs one; bounded batches, oldest first. The ledger
// (accounts, transfers, lines) is never pruned, nor are admin transfer ids.
import { inBatches, PeriodicTask, type Logger } from '@gantry/kit';
import { MAX_CLOCK_SKEW_MS } from '../domain/signing.js';
import type { SettlementStore } from './settlement-store.js';

/** How far replicas' clocks may disagree and nonce pruning stay safe. */
export const REPLICA_CLOCK_MARGIN_MS = 5 * 60_000;
/** A nonce is kept this long after it was claimed: twice the signature window, plus the margin. */
export const NONCE_RETENTION_MS = 2 * MAX_CLOCK_SKEW_MS + REPLICA_CLOCK_MARGIN_MS;
export const NONCE_PRUNE_INTERVAL_MS = 60_000;
/** Nonces one statement deletes at most. */
export const NONCE_PRUNE_BATCH = 5_000;
/** Full batches one tick runs before waiting for the next, so a backlog cannot monopolise a connection. */
const MAX_BATCHES_PER_TICK = 20;

export class NoncePruner {
  private readonly task: PeriodicTask;

  constructor(
    private readonly store: SettlementStore,
    private readonly opts: { now: () => number; intervalMs: number; batch?: number },
    log: Logger,
  ) {
    this.task = new PeriodicTask({
      intervalMs: opts.intervalMs,
      run: (signal) => this.prune(signal),
      onError: (err) => log.warn({ err }, 'settlement nonce pruning failed; retrying at the next interval'),
    });
  }

  start(): void {
    this.task.start();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }

  /** One round now: deletes nonces past retention, in at most MAX_BATCHES_PER_TICK batches. Returns how many. */
  prune(signal?: AbortSignal): Promise<number> {
    const before = new Date(this.opts.now() - NONCE_RETENTION_MS);
    const batch = this.opts.batch ?? NONCE_PRUNE_BATCH;
    return inBatches(() => this.store.pruneNonces(before, batch), batch, MAX_BATCHES_PER_TICK, signal);
  }
}
