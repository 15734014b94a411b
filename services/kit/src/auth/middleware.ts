import { GantryError, Status } from '../errors.js';
import type { CallContext, Middleware } from '../rpc/context.js';
import { TokenError, type Principal, type TokenVerifier } from './jwt.js';
import type { WorkloadDirectory } from './workload.js';

/** Scopes needed by a method path; undefined means the method is not in any table (refused). */
export type ScopeLookup = (methodPath: string) => readonly string[] | undefined;

/** The caller of a token-less call: a granted workload by its certificate, else nobody. */
function workloadPrincipal(workloads: WorkloadDirectory, peer: CallContext['peer']): Principal {
  const principal = workloads.principalFor(peer);
  if (principal) return principal;
  const name = workloads.workloadOf(peer);
  const hint = name ? `; the certificate's workload ${name} has no grant here (auth.workloads)` : '';
  throw new GantryError(Status.UNAUTHENTICATED, `missing bearer token: send metadata 'authorization: Bearer <jwt>' (a dev token: gantry token --scope ...)${hint}`);
}

/**
 * Authenticates every call: a bearer token (people, external callers), or for a call without one
 * a platform workload's certificate (auth/workload.ts). No credential or a bad one:
 * UNAUTHENTICATED; a caller without the method's scopes: PERMISSION_DENIED.
 */
export function authMiddleware(verifier: TokenVerifier | undefined, workloads: WorkloadDirectory, scopesFor: ScopeLookup): Middleware {
  return async (ctx, next) => {
    const required = scopesFor(ctx.method.path);
    if (!required) throw new GantryError(Status.PERMISSION_DENIED, `${ctx.method.path} has no scope declaration; refusing by default`);
    const header = ctx.metadata.get('authorization')[0];
    if (typeof header !== 'string' || header.length === 0) {
      ctx.principal = workloadPrincipal(workloads, ctx.peer);
    } else {
      const match = /^Bearer\s+(\S+)$/i.exec(header);
      if (!match) throw new GantryError(Status.UNAUTHENTICATED, "malformed authorization metadata: expected 'Bearer <jwt>'");
      if (!verifier) throw new GantryError(Status.UNAUTHENTICATED, 'this installation accepts no tokens: it has no token issuer configured (auth.jwksUrl or auth.jwksFile)');
      try {
        ctx.principal = await verifier.verify(match[1]!);
      } catch (err) {
        if (err instanceof TokenError) throw new GantryError(Status.UNAUTHENTICATED, `invalid token: ${err.message}`);
        throw err;
      }
    }
    const missing = required.filter((s) => !ctx.principal!.scopes.has(s));
    if (missing.length > 0) {
      throw new GantryError(Status.PERMISSION_DENIED, `${ctx.method.path} needs scope ${missing.join(', ')}; ${ctx.principal.workload ? 'workload' : 'the token of'} ${ctx.principal.subject} lacks it`);
    }
    await next();
  };
}
