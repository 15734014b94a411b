// One HTTP attempt to an endpoint through undici, with the SSRF guard in the connection's own DNS
// lookup: the address checked is the address connected to, so a name that resolved to a public
// address at registration and to 127.0.0.1 now (DNS rebinding) is refused here. IP-literal URLs
// never reach a lookup and are checked before the request. Redirects are not followed.
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { Agent, request } from 'undici';
import { ipLiteral, type AddressGuard } from '../domain/address-guard.js';

/** Resolves a host name to its addresses (tests pass a fake one). */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** Bytes of a response body kept for the history. */
export const RESPONSE_EXCERPT_BYTES = 1024;
/** Connections kept open per endpoint origin. */
const CONNECTIONS_PER_ORIGIN = 32;

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

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** The addresses of `hostname`, every one checked; throws RefusedAddressError on the first refused one. */
export async function resolveChecked(resolver: Resolver, guard: AddressGuard, hostname: string): Promise<LookupAddress[]> {
  const literal = ipLiteral(hostname);
  const addresses = literal ? [{ address: literal, family: literal.includes(':') ? 6 : 4 }] : await resolver(hostname);
  if (addresses.length === 0) throw new Error(`${hostname} has no addresses`);
  for (const a of addresses) {
    const why = guard.refusal(a.address);
    // Any refused address refuses the name: connecting would pick among them.
    if (why) throw new RefusedAddressError(`refused address: ${hostname} resolves to ${why}`);
  }
  return addresses;
}

export class HttpSender {
  private readonly agent: Agent;

  constructor(
    private readonly guard: AddressGuard,
    private readonly resolver: Resolver,
    timeoutMs: number,
  ) {
    const lookup = (hostname: string, options: LookupOptions, callback: LookupCallback) => {
      resolveChecked(this.resolver, this.guard, hostname).then(
        (addresses) => {
          if (options.all) callback(null, addresses);
          else callback(null, addresses[0]!.address, addresses[0]!.family);
        },
        (err: Error) => callback(Object.assign(err, { code: (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND' }), ''),
      );
    };
    this.agent = new Agent({ connect: { lookup, timeout: timeoutMs }, connections: CONNECTIONS_PER_ORIGIN, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  }

  /** POSTs `body`; never throws: failures come back as status 0 with an error. */
  async post(url: string, headers: Record<string, string>, body: Buffer, signal: AbortSignal): Promise<HttpResult> {
    const started = performance.now();
    const latency = () => Math.round(performance.now() - started);
    try {
      const literal = ipLiteral(new URL(url).hostname);
      if (literal) {
        const why = this.guard.refusal(literal);
        if (why) throw new RefusedAddressError(`refused address: ${why}`);
      }
      // undici follows no redirects unless told to: a 3xx is a failed attempt, never a hop elsewhere.
      const res = await request(url, { method: 'POST', headers, body, dispatcher: this.agent, signal });
      const chunks: Buffer[] = [];
      let kept = 0;
      for await (const chunk of res.body) {
        const b = chunk as Buffer;
        if (kept < RESPONSE_EXCERPT_BYTES) chunks.push(b.subarray(0, RESPONSE_EXCERPT_BYTES - kept));
        kept += b.length;
        // The rest is not needed; stop reading a large (or endless) body.
        if (kept >= RESPONSE_EXCERPT_BYTES) break;
      }
      if (kept >= RESPONSE_EXCERPT_BYTES) res.body.destroy();
      const retryAfter = res.headers['retry-after'];
      return { status: res.statusCode, error: '', bodyExcerpt: Buffer.concat(chunks).toString('utf8'), retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, latencyMs: latency() };
    } catch (err) {
      return { status: 0, error: describe(err, signal), bodyExcerpt: '', retryAfter: undefined, latencyMs: latency() };
    }
  }

  async close(): Promise<void> {
    await this.agent.destroy();
  }
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
