// The delivery rules the store applies, as pure functions, by example and by fast-check properties:
// the retry schedule and what a lost attempt does (domain/retry.ts), when a failing endpoint is
// disabled (domain/disable-rule.ts), and how much one claim takes from each endpoint
// (domain/rate-allowance.ts). delivery.test.ts and service.test.ts show the same rules end to end.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { afterFailure, streakMeetsRule, type FailureStreak } from '../src/domain/disable-rule.js';
import type { DisableRule } from '../src/domain/limits.js';
import { allocateClaim, currentWindow, RATE_WINDOW_MS, windowAfterClaim, type ClaimBounds, type EndpointLoad } from '../src/domain/rate-allowance.js';
import { attemptsInRound, judge, lostAttemptEndsRound, parseRetryAfter, type RetryPolicy } from '../src/domain/retry.js';

const MINUTE_MS = 60_000;

describe('retry rules', () => {
  const svix: RetryPolicy = { scheduleMs: [0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000], jitterRatio: 0.2, maxAttempts: 8, maxRetryAfterMs: 36_000_000 };

  test('after attempt n fails, the next waits the schedule\'s delay n+1 within ±20 %, never negative; after attempt 8 the delivery is dead', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.double({ min: 0, max: 0.999999, noNaN: true }), fc.constantFrom(0, 400, 404, 500, 502), (n, r, status) => {
        const v = judge(svix, n, { status }, () => r);
        if (n === 8) return assert.deepEqual(v, { kind: 'dead', reason: 'all 8 attempts failed', disable: false });
        assert.equal(v.kind, 'retry');
        const base = svix.scheduleMs[n]!;
        if (v.kind === 'retry') assert.ok(v.delayMs >= Math.floor(base * 0.8) && v.delayMs <= Math.ceil(base * 1.2), `${v.delayMs} vs ${base}`);
      }),
    );
  });

  test('2xx succeeds at any attempt; 410 is dead and disables at any attempt', () => {
    for (let n = 1; n <= 8; n++) {
      assert.equal(judge(svix, n, { status: 204 }, Math.random).kind, 'succeeded');
      assert.deepEqual(judge(svix, n, { status: 410 }, Math.random), { kind: 'dead', reason: 'the endpoint answered 410 Gone', disable: true });
    }
  });

  test('Retry-After on 429/503 pushes the next attempt out (capped), but never pulls it in', () => {
    assert.deepEqual(judge(svix, 1, { status: 503, retryAfterMs: 120_000 }, () => 0.5), { kind: 'retry', delayMs: 120_000 });
    assert.deepEqual(judge(svix, 2, { status: 429, retryAfterMs: 1_000 }, () => 0.5), { kind: 'retry', delayMs: 300_000 });
    assert.deepEqual(judge({ ...svix, maxRetryAfterMs: 60_000 }, 1, { status: 503, retryAfterMs: 3_600_000 }, () => 0.5), { kind: 'retry', delayMs: 60_000 });
    assert.equal(parseRetryAfter(503, '120', 0), 120_000);
    assert.equal(parseRetryAfter(429, new Date(90_000).toUTCString(), 30_000), 60_000);
    assert.equal(parseRetryAfter(500, '120', 0), undefined);
    assert.equal(parseRetryAfter(503, 'soon', 0), undefined);
  });

  test('a lost attempt ends the round exactly when a failed attempt with the same number would have: the round\'s last is dead-lettered, an earlier one is claimed again', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 20 }), fc.constantFrom(0, 408, 429, 500, 503), (roundStart, inRound, maxAttempts, status) => {
        const attempts = roundStart + inRound;
        assert.equal(attemptsInRound(attempts, roundStart), inRound);
        const failed = judge({ ...svix, maxAttempts }, inRound, { status }, () => 0.5);
        assert.equal(lostAttemptEndsRound(attempts, roundStart, maxAttempts), failed.kind === 'dead');
      }),
    );
  });

  test('a replayed dead letter starts a new round: its lost first attempt of the replay is retried, though the delivery made 8 attempts before', () => {
    assert.equal(lostAttemptEndsRound(8, 0, 8), true);
    assert.equal(lostAttemptEndsRound(9, 8, 8), false);
    assert.equal(lostAttemptEndsRound(16, 8, 8), true);
  });
});

