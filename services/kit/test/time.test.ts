// The kit's time: the real clock's timers, backoff with jitter, the fake clock tests drive, and the
// wake-able sleep of the poll loops (outbox relay, change feed, webhooks dispatcher).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, durationFromMs, durationToMs, FakeClock, HALF_JITTER, inBatches, parseDurationText, PeriodicTask, realClock, Wakeup } from '../src/time/index.js';

test('the real clock sleeps for the time asked, an abort ends the sleep at once, and a cancelled timer never fires', async () => {
  let t0 = performance.now();
  await realClock.sleep(30);
  assert.ok(performance.now() - t0 >= 29, 'slept the whole 30 ms');

  const stop = new AbortController();
  t0 = performance.now();
  const sleeping = realClock.sleep(60_000, stop.signal);
  stop.abort();
  await sleeping;
  assert.ok(performance.now() - t0 < 1000, 'the abort ended a 60 s sleep');
  await realClock.sleep(60_000, stop.signal); // already aborted: returns at once

  let fired = false;
  const cancel = realClock.setTimeout(() => (fired = true), 10);
  cancel();
  await realClock.sleep(30);
  assert.equal(fired, false);
});

test('backoff doubles from the initial delay up to the cap, jitters within its range, and starts again after reset', () => {
  const half = new Backoff(100, 1000, () => 0.5);
  const delays = Array.from({ length: 6 }, () => [half.next(), half.nominalMs]);
  assert.deepEqual(delays, [[75, 100], [150, 200], [300, 400], [600, 800], [750, 1000], [750, 1000]]);
  half.reset();
  assert.equal(half.next(), 75);

  assert.equal(new Backoff(100, 1000, () => 0).next(), 100 * HALF_JITTER.from, 'the lowest draw is half the delay');
  const plusMinus20 = { from: 0.8, spread: 0.4 };
  assert.equal(new Backoff(100, 1000, () => 0, plusMinus20).next(), 80);
  assert.equal(new Backoff(100, 1000, () => 0.5, plusMinus20).next(), 100);
  assert.ok(new Backoff(100, 1000, () => 0.999, plusMinus20).next() < 120);

  const long = new Backoff(1, 60_000, () => 1);
  for (let i = 0; i < 10_000; i++) long.next();
  assert.equal(long.nominalMs, 60_000, 'a long outage stays at the cap (no Infinity, no NaN)');
});

test('the fake clock fires due timers in order only when advanced, and a sleep ends on its time or an abort', async () => {
  const clock = new FakeClock(5_000);
  const fired: string[] = [];
  clock.setTimeout(() => fired.push('b'), 20);
  clock.setTimeout(() => fired.push('a'), 10);
  const cancelC = clock.setTimeout(() => fired.push('c'), 15);
  cancelC();
  assert.deepEqual(clock.pending(), [10, 20]);
  clock.advance(9);
  assert.deepEqual(fired, []);
  clock.advance(11);
  assert.deepEqual(fired, ['a', 'b']);
  assert.equal(clock.now(), 5_020);

  let slept = false;
  const sleeping = clock.sleep(100).then(() => (slept = true));
  clock.advance(99);
  await Promise.resolve();
  assert.equal(slept, false);
  clock.advance(1);
  await sleeping;

  const stop = new AbortController();
  const aborted = clock.sleep(1_000_000, stop.signal);
  stop.abort();
  await aborted;
  assert.deepEqual(clock.pending(), [], 'an aborted sleep leaves no timer behind');
});

test('a wake-up ends a sleep early (true); without one the sleep lasts its time (false); an abort ends it (false)', async () => {
  const clock = new FakeClock();
  const wakeup = new Wakeup(clock);
  const first = wakeup.sleep(60_000);
  const second = wakeup.sleep(1_000);
  wakeup.wake();
  assert.deepEqual(await Promise.all([first, second]), [true, true], 'one wake-up ends every sleep in progress');
  assert.deepEqual(clock.pending(), [], 'and cancels their timers');

  const timed = wakeup.sleep(50);
  clock.advance(50);
  assert.equal(await timed, false);

  const stop = new AbortController();
  const aborted = wakeup.sleep(50, { signal: stop.signal });
  stop.abort();
  wakeup.wake(); // after the abort: the abort decided
  assert.equal(await aborted, false);
  assert.equal(await wakeup.sleep(50, { signal: stop.signal }), false, 'an aborted signal sleeps not at all');
});

