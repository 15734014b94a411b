// How many due deliveries one claim takes from each endpoint. Per endpoint: no more than its
// concurrency less the attempts in flight (the leases of every replica), no more than what is left
// of its rate in the current one-second window, no more than it has due, and, over all endpoints in
// claim order, no more than the claim's batch. Windows follow the database clock, read with each endpoint, so every replica
// counts in the same windows. Pure: the store reads the endpoints and writes the windows back.

/** Rate windows are whole seconds of the database clock. */
export const RATE_WINDOW_MS = 1000;

/** An endpoint as the claim reads it under its row lock. */
export interface EndpointLoad {
  webhookId: string;
  /** 0: the service default. */
  maxConcurrency: number;
  /** 0: the service default. */
  rateLimitPerSecond: number;
  /** The stored window: its start (ms, database clock) and the attempts started in it. */
  windowStartMs: number;
  windowCount: number;
  /** Unexpired leases on the endpoint's deliveries, on any replica. */
  inFlight: number;
  /** Its due deliveries that no lease holds, counted up to the claim's batch; absent: not counted (take what is allowed). */
  due?: number;
  /** The database clock when the endpoint was read (ms). */
  dbNowMs: number;
}

export interface ClaimBounds {
  /** Deliveries one claim takes at most. */
  batch: number;
  defaultMaxConcurrency: number;
  defaultRateLimitPerSecond: number;
}

/** What one claim may take from one endpoint, and the window it counts in. */
export interface Allowance {
  webhookId: string;
  /** Deliveries to take, at least 1. */
  take: number;
  /** The current window's start, and the attempts it had already started. */
  windowStartMs: number;
  used: number;
}

/** The window `dbNowMs` falls in, and what the stored window counts toward it (nothing once it has passed). */
export function currentWindow(load: Pick<EndpointLoad, 'dbNowMs' | 'windowStartMs' | 'windowCount'>): { startMs: number; used: number } {
  const startMs = Math.floor(load.dbNowMs / RATE_WINDOW_MS) * RATE_WINDOW_MS;
  return { startMs, used: load.windowStartMs === startMs ? load.windowCount : 0 };
}

/** Attempts the endpoint may have in flight at once: its own max_concurrency, or the service default. */
export function concurrencyLimit(load: Pick<EndpointLoad, 'maxConcurrency'>, bounds: Pick<ClaimBounds, 'defaultMaxConcurrency'>): number {
  return load.maxConcurrency || bounds.defaultMaxConcurrency;
}

/** How many deliveries the endpoint allows now, out of `budget` (0 or less: none). */
export function endpointAllowance(load: EndpointLoad, bounds: ClaimBounds, budget: number): { take: number; windowStartMs: number; used: number } {
  const window = currentWindow(load);
  const rate = load.rateLimitPerSecond || bounds.defaultRateLimitPerSecond;
  return { take: Math.min(budget, concurrencyLimit(load, bounds) - load.inFlight, rate - window.used, load.due ?? Infinity), windowStartMs: window.startMs, used: window.used };
}

/** The claim's batch split over `loads` in the order given (the claim's: least recently claimed first); endpoints allowing nothing are left out. */
export function allocateClaim(loads: readonly EndpointLoad[], bounds: ClaimBounds): Allowance[] {
  const out: Allowance[] = [];
  let budget = bounds.batch;
  for (const load of loads) {
    if (budget === 0) break;
    const a = endpointAllowance(load, bounds, budget);
    if (a.take <= 0) continue;
    out.push({ webhookId: load.webhookId, ...a });
    budget -= a.take;
  }
  return out;
}

/** The endpoint's window after the claim took `taken` of its allowance (at most `take`), as stored for the next claim. */
export function windowAfterClaim(a: Allowance, taken: number): { startMs: number; count: number } {
  return { startMs: a.windowStartMs, count: a.used + taken };
}