describe('the endpoint disable rule', () => {
  const rule: DisableRule = { failures: 4, forMs: 10 * MINUTE_MS };
  const rules = fc.record({ failures: fc.integer({ min: 0, max: 60 }), forMs: fc.integer({ min: 0, max: 7 * 24 * 60 * MINUTE_MS }) });
  const streaks: fc.Arbitrary<FailureStreak> = fc.oneof(
    fc.constant({ failures: 0, sinceMs: null }),
    fc.record({ failures: fc.integer({ min: 1, max: 100 }), sinceMs: fc.integer({ min: 0, max: 1e12 }) }),
  );

  test('the fifth failure in a row 14 minutes after the first disables with a reason that says so; the fourth at 3 minutes does not; the fourth at exactly 10 minutes does', () => {
    const t0 = 1_700_000_000_000;
    assert.deepEqual(afterFailure(rule, { failures: 3, sinceMs: t0 }, t0 + 3 * MINUTE_MS, t0 + 3 * MINUTE_MS), { failures: 4, sinceMs: t0, disableReason: undefined });
    assert.deepEqual(afterFailure(rule, { failures: 4, sinceMs: t0 }, t0 + 14 * MINUTE_MS, t0 + 14 * MINUTE_MS), { failures: 5, sinceMs: t0, disableReason: '5 attempts in a row failed over 14 minutes' });
    // Both thresholds met exactly: the fourth failure, ten minutes after the first.
    assert.equal(afterFailure(rule, { failures: 3, sinceMs: t0 }, t0 + 10 * MINUTE_MS, t0 + 10 * MINUTE_MS).disableReason, '4 attempts in a row failed over 10 minutes');
    assert.equal(afterFailure(rule, { failures: 3, sinceMs: t0 }, t0 + 10 * MINUTE_MS - 1, t0 + 10 * MINUTE_MS - 1).disableReason, undefined);
  });

  test('a failure adds one to the streak and keeps its start; the first failure of a streak starts it at its attempt', () => {
    fc.assert(
      fc.property(rules, streaks, fc.integer({ min: 0, max: 1e12 }), fc.integer({ min: 0, max: 1e9 }), (r, streak, startedMs, tookMs) => {
        const next = afterFailure(r, streak, startedMs, startedMs + tookMs);
        assert.equal(next.failures, streak.failures + 1);
        assert.equal(next.sinceMs, streak.sinceMs ?? startedMs);
      }),
    );
  });

  test('disabling never happens before both thresholds are met (the count and the span), and always once they are; a rule of 0 failures never disables', () => {
    fc.assert(
      fc.property(rules, streaks, fc.integer({ min: 0, max: 1e12 }), fc.integer({ min: 0, max: 1e10 }), (r, streak, startedMs, laterMs) => {
        const nowMs = Math.max(startedMs, streak.sinceMs ?? 0) + laterMs;
        const next = afterFailure(r, streak, startedMs, nowMs);
        const both = r.failures > 0 && next.failures >= r.failures && nowMs - next.sinceMs >= r.forMs;
        assert.equal(next.disableReason !== undefined, both);
        assert.equal(streakMeetsRule(r, next.failures, nowMs - next.sinceMs), both);
      }),
    );
  });

  test('over any run of failures, the endpoint is disabled by the first failure that meets both thresholds, not one sooner', () => {
    fc.assert(
      fc.property(rules, fc.array(fc.integer({ min: 0, max: 24 * 60 * MINUTE_MS }), { minLength: 1, maxLength: 80 }), (r, gapsMs) => {
        let streak: FailureStreak = { failures: 0, sinceMs: null };
        let nowMs = 1_700_000_000_000;
        const firstMs = nowMs;
        for (let i = 0; i < gapsMs.length; i++) {
          nowMs += gapsMs[i]!;
          const next = afterFailure(r, streak, i === 0 ? firstMs : nowMs, nowMs);
          const expected = r.failures > 0 && i + 1 >= r.failures && nowMs - firstMs >= r.forMs;
          assert.equal(next.disableReason !== undefined, expected, `failure ${i + 1}`);
          if (expected) return;
          streak = { failures: next.failures, sinceMs: next.sinceMs };
        }
      }),
    );
  });

  test('a 410 disables at any streak, with its own reason, even under a rule that never disables', () => {
    fc.assert(
      fc.property(rules, streaks, fc.integer({ min: 0, max: 1e12 }), (r, streak, nowMs) => {
        assert.equal(afterFailure(r, streak, nowMs, nowMs, 'the endpoint answered 410 Gone').disableReason, 'the endpoint answered 410 Gone');
      }),
    );
  });
});

