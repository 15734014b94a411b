// One HTTP attempt to an endpoint through undici. The SSRF guard (domain/address-guard.ts) runs in
// the connection itself: the connector resolves the name, refuses it when any of its addresses is
// refused, and checks the peer address of the socket once connected, before a byte of the request
// is written. So the address checked is the address connected to, whatever resolved it: a name
// that resolved to a public address at registration and to 127.0.0.1 now (DNS rebinding) is
// refused here. Connections are kept alive and pooled per origin (undici's Agent holds a Pool per
// origin) within a pool per address policy: one shared pool for endpoints that may reach public
// addresses only (the same check for everyone), and one per owner and set of allow-list entries
// that apply, so a connection opened for one owner's allow-listed target never serves another
// owner, nor an endpoint without that allowance. Every connection is checked when it is made, and
// a connection stays with the address it was checked at. Redirects are not followed.
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { Agent, buildConnector, request } from 'undici';
import { ipLiteral, targetOf, type AddressGuard, type AllowEntry, type Reach, type Target } from '../domain/address-guard.js';

/** Resolves a host name to its addresses (tests pass a fake one). */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** Bytes of a response body kept for the history (public targets only). */
export const RESPONSE_EXCERPT_BYTES = 1024;
/** Bounds of the sender's connection pools (config.ts documents each). */
export interface PoolLimits {
  connectionsPerOrigin: number;
  maxPools: number;
  maxOriginsPerPool: number;
}

export class RefusedAddressError extends Error {
  readonly code = 'ERR_WEBHOOK_REFUSED_ADDRESS';
}

export interface HttpResult {
  /** 0 when there was no response. */
  status: number;
  error: string;
  bodyExcerpt: string;
  retryAfter: string | undefined;
  latencyMs: number;
}

/** The addresses of `hostname` (an IP literal is its own), without judging them. */
export async function addressesOf(resolver: Resolver, hostname: string): Promise<LookupAddress[]> {
  const literal = ipLiteral(hostname);
  const addresses = literal ? [{ address: literal, family: literal.includes(':') ? 6 : 4 }] : await resolver(hostname);
  if (addresses.length === 0) throw new Error(`${hostname} has no addresses`);
  return addresses;
}

/** The addresses of `hostname`, every one checked; throws RefusedAddressError on the first refused one. */
export async function resolveChecked(resolver: Resolver, refusal: (ip: string) => string | undefined, hostname: string): Promise<LookupAddress[]> {
  const addresses = await addressesOf(resolver, hostname);
  for (const a of addresses) {
    const why = refusal(a.address);
    // Any refused address refuses the name: connecting would pick among them.
    if (why) throw new RefusedAddressError(`refused address: ${hostname} resolves to ${why}`);
  }
  return addresses;
}

/** The pool an endpoint's attempts use: the public one, or its owner's for the allow-list entries that apply to it. */
export function poolKey(reach: Reach, allowance: readonly AllowEntry[]): string {
  return allowance.length === 0 ? 'public' : `${JSON.stringify(reach.owner)} ${allowance.map((e) => e.index).join(',')}`;
}

export class HttpSender {
  /** Agents by poolKey, least recently used first (bounded by limits.maxPools). */
  private readonly agents = new Map<string, Agent>();
  private readonly connect: buildConnector.connector;

  constructor(
    private readonly guard: AddressGuard,
    private readonly resolver: Resolver,
    private readonly timeoutMs: number,
    private readonly limits: PoolLimits,
  ) {
    this.connect = buildConnector({ timeout: timeoutMs });
  }

