// google.protobuf.Duration <-> milliseconds, and the "90s / 10m / 2h / 7d" text of the CLI. One
// place, because validation in every service and the admin service all convert the same way.

/** The shape of a generated google.protobuf.Duration. */
export interface DurationMessage {
  seconds: bigint;
  nanos: number;
}

/**
 * A Duration in whole milliseconds, truncated toward zero (nanos carry the seconds' sign). Far
 * out-of-range values stay far out of range (not wrapped), so the caller's bounds check rejects them.
 */
export function durationToMs(d: DurationMessage): number {
  return Number(d.seconds) * 1000 + Math.trunc(d.nanos / 1e6);
}

/** A Duration of `ms` milliseconds (fractions of a millisecond kept as nanos). */
export function durationFromMs(ms: number | bigint): DurationMessage {
  if (typeof ms === 'bigint') return { seconds: ms / 1000n, nanos: Number(ms % 1000n) * 1_000_000 };
  const whole = Math.trunc(ms / 1000);
  return { seconds: BigInt(whole), nanos: Math.round((ms - whole * 1000) * 1e6) };
}

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * `500ms`, `90s`, `10m`, `2h` or `7d` in milliseconds. `name` (an option such as `--for`) starts
 * the error, which shows the accepted form.
 */
export function parseDurationText(name: string, text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw new Error(`${name} must be a whole number with a unit (ms, s, m, h or d), e.g. 90s, 10m or 2h; got ${JSON.stringify(text)}`);
  const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  if (!Number.isSafeInteger(ms)) throw new Error(`${name} is too long: ${text}`);
  return ms;
}