describe('the per-endpoint rate allowance of a claim', () => {
  const bounds = fc.record({ batch: fc.integer({ min: 1, max: 200 }), defaultMaxConcurrency: fc.integer({ min: 1, max: 50 }), defaultRateLimitPerSecond: fc.integer({ min: 1, max: 200 }) });
  const dbNow = 1_700_000_000_000;
  const load: fc.Arbitrary<Omit<EndpointLoad, 'webhookId'>> = fc.record({
    maxConcurrency: fc.integer({ min: 0, max: 30 }),
    rateLimitPerSecond: fc.integer({ min: 0, max: 100 }),
    // The stored window: this second, the one before, or long ago; its count may exceed a rate lowered since.
    windowStartMs: fc.constantFrom(0, dbNow - RATE_WINDOW_MS, dbNow),
    windowCount: fc.integer({ min: 0, max: 150 }),
    inFlight: fc.integer({ min: 0, max: 40 }),
    dbNowMs: fc.integer({ min: dbNow, max: dbNow + RATE_WINDOW_MS - 1 }),
  });
  const loads = fc.array(load, { maxLength: 12 }).map((ls): EndpointLoad[] => ls.map((l, i) => ({ webhookId: `wh_${i}`, ...l })));
  const rateOf = (l: EndpointLoad, b: ClaimBounds) => l.rateLimitPerSecond || b.defaultRateLimitPerSecond;
  const concurrencyOf = (l: EndpointLoad, b: ClaimBounds) => l.maxConcurrency || b.defaultMaxConcurrency;

  test('no allowance exceeds what is left of the rate in the current window, nor the concurrency left, and together they never exceed the batch', () => {
    fc.assert(
      fc.property(loads, bounds, (ls, b) => {
        const out = allocateClaim(ls, b);
        assert.ok(out.reduce((sum, a) => sum + a.take, 0) <= b.batch);
        for (const a of out) {
          const l = ls.find((x) => x.webhookId === a.webhookId)!;
          assert.ok(a.take >= 1);
          assert.ok(a.used + a.take <= rateOf(l, b), 'the rate');
          assert.ok(l.inFlight + a.take <= concurrencyOf(l, b), 'the concurrency');
          assert.ok(windowAfterClaim(a, a.take).count <= rateOf(l, b), 'the stored window');
        }
      }),
    );
  });

  test('the window is the whole second of the database clock; a stored window of another second counts nothing', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4e12 }), fc.integer({ min: 0, max: 4e12 }), fc.integer({ min: 0, max: 1000 }), (dbNowMs, storedMs, count) => {
        const w = currentWindow({ dbNowMs, windowStartMs: storedMs, windowCount: count });
        assert.ok(w.startMs % RATE_WINDOW_MS === 0 && w.startMs <= dbNowMs && dbNowMs < w.startMs + RATE_WINDOW_MS);
        assert.equal(w.used, storedMs === w.startMs ? count : 0);
      }),
    );
  });

  test('endpoints are served in the order given: one gets nothing only when it has no room or the batch is spent', () => {
    fc.assert(
      fc.property(loads, bounds, (ls, b) => {
        const out = allocateClaim(ls, b);
        const order = ls.map((l) => l.webhookId);
        assert.deepEqual(out.map((a) => a.webhookId), order.filter((id) => out.some((a) => a.webhookId === id)));
        let budget = b.batch;
        for (const l of ls) {
          const got = out.find((a) => a.webhookId === l.webhookId);
          const w = currentWindow(l);
          const room = Math.min(concurrencyOf(l, b) - l.inFlight, rateOf(l, b) - w.used);
          if (got) assert.equal(got.take, Math.min(room, budget));
          else assert.ok(room <= 0 || budget === 0, `${l.webhookId} had room ${room} and budget ${budget}`);
          budget -= got?.take ?? 0;
        }
      }),
    );
  });

  test('claims in the same second never take more from an endpoint than its rate, whatever the batch and what each claim got', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.array(fc.record({ batch: fc.integer({ min: 1, max: 60 }), shortBy: fc.nat(10), atMs: fc.nat(RATE_WINDOW_MS - 1) }), { maxLength: 30 }), (rate, claims) => {
        let stored = { startMs: 0, count: 0 };
        let taken = 0;
        for (const c of claims) {
          const l: EndpointLoad = { webhookId: 'wh', maxConcurrency: 1000, rateLimitPerSecond: rate, windowStartMs: stored.startMs, windowCount: stored.count, inFlight: 0, dbNowMs: dbNow + c.atMs };
          const [a] = allocateClaim([l], { batch: c.batch, defaultMaxConcurrency: 10, defaultRateLimitPerSecond: 100 });
          if (!a) continue;
          // Fewer due deliveries than allowed may be found: the window counts what was taken.
          const got = Math.max(0, a.take - c.shortBy);
          stored = windowAfterClaim(a, got);
          taken += got;
        }
        assert.ok(taken <= rate, `${taken} taken in one second at rate ${rate}`);
      }),
    );
  });

  test('an endpoint with fewer due deliveries than it allows takes only those, leaving the rest of the batch to the endpoints after it', () => {
    const l = (webhookId: string, due: number): EndpointLoad => ({ webhookId, maxConcurrency: 64, rateLimitPerSecond: 1000, windowStartMs: 0, windowCount: 0, inFlight: 0, due, dbNowMs: dbNow });
    const out = allocateClaim([l('a', 2), l('b', 0), l('c', 50), l('d', 70)], { batch: 100, defaultMaxConcurrency: 10, defaultRateLimitPerSecond: 100 });
    assert.deepEqual(out.map((a) => [a.webhookId, a.take]), [['a', 2], ['c', 50], ['d', 48]]);
  });

  test('rate and concurrency of 0 mean the service defaults; a new second frees the whole rate', () => {
    const l: EndpointLoad = { webhookId: 'wh', maxConcurrency: 0, rateLimitPerSecond: 0, windowStartMs: dbNow - RATE_WINDOW_MS, windowCount: 100, inFlight: 3, dbNowMs: dbNow + 5 };
    assert.deepEqual(allocateClaim([l], { batch: 500, defaultMaxConcurrency: 10, defaultRateLimitPerSecond: 100 }), [{ webhookId: 'wh', take: 7, windowStartMs: dbNow, used: 0 }]);
    assert.deepEqual(allocateClaim([{ ...l, windowStartMs: dbNow, windowCount: 98 }], { batch: 500, defaultMaxConcurrency: 10, defaultRateLimitPerSecond: 100 }), [{ webhookId: 'wh', take: 2, windowStartMs: dbNow, used: 98 }]);
  });
});
