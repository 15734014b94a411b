import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type pg from 'pg';
import type { GantryConfig } from '../config.js';
import { GantryError, Status } from '../errors.js';
import type { CallContext, Middleware, Next } from '../rpc/context.js';
import { workloadName } from '../tls/identity.js';

export interface Limit {
  points: number;
  windowSec: number;
}

/** Where the counters live: this process, or a PostgreSQL table shared by every replica. */
/** `assertReachable` refuses at once while the database does not answer (storage/reachability.ts). */
export type LimiterStore = { kind: 'memory' } | { kind: 'postgres'; pool: pg.Pool; assertReachable(): void };

/** A rate-limit decision: allowed, or refused with how long to wait. */
export type Verdict = { allowed: true } | { allowed: false; retryAfterMs: number };

const ALLOWED: Verdict = { allowed: true };

/** What rate-limiter-flexible's in-memory storage answers on a consume (its RateLimiterRes). */
interface CounterRes {
  consumedPoints: number;
  msBeforeNext: number;
}

/**
 * RateLimiterMemory's consume without its promise: the same storage call and the same test
 * (`consumedPoints > points`; we set no block duration and no even spreading). Its public consume
 * wraps the synchronous counter in a promise and a settled result object per call, which on the
 * call path costs more than the counting. Undefined when the limiter no longer has that shape (a
 * rate-limiter-flexible upgrade; test/ratelimit.test.ts notices), and the public consume is used.
 */
function syncConsume(limiter: RateLimiterMemory, points: number): ((key: string) => Verdict) | undefined {
  const internals = limiter as unknown as { _memoryStorage?: { incrby?: unknown }; getKey?: unknown; duration?: unknown; blockDuration?: unknown; execEvenly?: unknown };
  const storage = internals._memoryStorage;
  if (typeof storage?.incrby !== 'function' || typeof internals.getKey !== 'function' || typeof internals.duration !== 'number') return undefined;
  if (internals.blockDuration !== 0 || internals.execEvenly !== false) return undefined;
  const incrby = storage.incrby as (key: string, value: number, durationSec: number) => CounterRes;
  const duration = internals.duration;
  return (key) => {
    const res = incrby.call(storage, limiter.getKey(key), 1, duration);
    return res.consumedPoints > points ? { allowed: false, retryAfterMs: Math.max(1, Math.ceil(res.msBeforeNext)) } : ALLOWED;
  };
}

/** One method's limiter: a synchronous consume when the store can answer at once, else the library's. */
interface MethodLimiter {
  now?: (key: string) => Verdict;
  limiter: RateLimiterAbstract;
}

/** Rate limiters per method, created lazily from the config's default and per-method overrides. */
export class MethodRateLimiter {
  private readonly limiters = new Map<string, MethodLimiter>();

  constructor(private readonly config: GantryConfig['rateLimit'], private readonly store: LimiterStore) {}

  private limitFor(methodPath: string): Limit {
    return this.config.methods[methodPath] ?? { points: this.config.points, windowSec: this.config.windowSec };
  }

  private async create(methodPath: string): Promise<MethodLimiter> {
    const { points, windowSec } = this.limitFor(methodPath);
    const common = { points, duration: windowSec, keyPrefix: methodPath };
    let created: MethodLimiter;
    if (this.store.kind === 'memory') {
      const limiter = new RateLimiterMemory(common);
      created = { limiter, now: syncConsume(limiter, points) };
    } else {
      const pool = this.store.pool;
      const limiter = await new Promise<RateLimiterAbstract>((resolve, reject) => {
        const l: RateLimiterPostgres = new RateLimiterPostgres(
          { ...common, storeClient: pool, storeType: 'pool', tableName: 'gantry_rate_limits', clearExpiredByTimeout: true },
          (err?: Error) => (err ? reject(err) : resolve(l)),
        );
      });
      created = { limiter };
    }
    // Two first calls may both create one; the first stored is kept, so they count together.
    const existing = this.limiters.get(methodPath);
    if (existing) return existing;
    this.limiters.set(methodPath, created);
    return created;
  }

  /** Whether this process's in-memory limiter can answer `methodPath`'s calls without a promise. */
  synchronous(methodPath: string): boolean {
    return this.limiters.get(methodPath)?.now !== undefined;
  }

  /**
   * Consumes one point for `key` on `methodPath`; returns ms until retry when over the limit. At
   * once (no promise) when the method's limiter is in memory and already made.
   */
  consume(methodPath: string, key: string): Verdict | Promise<Verdict> {
    const existing = this.limiters.get(methodPath);
    if (existing?.now) return existing.now(key);
    return this.consumeAsync(methodPath, key, existing);
  }

  private async consumeAsync(methodPath: string, key: string, existing: MethodLimiter | undefined): Promise<Verdict> {
    const { limiter, now } = existing ?? (await this.create(methodPath));
    if (now) return now(key);
    if (this.store.kind === 'postgres') this.store.assertReachable();
    try {
      await limiter.consume(key, 1);
      return ALLOWED;
    } catch (res) {
      if (res instanceof RateLimiterRes) return { allowed: false, retryAfterMs: Math.max(1, Math.ceil(res.msBeforeNext)) };
      throw res;
    }
  }
}

function exceeded(methodPath: string, retryAfterMs: number): GantryError {
  return new GantryError(Status.RESOURCE_EXHAUSTED, `rate limit for ${methodPath} exceeded; retry in ${retryAfterMs} ms`, {
    trailers: { 'grpc-retry-pushback-ms': String(retryAfterMs), 'retry-after': String(Math.ceil(retryAfterMs / 1000)) },
  });
}

/**
 * Throttles each principal on each method. Over the limit: RESOURCE_EXHAUSTED with the gRPC retry
 * pushback trailer (`grpc-retry-pushback-ms`) and `retry-after` in seconds.
 * Runs after auth, so the key is the token subject; unauthenticated paths fall back to the peer.
 */
export function rateLimitMiddleware(limiter: MethodRateLimiter): Middleware {
  const thenNext = async (verdict: Promise<Verdict>, ctx: CallContext, next: Next) => {
    const v = await verdict;
    if (!v.allowed) throw exceeded(ctx.method.path, v.retryAfterMs);
    await next(ctx);
  };
  // Not async: a verdict known at once costs no promise of its own.
  return (ctx, next) => {
    const key = ctx.principal?.subject ?? workloadName(ctx.peer) ?? ctx.peer.address;
    const verdict = limiter.consume(ctx.method.path, key);
    if (verdict instanceof Promise) return thenNext(verdict, ctx, next);
    if (!verdict.allowed) return Promise.reject(exceeded(ctx.method.path, verdict.retryAfterMs));
    return next(ctx);
  };
}
