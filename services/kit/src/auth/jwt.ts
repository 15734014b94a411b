import type { KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { GantryConfig } from '../config.js';
import { JwksFileSource, JwksUrlSource, type Algorithm, type KeySource } from './keys.js';

/** A platform component calling as itself, authenticated by its certificate (see auth/workload.ts). */
export interface WorkloadIdentity {
  /** The workload's name in its SPIFFE ID, `spiffe://<trust domain>/<name>`: a target such as `settlement`. */
  name: string;
  /** The event families it owns: it alone writes their audit partitions and publishes their events. */
  families: ReadonlySet<string>;
}

/** The authenticated caller of an RPC: a person or external caller (a verified token) or a platform workload (its certificate). */
export interface Principal {
  subject: string;
  scopes: ReadonlySet<string>;
  expiresAtMs: number;
  /** Set only for a workload authenticated by its certificate, never from a token's claims. */
  workload?: WorkloadIdentity;
}

export class TokenError extends Error {}

/** Bounds the verified-token cache so a flood of distinct tokens cannot grow memory. */
const MAX_CACHED_TOKENS = 10_000;
/** Longer tokens are verified every time rather than cached: the cache stays under ~40 MB. */
const MAX_CACHED_TOKEN_CHARS = 4096;
/** Longer tokens are refused unread: no issuer mints them, and parsing one is work an attacker chooses. */
export const MAX_TOKEN_CHARS = 16 * 1024;
/** A cached verification is re-done at least this often, so a key removed from the JWKS stops working soon. */
const CACHE_TTL_MS = 60_000;

/**
 * Verifies bearer JWTs: algorithm pinned to the key source (never `none`, never HS from a JWKS),
 * issuer, audience, exp/nbf with a small skew, a maximum token age. Verified tokens are cached
 * briefly (bounded in count and time), since a service sees the same token on every call of a client.
 */
export class TokenVerifier {
  private readonly cache = new Map<string, { principal: Principal; untilMs: number }>();

  constructor(
    private readonly source: KeySource,
    private readonly opts: { issuer: string; audience: string; clockToleranceSec: number; maxTokenAgeSec: number },
    private readonly nowMs: () => number = Date.now,
  ) {}

  static fromConfig(auth: GantryConfig['auth'], devJwksFile?: string): TokenVerifier {
    let source: KeySource;
    if (auth.jwksUrl) source = new JwksUrlSource(auth.jwksUrl);
    else if (auth.jwksFile ?? devJwksFile) source = new JwksFileSource((auth.jwksFile ?? devJwksFile)!);
    else throw new Error('no JWT key source: set GANTRY_AUTH_JWKS_FILE or GANTRY_AUTH_JWKS_URL');
    return new TokenVerifier(source, auth);
  }

  /**
   * The principal of `token` if this verifier verified that exact token (signature included) less
   * than a cache lifetime ago and it has not expired since; else undefined (then {@link verify}).
   */
  cached(token: string): Principal | undefined {
    const entry = this.cache.get(token);
    if (!entry) return undefined;
    const now = this.nowMs();
    return now < entry.untilMs && now < entry.principal.expiresAtMs + this.opts.clockToleranceSec * 1000 ? entry.principal : undefined;
  }

  async verify(token: string): Promise<Principal> {
    if (token.length > MAX_TOKEN_CHARS) throw new TokenError(`token is ${token.length} characters; the maximum is ${MAX_TOKEN_CHARS}`);
    const cached = this.cached(token);
    if (cached) return cached;
    const now = this.nowMs();
    // Keyed by the token itself: hashing it on every call would cost more than the map does.
    const cacheKey = token;
    const decoded = jwt.decode(token, { complete: true });
    if (!decoded || typeof decoded.payload === 'string') throw new TokenError('malformed token');
    const alg = decoded.header.alg;
    if (!(this.source.algorithms as readonly string[]).includes(alg)) {
      throw new TokenError(`token algorithm ${alg} is not accepted (accepted: ${this.source.algorithms.join(', ')})`);
    }
    let key: { key: KeyObject; algorithm: Algorithm };
    try {
      key = await this.source.keyFor(decoded.header.kid, alg);
    } catch (err) {
      throw new TokenError((err as Error).message);
    }
    if (key.algorithm !== alg) throw new TokenError(`token algorithm ${alg} does not match its key (${key.algorithm})`);
    let payload: jwt.JwtPayload;
    try {
      payload = jwt.verify(token, key.key, {
        algorithms: [key.algorithm],
        issuer: this.opts.issuer,
        audience: this.opts.audience,
        clockTolerance: this.opts.clockToleranceSec,
        maxAge: `${this.opts.maxTokenAgeSec}s`,
        clockTimestamp: Math.floor(now / 1000),
      }) as jwt.JwtPayload;
    } catch (err) {
      throw new TokenError((err as Error).message);
    }
    if (!payload.sub) throw new TokenError('token has no sub claim');
    if (typeof payload.exp !== 'number') throw new TokenError('token has no exp claim');
    // jsonwebtoken measures maxAge from iat as the token states it: an iat in the future would
    // stretch a token's life past maxTokenAgeSec by as much as it lies.
    if (typeof payload.iat !== 'number' || payload.iat * 1000 > now + this.opts.clockToleranceSec * 1000) {
      throw new TokenError(`token iat ${String(payload.iat)} is in the future (beyond the ${this.opts.clockToleranceSec} s clock tolerance); its issuer's clock is wrong`);
    }
    const principal: Principal = { subject: payload.sub, scopes: parseScopes(payload), expiresAtMs: payload.exp * 1000 };
    if (token.length <= MAX_CACHED_TOKEN_CHARS) {
      if (this.cache.size >= MAX_CACHED_TOKENS) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(cacheKey, { principal, untilMs: now + CACHE_TTL_MS });
    }
    return principal;
  }

  close(): void {
    this.source.close();
  }
}

/** OAuth scopes from `scope` (space-separated, RFC 8693) or `scp` (array). */
function parseScopes(payload: jwt.JwtPayload): ReadonlySet<string> {
  const scope = payload.scope as unknown;
  const scp = payload.scp as unknown;
  if (typeof scope === 'string') return new Set(scope.split(' ').filter(Boolean));
  if (Array.isArray(scp)) return new Set(scp.filter((s): s is string => typeof s === 'string'));
  return new Set();
}

export interface MintOptions {
  subject: string;
  scopes: string[];
  issuer: string;
  audience: string;
  ttlSec: number;
  key: KeyObject;
  kid?: string;
  algorithm?: Algorithm;
  nowMs?: number;
}

/** Signs a token (dev tooling and tests; production tokens come from the platform's issuer). */
export function mintToken(opts: MintOptions): string {
  const iat = Math.floor((opts.nowMs ?? Date.now()) / 1000);
  return jwt.sign(
    { sub: opts.subject, scope: opts.scopes.join(' '), iat, exp: iat + opts.ttlSec, iss: opts.issuer, aud: opts.audience },
    opts.key,
    { algorithm: opts.algorithm ?? 'ES256', ...(opts.kid ? { keyid: opts.kid } : {}) },
  );
}
