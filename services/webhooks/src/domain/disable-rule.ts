// When the service disables an endpoint that keeps failing: once its failed attempts in a row reach
// `rule.failures` AND span at least `rule.forMs`, so that neither a short burst of failures nor a
// few failures spread over days does it; at once when the endpoint said it is gone (410). Pure: the
// store passes the streak it read under the endpoint's row lock, and the clock.
import type { DisableRule } from './limits.js';

/** An endpoint's failed attempts in a row before this one, and when the first of them began (null: none). */
export interface FailureStreak {
  failures: number;
  sinceMs: number | null;
}

/** The streak with one more failure, and whether it disables the endpoint. */
export interface AfterFailure {
  failures: number;
  sinceMs: number;
  /** Why the endpoint is disabled now; undefined while it stays enabled. */
  disableReason: string | undefined;
}

/** Whether `failures` in a row spanning `spanMs` meet the rule (a rule of 0 failures never does). */
export function streakMeetsRule(rule: DisableRule, failures: number, spanMs: number): boolean {
  return rule.failures > 0 && failures >= rule.failures && spanMs >= rule.forMs;
}

/**
 * The streak after an attempt started at `attemptStartedMs` failed, at `nowMs`. `goneReason` (a 410)
 * disables whatever the streak; otherwise the rule decides, and the reason says count and span.
 */
export function afterFailure(rule: DisableRule, streak: FailureStreak, attemptStartedMs: number, nowMs: number, goneReason?: string): AfterFailure {
  const failures = streak.failures + 1;
  const sinceMs = streak.sinceMs ?? attemptStartedMs;
  const spanMs = nowMs - sinceMs;
  const disableReason = goneReason ?? (streakMeetsRule(rule, failures, spanMs) ? `${failures} attempts in a row failed over ${Math.round(spanMs / 60_000)} minutes` : undefined);
  return { failures, sinceMs, disableReason };
}
