// The SSRF guard: which addresses, schemes and ports a delivery may connect to.
//
// - Public unicast addresses, over https, on an allowed port (webhooks.allowedPorts, 443 and 8443
//   by default). Plain http only to allow-listed targets.
// - Everything else (loopback, private, link-local with the cloud metadata services, carrier-grade
//   NAT, unique-local, multicast, reserved…) is refused, unless an allow-list entry that applies to
//   the endpoint covers it (then any scheme and port).
// - IPv6 forms that carry an IPv4 address are judged by what they carry: IPv4-mapped
//   (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96), NAT64
//   (64:ff9b::/96), 6to4 (2002::/16, the relay's address) and Teredo (2001::/32, both its server's
//   and its client's address): `[::127.0.0.1]` is loopback. Local-use NAT64 (64:ff9b:1::/48) is a
//   site's own translator and never public.
// - An allow-list entry is `<cidr>` or `<owner>=<cidr>`. An owner's entry applies to that owner's
//   endpoints only; an unqualified one only to endpoints whose internal target an administrator
//   (webhooks.admin) or a platform workload registered. Nobody else can aim at, probe or read the
//   answers of an allow-listed range.
import ipaddr from 'ipaddr.js';

export type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** One allow-list entry: the range and, when qualified, the one owner it applies to. */
export interface AllowEntry {
  /** Its position in webhooks.allowedCidrs: agents are pooled by the entries that apply. */
  index: number;
  net: [Address, number];
  owner: string | undefined;
}

/** Where a request goes, besides its address. */
export interface Target {
  scheme: 'http' | 'https';
  port: number;
}

/** Whom an endpoint belongs to, and whether its internal target was approved (by an admin or a platform workload). */
export interface Reach {
  owner: string;
  internalApproved: boolean;
}

/** Ports public targets may use unless configured otherwise. */
export const DEFAULT_ALLOWED_PORTS: readonly number[] = [443, 8443];

const [LOCAL_NAT64, LOCAL_NAT64_BITS] = ipaddr.IPv6.parseCIDR('64:ff9b:1::/48');

const v4 = (hi: number, lo: number) => new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);

/**
 * The IPv4 addresses an IPv6 address carries (undefined: none). Local-use NAT64 carries one at a
 * place that depends on the site's prefix length: [] (unknown, judged non-public).
 */
export function embeddedIPv4(a: ipaddr.IPv6): ipaddr.IPv4[] | undefined {
  const p = a.parts as [number, number, number, number, number, number, number, number];
  switch (a.range()) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return [v4(p[6], p[7])];
    case 'rfc6052':
      return a.match(LOCAL_NAT64, LOCAL_NAT64_BITS) ? [] : [v4(p[6], p[7])];
    case '6to4':
      return [v4(p[1], p[2])];
    case 'teredo':
      // The Teredo server, and the client's public address (stored with its bits inverted).
      return [v4(p[2], p[3]), v4(p[6] ^ 0xffff, p[7] ^ 0xffff)];
    case 'unicast':
      // IPv4-compatible (::a.b.c.d, deprecated): ipaddr.js calls it unicast.
      return p.slice(0, 6).every((x) => x === 0) ? [v4(p[6], p[7])] : undefined;
    default:
      return undefined;
  }
}

/** The range that decides whether `addr` is public ('unicast'), and the carried IPv4 address that decided it. */
export function effectiveRange(addr: Address): { range: string; carried?: string } {
  if (addr.kind() === 'ipv4') return { range: addr.range() };
  const own = addr.range();
  if (own === 'loopback' || own === 'unspecified') return { range: own };
  const carried = embeddedIPv4(addr as ipaddr.IPv6);
  if (!carried) return { range: own };
  if (carried.length === 0) return { range: 'local-use NAT64 (64:ff9b:1::/48)' };
  for (const c of carried) {
    const r = c.range();
    if (r !== 'unicast') return { range: r, carried: c.toString() };
  }
  return { range: 'unicast' };
}

/** Parses `<cidr>` or `<owner>=<cidr>` entries; throws naming the bad one. */
export function parseAllowList(entries: readonly string[]): AllowEntry[] {
  return entries.map((entry, index) => {
    const eq = entry.lastIndexOf('=');
    const owner = eq === -1 ? undefined : entry.slice(0, eq).trim();
    const cidr = (eq === -1 ? entry : entry.slice(eq + 1)).trim();
    if (owner === '') throw new Error(`webhooks.allowedCidrs: ${JSON.stringify(entry)} names no owner before "="; write <cidr> or <owner>=<cidr>`);
    try {
      return { index, net: ipaddr.parseCIDR(cidr), owner };
    } catch {
      throw new Error(`webhooks.allowedCidrs: ${JSON.stringify(entry)} is not <cidr> or <owner>=<cidr> (e.g. 10.1.2.3/32, spiffe://gantry.local/operator=10.0.0.0/8)`);
    }
  });
}

export class AddressGuard {
  private readonly entries: AllowEntry[];
  private readonly ports: ReadonlySet<number>;

  /** Throws naming the bad entry when an allow-list entry does not parse. */
  constructor(allowedCidrs: readonly string[], allowedPorts: readonly number[] = DEFAULT_ALLOWED_PORTS) {
    this.entries = parseAllowList(allowedCidrs);
    this.ports = new Set(allowedPorts);
  }

  /** The allow-list entries an endpoint may use: its owner's, and the unqualified ones once its internal target was approved. */
  allowance(reach: Reach): readonly AllowEntry[] {
    return this.entries.filter((e) => (e.owner === undefined ? reach.internalApproved : e.owner === reach.owner));
  }

  /** Why `ip` may not be reached for `target` under `allowance`, or undefined when it may. */
  refusal(ip: string, target: Target, allowance: readonly AllowEntry[]): string | undefined {
    if (!ipaddr.isValid(ip)) return `${ip} is not an IP address`;
    const addr = ipaddr.process(ip);
    if (allowance.some(({ net: [net, bits] }) => net.kind() === addr.kind() && addr.match(net, bits))) return undefined;
    const { range, carried } = effectiveRange(addr);
    if (range !== 'unicast') {
      const via = carried ? ` (it carries ${carried})` : '';
      return `${ip} is a ${range} address${via}; deliveries go only to public addresses (allow-list it in webhooks.allowedCidrs if this is intended)`;
    }
    if (target.scheme === 'http') return `${ip} is a public address: plain http goes only to allow-listed targets; use https`;
    if (!this.ports.has(target.port)) return `port ${target.port} is not open to public targets; use ${[...this.ports].join(' or ')} (webhooks.allowedPorts)`;
    return undefined;
  }
}

/** The IP in a URL's hostname (brackets of IPv6 removed), or undefined for a DNS name. */
export function ipLiteral(hostname: string): string | undefined {
  const h = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return ipaddr.isValid(h) && (ipaddr.IPv4.isValidFourPartDecimal(h) || h.includes(':')) ? h : undefined;
}

/** The scheme and port of a delivery URL (the scheme's default port when none is given). */
export function targetOf(url: URL): Target {
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  return { scheme, port: url.port ? Number(url.port) : scheme === 'https' ? 443 : 80 };
}
