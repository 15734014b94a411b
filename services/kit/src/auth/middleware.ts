import type { Metadata } from '@grpc/grpc-js';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { GantryError, Status } from '../errors.js';
import { admissionOf, type CallContext, type Middleware, type Next } from '../rpc/context.js';
import type { PeerIdentity } from '../tls/identity.js';
import { TokenError, type Principal, type TokenVerifier } from './jwt.js';
import type { WorkloadDirectory } from './workload.js';

/** Scopes needed by a method path; undefined means the method is not in any table (refused). */
export type ScopeLookup = (methodPath: string) => readonly string[] | undefined;

/** What authorization looks at: the method, the call's metadata, and the peer (read only when needed). */
export interface CallCredentials {
  methodPath: string;
  metadata: Metadata;
  /** The remote address as grpc-js reports it: all the failure limit needs (no certificate parsed). */
  address: string;
  /** The verified certificate's identity, read only for a call without a token (it parses the certificate). */
  peer: () => PeerIdentity;
}

/** The caller of a token-less call: a granted workload by its certificate, else nobody. */
function workloadPrincipal(workloads: WorkloadDirectory, peer: PeerIdentity): Principal {
  const principal = workloads.principalFor(peer);
  if (principal) return principal;
  const name = workloads.workloadOf(peer);
  const hint = name ? `; the certificate's workload ${name} has no grant here (auth.workloads)` : '';
  throw new GantryError(Status.UNAUTHENTICATED, `missing bearer token: send metadata 'authorization: Bearer <jwt>' (a dev token: gantry token --scope ...)${hint}`);
}

/** The peer's address without its port: failures are counted per host, not per connection. */
function peerHost(address: string): string {
  return address.replace(/:\d+$/, '');
}

/** Hosts with a recent failure tracked for the synchronous check, at most: past it, every host is asked of the limiter. */
const MAX_TRACKED_FAILING_HOSTS = 100_000;

/**
 * Failed authentications per peer host (rate-limiter-flexible, in memory): a host over its budget
 * is refused before any verification work until its window ends.
 *
 * Asking the limiter costs a promise per call; most hosts never fail. So the last failure of each
 * host is also kept here, and a host without one within the window is known to be allowed at once
 * (a window begins at a failure, so its count is zero once the last failure is a window old).
 */
export class FailedAuthLimiter {
  private readonly failures: RateLimiterMemory;
  /** The last failure of each host that failed within about a window, bounded. */
  private readonly lastFailureMs = new Map<string, number>();
  /** Until then a failure may have gone untracked (the map was full): untracked hosts are asked of the limiter. */
  private untrackedUntilMs = 0;
  private readonly windowMs: number;

  constructor(
    private readonly opts: { maxFailuresPerPeer: number; failureWindowSec: number },
    private readonly nowMs: () => number = Date.now,
  ) {
    this.failures = new RateLimiterMemory({ points: opts.maxFailuresPerPeer, duration: opts.failureWindowSec, keyPrefix: 'auth-failures' });
    this.windowMs = opts.failureWindowSec * 1000;
  }

  /** Whether the host of `address` (host:port) has surely not failed within the window: then it is allowed without asking the limiter. */
  surelyAllowed(address: string): boolean {
    if (this.lastFailureMs.size === 0 && this.untrackedUntilMs === 0) return true;
    const host = peerHost(address);
    const now = this.nowMs();
    const last = this.lastFailureMs.get(host);
    if (last === undefined) return now >= this.untrackedUntilMs;
    if (now - last < this.windowMs) return false;
    this.lastFailureMs.delete(host);
    return now >= this.untrackedUntilMs;
  }

  /** Throws RESOURCE_EXHAUSTED while `host` has used up its failures. */
  async assertAllowed(host: string): Promise<void> {
    const res = await this.failures.get(host);
    if (!res || res.consumedPoints < this.opts.maxFailuresPerPeer) return;
    const retryAfterMs = Math.max(1, Math.ceil(res.msBeforeNext));
    throw new GantryError(Status.RESOURCE_EXHAUSTED, `${res.consumedPoints} failed authentications from ${host} in ${this.opts.failureWindowSec} s (auth.maxFailuresPerPeer); retry in ${retryAfterMs} ms with valid credentials`, {
      trailers: { 'grpc-retry-pushback-ms': String(retryAfterMs), 'retry-after': String(Math.ceil(retryAfterMs / 1000)) },
    });
  }

  async recordFailure(host: string): Promise<void> {
    this.track(host);
    await this.failures.consume(host, 1).catch((res: unknown) => {
      if (!(res instanceof RateLimiterRes)) throw res;
    });
  }

