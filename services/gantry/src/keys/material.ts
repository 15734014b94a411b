// Key material `gantry keys ensure` makes, and the checks that say when a certificate must be
// issued again. Pure apart from randomness and the clock, which callers pass in.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { createCa, devJwks, issueLeaf, loadCa, spiffeId, type CertificateAuthority } from '@gantry/kit';
import type { LeafPlan } from './plan.js';

const DAY_MS = 24 * 3600 * 1000;

/** The CA in a Secret's PEMs, or why it cannot sign (a Helm-generated RSA CA of an older chart). */
export async function usableCa(certPem: string | undefined, keyPem: string | undefined): Promise<CertificateAuthority | string> {
  if (!certPem || !keyPem) return 'the CA Secret has no tls.crt and tls.key';
  try {
    return await loadCa(certPem, keyPem);
  } catch (err) {
    return `the CA cannot sign workload certificates (${(err as Error).message}); an EC P-256 CA replaces it`;
  }
}

export function newCa(commonName: string, days: number, now: Date): Promise<CertificateAuthority> {
  return createCa(commonName, days, now);
}

/** Why the leaf in `certPem` must be issued again, or undefined when it is fine as it is. */
export function leafReissueReason(certPem: string | undefined, ca: CertificateAuthority, want: LeafPlan, opts: { trustDomain: string; renewBeforeDays: number; now: Date }): string | undefined {
  if (!certPem) return 'there is none';
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return 'tls.crt is not a certificate';
  }
  if (!cert.verify(new X509Certificate(ca.certPem).publicKey)) return 'it was not signed by the current CA';
  const sans = (cert.subjectAltName ?? '').split(/,\s*/);
  const expected = [`URI:${spiffeId(want.workload, opts.trustDomain)}`, ...want.dnsNames.map((d) => `DNS:${d}`)];
  const missing = expected.filter((s) => !sans.includes(s));
  if (missing.length > 0) return `it lacks ${missing.join(', ')}`;
  const leftMs = Date.parse(cert.validTo) - opts.now.getTime();
  if (leftMs < opts.renewBeforeDays * DAY_MS) return `it expires ${cert.validTo}, within renewBeforeDays (${opts.renewBeforeDays})`;
  return undefined;
}

export function newLeaf(ca: CertificateAuthority, want: LeafPlan, opts: { trustDomain: string; certDays: number; now: Date }) {
  return issueLeaf(ca, { name: want.commonName, workload: want.workload, trustDomain: opts.trustDomain, dnsNames: want.dnsNames, usage: want.usage, validDays: opts.certDays, now: opts.now });
}

/** An Ed25519 private key, PKCS#8 PEM: the log's checkpoint signing key. */
export function newEd25519Pem(): string {
  return generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
}

/** A webhooks key ring of one 32-byte key, in the format the webhooks service reads. */
export function newKeyRing(): string {
  return `k1=${randomBytes(32).toString('base64')}\n`;
}

/** A development issuer's ES256 private key, PKCS#8 PEM. */
export function newEs256Pem(): string {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
}

/** The JWKS of an ES256 private key's public half, as every pod trusts it (kid as the kit derives it). */
export function jwksOf(keyPem: string): string {
  return devJwks(createPublicKey(createPrivateKey(keyPem)).export({ format: 'jwk' })).text;
}
