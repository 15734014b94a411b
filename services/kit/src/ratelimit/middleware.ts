import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type pg from 'pg';
import type { GantryConfig } from '../config.js';
import { GantryError, Status } from '../errors.js';
import type { Middleware } from '../rpc/context.js';
import { workloadName } from '../tls/identity.js';

export interface Limit {
  points: number;
  windowSec: number;
}

/** Where the counters live: this process, or a PostgreSQL table shared by every replica. */
export type LimiterStore = { kind: 'memory' } | { kind: 'postgres'; pool: pg.Pool };

/** Rate limiters per method, created lazily from the config's default and per-method overrides. */
export class MethodRateLimiter {
  private readonly limiters = new Map<string, RateLimiterAbstract>();

  constructor(private readonly config: GantryConfig['rateLimit'], private readonly store: LimiterStore) {}

  private limitFor(methodPath: string): Limit {
    return this.config.methods[methodPath] ?? { points: this.config.points, windowSec: this.config.windowSec };
  }

  private async limiter(methodPath: string): Promise<RateLimiterAbstract> {
    const existing = this.limiters.get(methodPath);
    if (existing) return existing;
    const { points, windowSec } = this.limitFor(methodPath);
    const common = { points, duration: windowSec, keyPrefix: methodPath };
    let limiter: RateLimiterAbstract;
    if (this.store.kind === 'memory') {
      limiter = new RateLimiterMemory(common);
    } else {
      const pool = this.store.pool;
      limiter = await new Promise<RateLimiterAbstract>((resolve, reject) => {
        const l: RateLimiterPostgres = new RateLimiterPostgres(
          { ...common, storeClient: pool, storeType: 'pool', tableName: 'gantry_rate_limits', clearExpiredByTimeout: true },
          (err?: Error) => (err ? reject(err) : resolve(l)),
        );
      });
    }
    this.limiters.set(methodPath, limiter);
    return limiter;
  }

  /** Consumes one point for `key` on `methodPath`; returns ms until retry when over the limit. */
  async consume(methodPath: string, key: string): Promise<{ allowed: true } | { allowed: false; retryAfterMs: number }> {
    const limiter = await this.limiter(methodPath);
    try {
      await limiter.consume(key, 1);
      return { allowed: true };
    } catch (res) {
      if (res instanceof RateLimiterRes) return { allowed: false, retryAfterMs: Math.max(1, Math.ceil(res.msBeforeNext)) };
      throw res;
    }
  }
}

/**
 * Throttles each principal on each method. Over the limit: RESOURCE_EXHAUSTED with the gRPC retry
 * pushback trailer (`grpc-retry-pushback-ms`) and `retry-after` in seconds.
 * Runs after auth, so the key is the token subject; unauthenticated paths fall back to the peer.
 */
export function rateLimitMiddleware(limiter: MethodRateLimiter): Middleware {
  return async (ctx, next) => {
    const key = ctx.principal?.subject ?? workloadName(ctx.peer) ?? ctx.peer.address;
    const verdict = await limiter.consume(ctx.method.path, key);
    if (!verdict.allowed) {
      throw new GantryError(Status.RESOURCE_EXHAUSTED, `rate limit for ${ctx.method.path} exceeded; retry in ${verdict.retryAfterMs} ms`, {
        trailers: { 'grpc-retry-pushback-ms': String(verdict.retryAfterMs), 'retry-after': String(Math.ceil(verdict.retryAfterMs / 1000)) },
      });
    }
    await next();
  };
}
