/** How a delay is spread so that clients do not retry in lockstep: delay × [from, from + spread). */
export interface Jitter {
  from: number;
  spread: number;
}

/** Full jitter in [delay/2, delay] (client-go's informers and the operator's watches). */
export const HALF_JITTER: Jitter = { from: 0.5, spread: 0.5 };

/** Exponential backoff with jitter: doubles from initialMs up to maxMs per failure, reset after a success. */
export class Backoff {
  private failures = 0;
  private nominal = 0;

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
    private readonly jitter: Jitter = HALF_JITTER,
  ) {}

  /** The delay before the next attempt, jittered; each call doubles the next one up to maxMs. */
  next(): number {
    // The exponent is capped so that 2 ** failures stays finite however long an outage lasts.
    this.nominal = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return this.nominal * (this.jitter.from + this.jitter.spread * this.random());
  }

  /** The delay the last next() was drawn from, before jitter (what a log line reports); 0 before any. */
  get nominalMs(): number {
    return this.nominal;
  }

  /** Forgets the failures: the next delay is initialMs again. */
  reset(): void {
    this.failures = 0;
  }
}
