import { readFileSync, statSync } from 'node:fs';

/** Where a service gets the bearer token it presents when it calls another service. */
export interface ServiceTokenSource {
  /**
   * The current token; undefined to call as this workload, by its certificate alone. Throws with a
   * message saying what to fix when a token should be there and is not.
   */
  token(): string | undefined;
}

/** No token: calls are authenticated by this workload's certificate (auth/workload.ts), the default between platform components. */
export const certificateIdentity: ServiceTokenSource = { token: () => undefined };

/** How often a token file's modification time is checked, so a rotated token is picked up. */
const FILE_CHECK_INTERVAL_MS = 10_000;
/** Largest token file read. */
const MAX_TOKEN_BYTES = 16 * 1024;

/**
 * A token from a file (a mounted Secret or a projected service-account token), re-read when the
 * file changes, so the issuer can rotate it without a restart.
 */
export function fileTokenSource(path: string, now: () => number = Date.now): ServiceTokenSource {
  let cached: { token: string; mtimeMs: number; checkedAtMs: number } | undefined;
  return {
    token() {
      const nowMs = now();
      if (cached && nowMs - cached.checkedAtMs < FILE_CHECK_INTERVAL_MS) return cached.token;
      const stat = statSync(path, { throwIfNoEntry: false });
      if (!stat) throw new Error(`service token file ${path} does not exist (peers.tokenFile, GANTRY_PEERS_TOKEN_FILE)`);
      if (cached && stat.mtimeMs === cached.mtimeMs) {
        cached.checkedAtMs = nowMs;
        return cached.token;
      }
      if (stat.size > MAX_TOKEN_BYTES) throw new Error(`service token file ${path} is over ${MAX_TOKEN_BYTES} bytes; it should hold one JWT`);
      const token = readFileSync(path, 'utf8').trim();
      if (token === '') throw new Error(`service token file ${path} is empty`);
      cached = { token, mtimeMs: stat.mtimeMs, checkedAtMs: nowMs };
      return token;
    },
  };
}
