// When the next attempt of a failed delivery happens, and whether there is one. Pure: the
// dispatcher passes the clock and the random source.

export interface RetryPolicy {
  /** Delay before attempt n+1 is scheduleMs[n] (the first is normally 0); past the end the last repeats. */
  scheduleMs: readonly number[];
  /** Each delay is spread uniformly over ±jitterRatio of itself. */
  jitterRatio: number;
  maxAttempts: number;
  /** Longest Retry-After honoured. */
  maxRetryAfterMs: number;
}

/** What one attempt ended with, as far as retrying is concerned. */
export interface AttemptOutcome {
  /** HTTP status, 0 when there was no response. */
  status: number;
  /** Retry-After in ms, when a 429 or 503 sent one. */
  retryAfterMs?: number | undefined;
}

export type Verdict =
  | { kind: 'succeeded' }
  /** Retry after `delayMs`. */
  | { kind: 'retry'; delayMs: number }
  /** No more attempts; `disable` when the endpoint said it is gone (410). */
  | { kind: 'dead'; reason: string; disable: boolean };

/** The base delay (before jitter) before attempt `attemptNumber` (1-based). */
export function scheduledDelayMs(policy: RetryPolicy, attemptNumber: number): number {
  const s = policy.scheduleMs;
  return s[Math.min(attemptNumber - 1, s.length - 1)]!;
}

/**
 * The verdict after attempt `attemptsInRound` (1-based, counted since the last replay) ended with
 * `outcome`. `random` returns [0, 1).
 */
export function judge(policy: RetryPolicy, attemptsInRound: number, outcome: AttemptOutcome, random: () => number): Verdict {
  if (outcome.status >= 200 && outcome.status < 300) return { kind: 'succeeded' };
  if (outcome.status === 410) return { kind: 'dead', reason: 'the endpoint answered 410 Gone', disable: true };
  if (attemptsInRound >= policy.maxAttempts) return { kind: 'dead', reason: `all ${policy.maxAttempts} attempts failed`, disable: false };
  const base = scheduledDelayMs(policy, attemptsInRound + 1);
  const jittered = Math.round(base * (1 + policy.jitterRatio * (2 * random() - 1)));
  const retryAfter = outcome.retryAfterMs === undefined ? 0 : Math.min(outcome.retryAfterMs, policy.maxRetryAfterMs);
  return { kind: 'retry', delayMs: Math.max(0, jittered, retryAfter) };
}

/** Attempts made in the delivery's current round: its attempt count since the last replay began one. */
export function attemptsInRound(attempts: number, roundStart: number): number {
  return attempts - roundStart;
}

/**
 * Whether a delivery whose attempt was lost (its replica died and the lease expired) has used up
 * its round. The lost attempt counts as made, as a failed one would (judge), so after the round's
 * last attempt the delivery is dead-lettered; before it, it is claimed again at once, since a lost
 * attempt has no answer to schedule a retry from.
 */
export function lostAttemptEndsRound(attempts: number, roundStart: number, maxAttempts: number): boolean {
  return attemptsInRound(attempts, roundStart) >= maxAttempts;
}

/** Retry-After (seconds or an HTTP date) in ms from `nowMs`, for 429 and 503 only; undefined when absent or unreadable. */
export function parseRetryAfter(status: number, header: string | undefined, nowMs: number): number | undefined {
  if ((status !== 429 && status !== 503) || !header) return undefined;
  const v = header.trim();
  if (/^\d{1,10}$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}
