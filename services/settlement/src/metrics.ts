// Settlement's metrics on the process's meter (scraped at /metrics on the probe port).
import { metrics } from '@opentelemetry/api';
import { GantryError, Status } from '@gantry/kit';

/**
 * `gantry.settlement.draws` by outcome: `booked`, or the status a draw was refused with
 * (FAILED_PRECONDITION: over the limit or expired; ALREADY_EXISTS: a reused nonce; ...), or
 * `error` for a failure that is not a refusal. Taken when the module is created: a meter taken
 * before the telemetry SDK starts is a no-op for good.
 */
export function drawMetrics(): <T>(draw: () => Promise<T>) => Promise<T> {
  const draws = metrics.getMeter('gantry').createCounter('gantry.settlement.draws', { description: 'CreditDraw calls by outcome: booked, or the gRPC status of the refusal' });
  return async (draw) => {
    try {
      const response = await draw();
      draws.add(1, { outcome: 'booked' });
      return response;
    } catch (err) {
      draws.add(1, { outcome: err instanceof GantryError ? Status[err.code] : 'error' });
      throw err;
    }
  };
}
