// Approvals' metrics on the process's meter (scraped at /metrics on the probe port): how many
// requests wait for votes. Read from the database at scrape time, since every replica's requests
// are there, and kept for a few seconds so frequent scrapes cost one count.
import { metrics, type ObservableResult } from '@opentelemetry/api';
import type { ApprovalsStore } from './store/approvals-store.js';

/** How long one count answers scrapes. */
const PENDING_CACHE_MS = 5_000;

/** Registers `gantry.approvals.pending`; stop() unregisters it (module shutdown). */
export function observePending(store: Pick<ApprovalsStore, 'countPending'>, nowMs: () => number = Date.now): { stop(): void } {
  const gauge = metrics.getMeter('gantry').createObservableGauge('gantry.approvals.pending', { description: 'Approval requests still PENDING (all replicas: counted in the database)' });
  let cached: { count: number; atMs: number } | undefined;
  const observe = async (result: ObservableResult) => {
    try {
      if (!cached || nowMs() - cached.atMs >= PENDING_CACHE_MS) cached = { count: Number(await store.countPending()), atMs: nowMs() };
    } catch {
      return; // the database is away: no sample rather than a stale or made-up one (readiness says why)
    }
    result.observe(cached.count);
  };
  gauge.addCallback(observe);
  return { stop: () => gauge.removeCallback(observe) };
}