  /** A connector that lets a socket through only to addresses `allowance` permits for its scheme and port. */
  private guardedConnector(allowance: readonly AllowEntry[]): buildConnector.connector {
    return (opts, callback) => {
      const target: Target = targetOf(new URL(`${opts.protocol}//${opts.host ?? opts.hostname}`));
      const refusal = (ip: string) => this.guard.refusal(ip, target, allowance);
      resolveChecked(this.resolver, refusal, opts.hostname).then(
        (addresses) => {
          // undici still names the host for TLS (SNI, certificate) from opts.host.
          this.connect({ ...opts, hostname: addresses[0]!.address }, (err, socket) => {
            if (err) return callback(err, null);
            const peer = socket!.remoteAddress;
            const why = peer === undefined ? 'an unknown address' : refusal(peer);
            if (!why) return callback(null, socket!);
            socket!.destroy();
            callback(new RefusedAddressError(`refused address: ${opts.hostname} connected to ${why}`), null);
          });
        },
        (err: Error) => callback(err, null),
      );
    };
  }

  private agentFor(reach: Reach, allowance: readonly AllowEntry[]): Agent {
    const key = poolKey(reach, allowance);
    let agent = this.agents.get(key);
    if (agent) {
      // Most recently used last.
      this.agents.delete(key);
      this.agents.set(key, agent);
      return agent;
    }
    agent = new Agent({
      connect: this.guardedConnector(allowance),
      connections: this.limits.connectionsPerOrigin,
      maxOrigins: this.limits.maxOriginsPerPool,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    this.agents.set(key, agent);
    if (this.agents.size > this.limits.maxPools) {
      const [oldestKey, oldest] = this.agents.entries().next().value!;
      this.agents.delete(oldestKey);
      // close() lets the requests it has finish; new ones go to a new agent.
      void oldest.close().catch(() => undefined);
    }
    return agent;
  }

  /** Pools open now (tests). */
  get pools(): number {
    return this.agents.size;
  }

  /**
   * POSTs `body` for an endpoint that `reach` describes; never throws: failures come back as
   * status 0 with an error. The answer's excerpt is kept only when the endpoint can reach nothing
   * but public addresses: an allow-listed internal service's answers are not for the history.
   */
  async post(url: string, headers: Record<string, string>, body: Buffer, signal: AbortSignal, reach: Reach): Promise<HttpResult> {
    const started = performance.now();
    const latency = () => Math.round(performance.now() - started);
    const allowance = this.guard.allowance(reach);
    try {
      const parsed = new URL(url);
      const literal = ipLiteral(parsed.hostname);
      const why = literal ? this.guard.refusal(literal, targetOf(parsed), allowance) : undefined;
      if (why) throw new RefusedAddressError(`refused address: ${why}`);
      // undici follows no redirects unless told to: a 3xx is a failed attempt, never a hop elsewhere.
      const res = await request(url, { method: 'POST', headers, body, dispatcher: this.agentFor(reach, allowance), signal });
      let excerpt = '';
      if (allowance.length === 0) excerpt = await readExcerpt(res.body);
      else await res.body.dump({ limit: RESPONSE_EXCERPT_BYTES });
      if (!res.body.readableEnded) res.body.destroy();
      const retryAfter = res.headers['retry-after'];
      return { status: res.statusCode, error: '', bodyExcerpt: excerpt, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, latencyMs: latency() };
    } catch (err) {
      return { status: 0, error: describe(err, signal), bodyExcerpt: '', retryAfter: undefined, latencyMs: latency() };
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.destroy()));
  }
}

/** The first RESPONSE_EXCERPT_BYTES of a body, read no further (a large or endless body is not needed). */
async function readExcerpt(body: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  let kept = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    if (kept < RESPONSE_EXCERPT_BYTES) chunks.push(b.subarray(0, RESPONSE_EXCERPT_BYTES - kept));
    kept += b.length;
    if (kept >= RESPONSE_EXCERPT_BYTES) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A short, secret-free description of a failed request. */
function describe(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return signal.reason instanceof Error ? signal.reason.message : 'attempt aborted';
  let e = err as (Error & { code?: string; cause?: unknown }) | undefined;
  // undici wraps connection errors; the cause says what happened.
  while (e?.cause instanceof Error && !(e instanceof RefusedAddressError)) e = e.cause as Error & { code?: string };
  if (e instanceof RefusedAddressError) return e.message;
  const message = e?.message ?? String(err);
  return e?.code && !message.includes(e.code) ? `${e.code}: ${message}` : message;
}
