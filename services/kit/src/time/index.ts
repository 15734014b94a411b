// Time for every component: one Clock interface (real by default, FakeClock in tests), backoff,
// and the wake-able sleep of poll loops that are also told when there is work.
export { type Clock, realClock } from './clock.js';
export { Backoff, HALF_JITTER, type Jitter } from './backoff.js';
export { FakeClock } from './fake-clock.js';
export { Wakeup } from './wakeup.js';
export { inBatches, PeriodicTask, type PeriodicTaskOptions } from './periodic.js';
export { durationFromMs, durationToMs, parseDurationText, type DurationMessage } from './duration.js';