test('a wake-up that came after the mark skips the next sleep; one before the mark does not', async () => {
  const clock = new FakeClock();
  const wakeup = new Wakeup(clock);
  wakeup.wake();
  const mark = wakeup.mark;
  // Nothing since the mark: this sleep waits for its time.
  const waits = wakeup.sleep(50, { since: mark });
  assert.deepEqual(clock.pending(), [50]);
  clock.advance(50);
  assert.equal(await waits, false);

  const busy = wakeup.mark;
  wakeup.wake(); // arrives while the loop is busy, nobody asleep
  assert.equal(await wakeup.sleep(60_000, { since: busy }), true);
  assert.deepEqual(clock.pending(), [], 'the skipped sleep set no timer');
});

test('on the real clock a wake-up cuts a long sleep short', async () => {
  const wakeup = new Wakeup();
  const t0 = performance.now();
  const sleeping = wakeup.sleep(60_000);
  setTimeout(() => wakeup.wake(), 10);
  assert.equal(await sleeping, true);
  assert.ok(performance.now() - t0 < 1000);
});

test('a periodic task runs once per interval on its clock, reports a failed run and goes on, and stop() waits for the run in progress', async () => {
  const clock = new FakeClock(0);
  const errors: unknown[] = [];
  let runs = 0;
  let release: (() => void) | undefined;
  const task = new PeriodicTask({
    intervalMs: 1000,
    clock,
    onError: (err) => errors.push(err),
    run: async () => {
      runs++;
      if (runs === 2) throw new Error('the database is away');
      if (runs === 3) await new Promise<void>((resolve) => (release = resolve));
    },
  });
  task.start();
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  await settle();
  assert.equal(runs, 0, 'the first run waits one interval');
  for (const expected of [1, 2, 3]) {
    clock.advance(1000);
    await settle();
    assert.equal(runs, expected);
  }
  assert.equal(errors.length, 1, 'the failed run was reported, and the next one ran');
  let stopped = false;
  const stopping = task.stop().then(() => (stopped = true));
  await settle();
  assert.equal(stopped, false, 'stop() waits for the run in progress');
  release!();
  await stopping;
  clock.advance(10_000);
  await settle();
  assert.equal(runs, 3, 'no run after stop()');
});

test('inBatches runs batches until one is short, the cap is reached, or the signal aborts', async () => {
  const sizes = [10, 10, 4, 10];
  let i = 0;
  assert.equal(await inBatches(async () => sizes[i++]!, 10, 100), 24, 'stops after the short batch');
  assert.equal(i, 3);
  i = 0;
  assert.equal(await inBatches(async () => 10, 10, 5), 50, 'at most maxBatches');
  const stop = new AbortController();
  stop.abort();
  assert.equal(await inBatches(async () => 10, 10, 5, stop.signal), 0, 'none once aborted');
});

describe('durations', () => {
  test('a Duration in milliseconds truncates toward zero, with nanos of the seconds’ sign', () => {
    assert.equal(durationToMs({ seconds: 90n, nanos: 500_999_999 }), 90_500);
    assert.equal(durationToMs({ seconds: -1n, nanos: -500_000_000 }), -1500);
    assert.equal(durationToMs({ seconds: 0n, nanos: 999_999 }), 0);
    // Far out of range stays far out of range, for the caller's bounds check.
    assert.ok(durationToMs({ seconds: 2n ** 62n, nanos: 0 }) > 1e21);
  });

  test('milliseconds as a Duration, from a number or a bigint, round-trip', () => {
    assert.deepEqual(durationFromMs(90_500), { seconds: 90n, nanos: 500_000_000 });
    assert.deepEqual(durationFromMs(1.5), { seconds: 0n, nanos: 1_500_000 });
    assert.deepEqual(durationFromMs(-1500), { seconds: -1n, nanos: -500_000_000 });
    assert.deepEqual(durationFromMs(604_800_001n), { seconds: 604_800n, nanos: 1_000_000 });
    for (const ms of [0, 1, 999, 1000, 86_400_000]) assert.equal(durationToMs(durationFromMs(ms)), ms);
  });

  test('CLI text: a whole number and a unit; anything else names the option and the form', () => {
    assert.equal(parseDurationText('--for', '500ms'), 500);
    assert.equal(parseDurationText('--for', '90s'), 90_000);
    assert.equal(parseDurationText('--for', ' 10m '), 600_000);
    assert.equal(parseDurationText('--for', '2h'), 7_200_000);
    assert.equal(parseDurationText('--expires-in', '7d'), 604_800_000);
    for (const bad of ['soon', '10', '1.5h', '-5m', '5 m', '']) {
      assert.throws(() => parseDurationText('--for', bad), /^Error: --for must be a whole number with a unit \(ms, s, m, h or d\), e\.g\. 90s/);
    }
    assert.throws(() => parseDurationText('--for', '99999999999999d'), /--for is too long/);
  });
});
