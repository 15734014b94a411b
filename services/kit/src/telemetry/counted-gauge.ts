// A gauge whose value is counted in the database at scrape time (every replica's rows are there),
// kept for a few seconds so frequent scrapes cost one count.
import { metrics, type ObservableResult } from '@opentelemetry/api';

/** How long one count answers scrapes. */
const COUNT_CACHE_MS = 5_000;

/** Registers gauge `name` on the process's meter, observed by `count`; stop() unregisters it (module shutdown). */
export function observeCount(name: string, description: string, count: () => Promise<bigint | number>, nowMs: () => number = Date.now): { stop(): void } {
  const gauge = metrics.getMeter('gantry').createObservableGauge(name, { description });
  let cached: { value: number; atMs: number } | undefined;
  const observe = async (result: ObservableResult) => {
    try {
      if (!cached || nowMs() - cached.atMs >= COUNT_CACHE_MS) cached = { value: Number(await count()), atMs: nowMs() };
    } catch {
      return; // the database is away: no sample rather than a stale or made-up one (readiness says why)
    }
    result.observe(cached.value);
  };
  gauge.addCallback(observe);
  return { stop: () => gauge.removeCallback(observe) };
}
