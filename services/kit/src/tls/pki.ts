// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 3600 * 1000;

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface CertificateAuthority extends PemPair {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

/** Workload identity of a leaf certificate: its name goes in a SPIFFE-style URI SAN. */
export const spiffeId = (name: string, trustDomain = 'gantry.local') => `spiffe://${trustDomain}/${name}`;

async function keyPem(key: CryptoKey): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
}

function serial(): string {
  // Positive 16-byte serial: the high bit cleared so DER keeps it non-negative.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

/** A self-signed CA for one installation. */
export async function createCa(commonName: string, validDays = 3650, now = new Date()): Promise<CertificateAuthority> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + validDays * DAY_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys, certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/** A CA from its PEM certificate and PKCS#8 private key (the dev PKI's `ca.crt` and `ca.key`), to issue more leaves. */
export async function loadCa(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const der = x509.PemConverter.decode(keyPem)[0];
  if (!der) throw new Error('the CA key PEM holds no key');
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign']);
  const publicKey = await cert.publicKey.export(ALG, ['verify']);
  return { cert, keys: { privateKey, publicKey }, certPem, keyPem };
}

export interface LeafOptions {
  /** Becomes the CN, and the SPIFFE ID's name unless `workload` is given. */
  name: string;
  /** The workload the certificate identifies: its URI SAN is `spiffe://<trustDomain>/<workload>`. */
  workload?: string;
  trustDomain?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  usage: 'server' | 'client' | 'both';
  validDays?: number;
  now?: Date;
}

/** A leaf certificate signed by `ca`, for a server, a client, or both (services call each other). */
export async function issueLeaf(ca: CertificateAuthority, opts: LeafOptions): Promise<PemPair> {
  const now = opts.now ?? new Date();
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const usages: string[] = [];
  if (opts.usage !== 'client') usages.push(x509.ExtendedKeyUsage.serverAuth);
  if (opts.usage !== 'server') usages.push(x509.ExtendedKeyUsage.clientAuth);
  const san = [
    { type: 'url' as const, value: spiffeId(opts.workload ?? opts.name, opts.trustDomain) },
    ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.name}`,
    issuer: ca.cert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (opts.validDays ?? 365) * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension(usages, false),
      new x509.SubjectAlternativeNameExtension(san, false),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

export interface DevPkiPaths {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The dev operator's identity (workload `operator`). */
  operatorCertFile: string;
  operatorKeyFile: string;
  /** The dev HTTP gateway's identity (workload `gateway`, granted nothing: it calls with its callers' tokens). */
  gatewayCertFile: string;
  gatewayKeyFile: string;
}

export function devPkiPaths(dir: string): DevPkiPaths {
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    serverCertFile: join(dir, 'server.crt'),
    serverKeyFile: join(dir, 'server.key'),
    clientCertFile: join(dir, 'client.crt'),
    clientKeyFile: join(dir, 'client.key'),
    operatorCertFile: join(dir, 'operator.crt'),
    operatorKeyFile: join(dir, 'operator.key'),
    gatewayCertFile: join(dir, 'gateway.crt'),
    gatewayKeyFile: join(dir, 'gateway.key'),
  };
}

async function writeSecret(path: string, pem: string): Promise<void> {
  await writeFile(path, pem, { mode: 0o600 });
  await chmod(path, 0o600);
}

/**
 * Creates a local PKI (CA, a server cert for localhost, a client cert named `dev-client`) unless one
 * is already there. For local use only; clusters get certificates from cert-manager or the chart.
 * Returns the paths and whether it created them.
 */
export async function ensureDevPki(dir: string, opts: { force?: boolean } = {}): Promise<{ paths: DevPkiPaths; created: boolean }> {
  const paths = devPkiPaths(dir);
  // A dev PKI of an older version (no operator or gateway identity) is made again, with workload IDs.
  const complete = Object.values(paths).every(existsSync);
  if (complete && !opts.force) return { paths, created: false };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await createCa('Gantry dev CA');
  // The embedded process calls itself (its event relay) as the workload `all`, which owns every family.
  const server = await issueLeaf(ca, {
    name: 'gantry-server',
    workload: 'all',
    dnsNames: ['localhost', '*.gantry.svc', '*.gantry.svc.cluster.local'],
    ipAddresses: ['127.0.0.1', '::1'],
    usage: 'both',
  });
  const client = await issueLeaf(ca, { name: 'dev-client', usage: 'client' });
  const operator = await issueLeaf(ca, { name: 'operator', usage: 'client' });
  const gateway = await issueLeaf(ca, { name: 'gateway', usage: 'client' });
  await writeFile(paths.caFile, ca.certPem);
  await writeSecret(join(dir, 'ca.key'), ca.keyPem);
  await writeFile(paths.serverCertFile, server.certPem);
  await writeSecret(paths.serverKeyFile, server.keyPem);
  await writeFile(paths.clientCertFile, client.certPem);
  await writeSecret(paths.clientKeyFile, client.keyPem);
  await writeFile(paths.operatorCertFile, operator.certPem);
  await writeSecret(paths.operatorKeyFile, operator.keyPem);
  await writeFile(paths.gatewayCertFile, gateway.certPem);
  await writeSecret(paths.gatewayKeyFile, gateway.keyPem);
  return { paths, created: true };
}
