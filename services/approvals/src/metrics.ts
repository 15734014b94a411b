// Approvals' metrics on the process's meter (scraped at /metrics on the probe port): how many
// requests wait for votes, counted in the database at scrape time (kit observeCount).
import { observeCount } from '@gantry/kit';
import type { ApprovalsStore } from './store/approvals-store.js';

/** Registers `gantry.approvals.pending`; stop() unregisters it (module shutdown). */
export function observePending(store: Pick<ApprovalsStore, 'countPending'>, nowMs: () => number = Date.now): { stop(): void } {
  return observeCount('gantry.approvals.pending', 'Approval requests still PENDING (all replicas: counted in the database)', () => store.countPending(), nowMs);
}
