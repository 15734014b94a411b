import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, type JsonWebKey } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import jwksRsa from 'jwks-rsa';

/** Asymmetric algorithms accepted from a JWKS; HS* is never accepted from a JWKS (no HS/RS confusion). */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'PS256', 'ES256'] as const;
export type Algorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

export interface VerificationKey {
  key: KeyObject;
  /** The only algorithm this key may verify. */
  algorithm: Algorithm;
}

/** Finds the key for a token header; throws with a reason when there is none. */
export interface KeySource {
  readonly algorithms: readonly Algorithm[];
  keyFor(kid: string | undefined, alg: string): Promise<VerificationKey>;
  close(): void;
}

function algorithmForJwk(jwk: JsonWebKey & { alg?: string }): Algorithm | undefined {
  if (jwk.alg) return (ASYMMETRIC_ALGORITHMS as readonly string[]).includes(jwk.alg) ? (jwk.alg as Algorithm) : undefined;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  return undefined;
}

function parseJwks(text: string, origin: string): Map<string, VerificationKey> {
  let doc: { keys?: (JsonWebKey & { kid?: string; alg?: string; use?: string })[] };
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`JWKS ${origin} is not valid JSON: ${(err as Error).message}`);
  }
  const keys = new Map<string, VerificationKey>();
  for (const jwk of doc.keys ?? []) {
    if (!jwk.kid || (jwk.use && jwk.use !== 'sig')) continue;
    const algorithm = algorithmForJwk(jwk);
    if (!algorithm) continue;
    keys.set(jwk.kid, { key: createPublicKey({ key: jwk, format: 'jwk' }), algorithm });
  }
  if (keys.size === 0) throw new Error(`JWKS ${origin} has no usable signing keys (need kid and RS256/PS256/ES256)`);
  return keys;
}

function unknownKid(kid: string | undefined): Error {
  return new Error(kid ? `unknown signing key id "${kid}"` : 'token header has no kid');
}

/** A JWKS file, re-read when it changes (a mounted Secret rotates in place). */
export class JwksFileSource implements KeySource {
  readonly algorithms = ASYMMETRIC_ALGORITHMS;
  private keys: Map<string, VerificationKey>;
  private mtimeMs: number;
  private lastCheckMs = 0;

  constructor(private readonly path: string, private readonly recheckIntervalMs = 2000) {
    this.mtimeMs = statSync(path).mtimeMs;
    this.keys = parseJwks(readFileSync(path, 'utf8'), path);
  }

  private maybeReload(nowMs: number): void {
    if (nowMs - this.lastCheckMs < this.recheckIntervalMs) return;
    this.lastCheckMs = nowMs;
    const mtimeMs = statSync(this.path).mtimeMs;
    if (mtimeMs === this.mtimeMs) return;
    this.keys = parseJwks(readFileSync(this.path, 'utf8'), this.path);
    this.mtimeMs = mtimeMs;
  }

  async keyFor(kid: string | undefined): Promise<VerificationKey> {
    let found = kid ? this.keys.get(kid) : undefined;
    if (!found) {
      // An unknown kid may be a key rotated in moments ago: look at the file again (throttled).
      this.maybeReload(Date.now());
      found = kid ? this.keys.get(kid) : undefined;
    }
    if (!found) throw unknownKid(kid);
    return found;
  }

  close(): void {}
}

/** A JWKS URL through jwks-rsa: cached, refetched (rate limited) when an unknown kid appears. */
export class JwksUrlSource implements KeySource {
  readonly algorithms = ASYMMETRIC_ALGORITHMS;
  private readonly client: jwksRsa.JwksClient;

  constructor(url: string) {
    // The config refuses http too; this guards every other way a URL reaches here.
    if (new URL(url).protocol !== 'https:') throw new Error(`JWKS URL ${url} is not https: keys fetched over plain http could be replaced on the way`);
    this.client = jwksRsa({ jwksUri: url, cache: true, cacheMaxAge: 10 * 60_000, rateLimit: true, jwksRequestsPerMinute: 10, timeout: 5000 });
  }

  async keyFor(kid: string | undefined, alg: string): Promise<VerificationKey> {
    if (!kid) throw unknownKid(kid);
    const signingKey = await this.client.getSigningKey(kid);
    const algorithm = (signingKey.alg as Algorithm | undefined) ?? (alg.startsWith('ES') ? 'ES256' : 'RS256');
    return { key: createPublicKey(signingKey.getPublicKey()), algorithm };
  }

  close(): void {}
}

export interface DevSigningKey {
  kid: string;
  privateKey: KeyObject;
  jwksFile: string;
}

/** The kid of a dev key: a digest of its public JWK (`gantry dev-key import` and the keys Job derive it alike). */
export function devKeyId(jwk: JsonWebKey): string {
  return createHash('sha256').update(JSON.stringify([jwk.crv, jwk.kty, jwk.x, jwk.y])).digest('base64url').slice(0, 16);
}

/** The JWKS that trusts a dev key's public half, as every verifier of dev tokens reads it. */
export function devJwks(publicJwk: JsonWebKey): { kid: string; text: string } {
  const kid = devKeyId(publicJwk);
  return { kid, text: JSON.stringify({ keys: [{ ...publicJwk, kid, alg: 'ES256', use: 'sig' }] }, null, 2) };
}

/**
 * An ES256 signing key for local use: the private key for `gantry token`, the public half as a
 * JWKS file the server verifies with. Created once under `dir`.
 */
export async function ensureDevSigningKey(dir: string): Promise<DevSigningKey> {
  const keyFile = join(dir, 'signing-key.pem');
  const jwksFile = join(dir, 'jwks.json');
  if (!existsSync(keyFile) || !existsSync(jwksFile)) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 });
    await chmod(keyFile, 0o600);
    await writeFile(jwksFile, devJwks(publicKey.export({ format: 'jwk' })).text);
  }
  const privateKey = createPrivateKey(readFileSync(keyFile));
  const kid = (JSON.parse(readFileSync(jwksFile, 'utf8')) as { keys: { kid: string }[] }).keys[0]!.kid;
  return { kid, privateKey, jwksFile };
}
