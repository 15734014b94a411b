import type { PeerIdentity } from '../tls/identity.js';
import type { Principal } from './jwt.js';

/** What a workload identity may do: the scopes of its calls and the event families it owns. */
export interface WorkloadGrant {
  scopes: readonly string[];
  families: readonly string[];
}

/** Workload names are a target's name: lower-case words joined by hyphens. */
export const WORKLOAD_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * Platform components authenticate to each other by their certificate, not by a token: a call
 * without an authorization header from a peer whose certificate carries the SPIFFE ID
 * `spiffe://<trustDomain>/<name>` of a granted workload acts as that workload, with its grant's
 * scopes. No pod therefore needs a key that can mint tokens (docs/security.md). The certificate
 * was verified against the platform CA by the TLS handshake; the CA issues workload IDs only to
 * the pods of those workloads.
 */
export class WorkloadDirectory {
  private readonly prefix: string;

  constructor(
    readonly trustDomain: string,
    private readonly grants: ReadonlyMap<string, WorkloadGrant>,
  ) {
    this.prefix = `spiffe://${trustDomain}/`;
    for (const name of grants.keys()) {
      if (!WORKLOAD_NAME.test(name)) throw new Error(`invalid workload name "${name}": lower-case letters, digits and hyphens, starting with a letter`);
    }
  }

  /** The workload name in a peer's certificate, if it has an ID of this trust domain. */
  workloadOf(peer: PeerIdentity): string | undefined {
    const ids = peer.uris.filter((u) => u.startsWith(this.prefix));
    // A certificate naming two workloads is ambiguous: it is none of them.
    if (ids.length !== 1) return undefined;
    const name = ids[0]!.slice(this.prefix.length);
    return WORKLOAD_NAME.test(name) ? name : undefined;
  }

  /** The principal of a peer calling as a granted workload, or undefined. */
  principalFor(peer: PeerIdentity): Principal | undefined {
    const name = this.workloadOf(peer);
    const grant = name === undefined ? undefined : this.grants.get(name);
    if (!name || !grant) return undefined;
    return {
      subject: `${this.prefix}${name}`,
      scopes: new Set(grant.scopes),
      expiresAtMs: peer.validToMs ?? Number.MAX_SAFE_INTEGER,
      workload: { name, families: new Set(grant.families) },
    };
  }
}

/** Grants merged: `extra` (configuration) replaces a derived grant of the same name. */
export function mergeGrants(derived: ReadonlyMap<string, WorkloadGrant> | undefined, extra: Record<string, WorkloadGrant>): Map<string, WorkloadGrant> {
  return new Map([...(derived ?? new Map<string, WorkloadGrant>()), ...Object.entries(extra)]);
}
