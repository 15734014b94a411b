import { readFileSync, statSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { mintToken } from './jwt.js';

/** Where a service gets the bearer token it presents when it calls another service. */
export interface ServiceTokenSource {
  /** The current token; throws with a message saying what to fix when there is none. */
  token(): string;
}

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

export interface DevTokenOptions {
  key: KeyObject;
  kid: string;
  issuer: string;
  audience: string;
  subject: string;
  scopes: readonly string[];
  /** Lifetime of each minted token; a new one is minted when less than a third is left. */
  ttlSec?: number;
  now?: () => number;
}

/** Embedded mode: tokens minted with the dev signing key the process itself trusts. */
export function devTokenSource(opts: DevTokenOptions): ServiceTokenSource {
  const ttlSec = opts.ttlSec ?? 3600;
  const now = opts.now ?? Date.now;
  let cached: { token: string; expiresAtMs: number } | undefined;
  return {
    token() {
      const nowMs = now();
      if (!cached || cached.expiresAtMs - nowMs < (ttlSec * 1000) / 3) {
        const token = mintToken({ subject: opts.subject, scopes: [...opts.scopes], issuer: opts.issuer, audience: opts.audience, ttlSec, key: opts.key, kid: opts.kid, nowMs });
        cached = { token, expiresAtMs: nowMs + ttlSec * 1000 };
      }
      return cached.token;
    },
  };
}
