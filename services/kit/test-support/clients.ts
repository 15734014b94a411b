// Client-side helpers for Gantry's tests: light enough for tests that only talk to a server
// in another process (they do not load the server runtime).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateKey } from 'node:crypto';
import { credentials, Metadata, type ChannelCredentials, type ChannelOptions, type Client, type ServiceError } from '@grpc/grpc-js';
import { checkHealth as kitCheckHealth } from '../src/client.js';
import { mintToken } from '../src/auth/jwt.js';
import { issueLeaf, loadCa } from '../src/tls/pki.js';
import { EchoClient, type EchoRequest, type EchoResponse } from './echo.js';

/** Issuer and audience of the default config, which tokens from `tokenFor` carry unless told otherwise. */
export const DEV_ISSUER = 'gantry-dev';
export const DEV_AUDIENCE = 'gantry';

export interface TokenOptions {
  ttlSec?: number;
  audience?: string;
  issuer?: string;
  /** Signing time; a time in the past mints an already expired token. */
  nowMs?: number;
}

/** A dev token signed with the ES256 key the platform generated under `dataDir/jwt`. */
export function tokenFor(dataDir: string, subject: string, scopes: string[], opts: TokenOptions = {}): string {
  const key = createPrivateKey(readFileSync(join(dataDir, 'jwt', 'signing-key.pem')));
  const kid = (JSON.parse(readFileSync(join(dataDir, 'jwt', 'jwks.json'), 'utf8')) as { keys: { kid: string }[] }).keys[0]!.kid;
  return mintToken({
    subject,
    scopes,
    issuer: opts.issuer ?? DEV_ISSUER,
    audience: opts.audience ?? DEV_AUDIENCE,
    ttlSec: opts.ttlSec ?? 300,
    key,
    kid,
    ...(opts.nowMs !== undefined ? { nowMs: opts.nowMs } : {}),
  });
}

/**
 * Client TLS files of a platform workload (`spiffe://gantry.local/<name>`), issued by the dev CA
 * under `dataDir/pki`, written next to it: calls made with them and no token act as that workload.
 */
export async function workloadTls(dataDir: string, name: string): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const dir = join(dataDir, 'pki');
  const ca = await loadCa(readFileSync(join(dir, 'ca.crt'), 'utf8'), readFileSync(join(dir, 'ca.key'), 'utf8'));
  const leaf = await issueLeaf(ca, { name, usage: 'client' });
  const certFile = join(dir, `workload-${name}.crt`);
  const keyFile = join(dir, `workload-${name}.key`);
  writeFileSync(certFile, leaf.certPem);
  writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 });
  return { caFile: join(dir, 'ca.crt'), certFile, keyFile };
}

/** Channel credentials of a platform workload (see workloadTls). */
export async function workloadCredentials(dataDir: string, name: string): Promise<ChannelCredentials> {
  const tls = await workloadTls(dataDir, name);
  return credentials.createSsl(readFileSync(tls.caFile), readFileSync(tls.keyFile), readFileSync(tls.certFile));
}

export type EchoStub = Client & {
  echo(req: Partial<EchoRequest>, md: Metadata, cb: (err: ServiceError | null, res?: EchoResponse) => void): void;
  [method: string]: unknown;
};

/** The dev server certificate names `localhost`; clients dial 127.0.0.1. */
const TLS_NAME_OPTIONS: ChannelOptions = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };

export function echoClient(address: string, creds: ChannelCredentials, options: ChannelOptions = {}): EchoStub {
  return new EchoClient(address, creds, { ...TLS_NAME_OPTIONS, ...options }) as unknown as EchoStub;
}

export function bearer(token: string | undefined): Metadata {
  const md = new Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** Calls Echo and resolves with the response or the ServiceError (never rejects). */
export function callEcho(client: EchoStub, req: Partial<EchoRequest>, md: Metadata, deadlineMs = 5000): Promise<{ res?: EchoResponse; err?: ServiceError }> {
  return new Promise((resolve) => {
    (client as unknown as { echo: (r: unknown, m: Metadata, o: unknown, cb: (e: ServiceError | null, r?: EchoResponse) => void) => void }).echo(
      req, md, { deadline: Date.now() + deadlineMs }, (err, res) => resolve(err ? { err } : { res: res! }),
    );
  });
}

/**
 * One grpc.health.v1 Check on a fresh client (closed afterwards): the status name, or the error.
 * Pass `credentials.createInsecure()` for the plaintext probe port.
 */
export function checkHealth(address: string, creds: ChannelCredentials, service = '', deadlineMs = 3000): Promise<{ status?: string; err?: ServiceError }> {
  return kitCheckHealth(address, creds, TLS_NAME_OPTIONS, service, deadlineMs);
}

/** Polls `probe` until it returns true or `timeoutMs` passes; resolves with the last result. */
export async function eventually(probe: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Resolves with the gRPC error `promise` fails with; fails the test when it succeeds. */
export async function grpcError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as ServiceError;
  }
  assert.fail('the call succeeded; expected it to fail with a gRPC status');
}

/** Asserts that `promise` fails with `code` and a message matching `pattern`. */
export async function assertStatus(promise: Promise<unknown>, code: number, pattern?: RegExp): Promise<ServiceError> {
  const err = await grpcError(promise);
  assert.equal(err.code, code, `expected status ${code}, got ${err.code}: ${err.details}`);
  if (pattern) assert.match(err.details, pattern);
  return err;
}
