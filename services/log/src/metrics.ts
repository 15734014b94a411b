// The log's metrics on the process's meter (scraped at /metrics on the probe port).
import { metrics } from '@opentelemetry/api';

/**
 * `gantry.log.entries_appended`: entries this process committed, and with `duplicate="true"` the
 * idempotent appends answered with an earlier receipt (nothing written). No partition label:
 * partitions are named by callers, so their number is unbounded. Taken when the module is
 * created: a meter taken before the telemetry SDK starts is a no-op for good.
 */
export function appendMetrics(): (appended: number, duplicates?: number) => void {
  const entries = metrics.getMeter('gantry').createCounter('gantry.log.entries_appended', { description: 'Log entries committed by this process; duplicate="true": idempotent appends answered with an earlier receipt' });
  const fresh = { duplicate: 'false' };
  const replayed = { duplicate: 'true' };
  return (appended, duplicates = 0) => {
    if (appended > 0) entries.add(appended, fresh);
    if (duplicates > 0) entries.add(duplicates, replayed);
  };
}
