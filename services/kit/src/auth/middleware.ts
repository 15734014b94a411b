import { GantryError, Status } from '../errors.js';
import type { Middleware } from '../rpc/context.js';
import { TokenError, type TokenVerifier } from './jwt.js';

/** Scopes needed by a method path; undefined means the method is not in any table (refused). */
export type ScopeLookup = (methodPath: string) => readonly string[] | undefined;

/**
 * Requires a valid bearer token carrying the method's scopes. No token or a bad one:
 * UNAUTHENTICATED; a good token without the scopes: PERMISSION_DENIED.
 */
export function authMiddleware(verifier: TokenVerifier, scopesFor: ScopeLookup): Middleware {
  return async (ctx, next) => {
    const required = scopesFor(ctx.method.path);
    if (!required) throw new GantryError(Status.PERMISSION_DENIED, `${ctx.method.path} has no scope declaration; refusing by default`);
    const header = ctx.metadata.get('authorization')[0];
    if (typeof header !== 'string' || header.length === 0) {
      throw new GantryError(Status.UNAUTHENTICATED, "missing bearer token: send metadata 'authorization: Bearer <jwt>' (a dev token: gantry token --scope ...)");
    }
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new GantryError(Status.UNAUTHENTICATED, "malformed authorization metadata: expected 'Bearer <jwt>'");
    try {
      ctx.principal = await verifier.verify(match[1]!);
    } catch (err) {
      if (err instanceof TokenError) throw new GantryError(Status.UNAUTHENTICATED, `invalid token: ${err.message}`);
      throw err;
    }
    const missing = required.filter((s) => !ctx.principal!.scopes.has(s));
    if (missing.length > 0) {
      throw new GantryError(Status.PERMISSION_DENIED, `${ctx.method.path} needs scope ${missing.join(', ')}; the token of ${ctx.principal.subject} lacks it`);
    }
    await next();
  };
}
