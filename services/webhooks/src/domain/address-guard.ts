// The SSRF guard: which addresses a delivery may connect to. Only public unicast addresses, unless
// an allow-listed CIDR covers them; everything else (loopback, private, link-local with the cloud
// metadata services, carrier-grade NAT, unique-local, multicast, reserved…) is refused. IPv4-mapped
// IPv6 addresses are judged as the IPv4 address they carry.
import ipaddr from 'ipaddr.js';

export type Address = ipaddr.IPv4 | ipaddr.IPv6;

export class AddressGuard {
  private readonly allowed: [Address, number][];

  /** Throws naming the bad entry when a CIDR does not parse. */
  constructor(allowedCidrs: readonly string[]) {
    this.allowed = allowedCidrs.map((c) => {
      try {
        return ipaddr.parseCIDR(c);
      } catch {
        throw new Error(`webhooks.allowedCidrs: ${JSON.stringify(c)} is not a CIDR (e.g. 127.0.0.1/32, 10.0.0.0/8, ::1/128)`);
      }
    });
  }

  /** Why `ip` may not be reached, or undefined when it may. */
  refusal(ip: string): string | undefined {
    if (!ipaddr.isValid(ip)) return `${ip} is not an IP address`;
    const addr = ipaddr.process(ip);
    if (this.allowed.some(([net, bits]) => net.kind() === addr.kind() && addr.match(net, bits))) return undefined;
    const range = addr.range();
    if (range === 'unicast') return undefined;
    return `${ip} is a ${range} address; deliveries go only to public addresses (allow-list it in webhooks.allowedCidrs if this is intended)`;
  }
}

/** The IP in a URL's hostname (brackets of IPv6 removed), or undefined for a DNS name. */
export function ipLiteral(hostname: string): string | undefined {
  const h = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return ipaddr.isValid(h) && (ipaddr.IPv4.isValidFourPartDecimal(h) || h.includes(':')) ? h : undefined;
}