  private track(host: string): void {
    const now = this.nowMs();
    if (!this.lastFailureMs.has(host) && this.lastFailureMs.size >= MAX_TRACKED_FAILING_HOSTS) {
      for (const [h, at] of this.lastFailureMs) if (now - at >= this.windowMs) this.lastFailureMs.delete(h);
    }
    if (this.lastFailureMs.has(host) || this.lastFailureMs.size < MAX_TRACKED_FAILING_HOSTS) {
      this.lastFailureMs.delete(host);
      this.lastFailureMs.set(host, now);
    } else {
      this.untrackedUntilMs = now + this.windowMs;
    }
    if (this.untrackedUntilMs !== 0 && now >= this.untrackedUntilMs) this.untrackedUntilMs = 0;
  }
}

/**
 * Decides who calls and whether they may: a bearer token (people, external callers), or for a call
 * without one a platform workload's certificate (auth/workload.ts). No credential or a bad one:
 * UNAUTHENTICATED (and counted against the peer); a caller without the method's scopes:
 * PERMISSION_DENIED. It reads only metadata, so the server runs it before a request body is read
 * (server/admission.ts).
 */
export class Authenticator {
  constructor(
    private readonly verifier: TokenVerifier | undefined,
    private readonly workloads: WorkloadDirectory,
    private readonly scopesFor: ScopeLookup,
    private readonly failures: FailedAuthLimiter,
  ) {}

  /**
   * The caller, allowed the method's scopes: at once when that is known without waiting (a token
   * verified and cached, its host without recent failures, its scopes enough), else a promise; a
   * refusal is always a rejected promise of a GantryError saying why.
   */
  authorize(call: CallCredentials): Principal | Promise<Principal> {
    return this.authorizedNow(call) ?? this.authorizeAsync(call);
  }

  /** The synchronous path of {@link authorize}: undefined unless the call is surely allowed. */
  private authorizedNow(call: CallCredentials): Principal | undefined {
    const required = this.scopesFor(call.methodPath);
    if (!required || !this.verifier) return undefined;
    const header = call.metadata.get('authorization')[0];
    // The common spelling only; anything else takes the full parse below. A hit is a token this
    // verifier verified (the exact string, signature included) and whose cache entry is still valid.
    if (typeof header !== 'string' || !header.startsWith('Bearer ')) return undefined;
    const principal = this.verifier.cached(header.slice(7));
    if (!principal || !this.failures.surelyAllowed(call.address)) return undefined;
    for (const scope of required) if (!principal.scopes.has(scope)) return undefined;
    return principal;
  }

  private async authorizeAsync(call: CallCredentials): Promise<Principal> {
    const required = this.scopesFor(call.methodPath);
    if (!required) throw new GantryError(Status.PERMISSION_DENIED, `${call.methodPath} has no scope declaration; refusing by default`);
    const host = peerHost(call.address);
    await this.failures.assertAllowed(host);
    let principal: Principal;
    try {
      principal = await this.authenticate(call);
    } catch (err) {
      if (err instanceof GantryError && err.code === Status.UNAUTHENTICATED) await this.failures.recordFailure(host);
      throw err;
    }
    const missing = required.filter((s) => !principal.scopes.has(s));
    if (missing.length > 0) {
      throw new GantryError(Status.PERMISSION_DENIED, `${call.methodPath} needs scope ${missing.join(', ')}; ${principal.workload ? 'workload' : 'the token of'} ${principal.subject} lacks it`);
    }
    return principal;
  }

  private async authenticate(call: CallCredentials): Promise<Principal> {
    const header = call.metadata.get('authorization')[0];
    if (typeof header !== 'string' || header.length === 0) return workloadPrincipal(this.workloads, call.peer());
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new GantryError(Status.UNAUTHENTICATED, "malformed authorization metadata: expected 'Bearer <jwt>'");
    if (!this.verifier) throw new GantryError(Status.UNAUTHENTICATED, 'this installation accepts no tokens: it has no token issuer configured (auth.jwksUrl or auth.jwksFile)');
    try {
      return await this.verifier.verify(match[1]!);
    } catch (err) {
      if (err instanceof TokenError) throw new GantryError(Status.UNAUTHENTICATED, `invalid token: ${err.message}`);
      throw err;
    }
  }
}

/**
 * Sets the call's principal. The server decided it on the call's metadata before reading its body
 * (server/admission.ts); this replays that decision inside the middleware chain, so a refusal is
 * traced, logged and answered like any other error. A call the server did not admit (a service
 * bound without it) is authorized here.
 */
export function authMiddleware(auth: Authenticator): Middleware {
  const authorizeThen = async (ctx: CallContext, next: Next) => {
    ctx.principal = await auth.authorize({ methodPath: ctx.method.path, metadata: ctx.metadata, address: ctx.peer.address, peer: () => ctx.peer });
    await next(ctx);
  };
  // Not async: replaying an admission costs no promise of its own.
  return (ctx, next) => {
    const admitted = admissionOf(ctx.metadata);
    if (!admitted) return authorizeThen(ctx, next);
    if ('refused' in admitted) return Promise.reject(admitted.refused);
    ctx.principal = admitted.principal;
    return next(ctx);
  };
}
