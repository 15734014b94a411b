import type { PeerCertificate } from 'node:tls';

/** Who is on the other end of the TLS connection, from its verified client certificate. */
export interface PeerIdentity {
  /** Remote address as grpc-js reports it. */
  address: string;
  /** URI SANs, e.g. spiffe://gantry.local/settlement: the workload identity. */
  uris: string[];
  dnsNames: string[];
  commonName: string | undefined;
  /** When the certificate expires (its notAfter), if there is one. */
  validToMs?: number;
}

/** Parses Node's `subjectaltname` string ("DNS:a, URI:spiffe://x/y, IP Address:1.2.3.4"). */
export function parseSubjectAltName(san: string | undefined): { uris: string[]; dnsNames: string[] } {
  const uris: string[] = [];
  const dnsNames: string[] = [];
  for (const part of (san ?? '').split(/,\s*/)) {
    if (part.startsWith('URI:')) uris.push(part.slice(4));
    else if (part.startsWith('DNS:')) dnsNames.push(part.slice(4));
  }
  return { uris, dnsNames };
}

export function peerIdentity(address: string, cert: PeerCertificate | undefined | null): PeerIdentity {
  const hasCert = cert && Object.keys(cert).length > 0;
  const { uris, dnsNames } = parseSubjectAltName(hasCert ? cert.subjectaltname : undefined);
  const cn = hasCert ? cert.subject?.CN : undefined;
  const validToMs = hasCert && cert.valid_to ? Date.parse(cert.valid_to) : Number.NaN;
  return { address, uris, dnsNames, commonName: Array.isArray(cn) ? cn[0] : cn, ...(Number.isFinite(validToMs) ? { validToMs } : {}) };
}

/** The short workload name for logs and rate-limit keys: the spiffe path, else the CN. */
export function workloadName(peer: PeerIdentity): string | undefined {
  const spiffe = peer.uris.find((u) => u.startsWith('spiffe://'));
  if (spiffe) return new URL(spiffe).pathname.replace(/^\//, '');
  return peer.commonName;
}
