import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { loadConfig, silentLogger, startRuntime, type ConfigInput, type Runtime, devPkiPaths } from '../src/index.js';
import { echoFactory } from './fixtures/echo.js';
import { tokenFor, type TokenOptions } from './clients.js';
import { freshPgliteDir } from './databases.js';

export * from './clients.js';
export * from './databases.js';

export interface TestPlatform {
  runtime: Runtime;
  dataDir: string;
  address: string;
  /** Client credentials from the dev PKI (a valid client certificate). */
  clientCredentials: ChannelCredentials;
  /** A valid dev token for `subject` with `scopes`. */
  token(subject: string, scopes: string[], opts?: TokenOptions): string;
  close(): Promise<void>;
}

/** Starts the full kit stack (mTLS, JWT, rate limit, telemetry) with the echo service on free ports. */
export async function startEchoPlatform(overrides: ConfigInput = {}, extra: { spanProcessors?: SpanProcessor[] } = {}): Promise<TestPlatform> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-kit-'));
  const config = loadConfig({ env: {}, overrides: { dataDir, listen: { host: '127.0.0.1', port: 0, healthPort: 0 }, telemetry: { logLevel: 'silent' }, ...overrides } });
  if (!config.database.url) await freshPgliteDir(join(dataDir, 'db'));
  const runtime = await startRuntime({ config, services: [echoFactory], log: silentLogger(), readinessIntervalMs: 500, ...extra });
  const pki = devPkiPaths(join(dataDir, 'pki'));
  const clientCredentials = credentials.createSsl(readFileSync(pki.caFile), readFileSync(pki.clientKeyFile), readFileSync(pki.clientCertFile));
  return {
    runtime,
    dataDir,
    address: `127.0.0.1:${runtime.port}`,
    clientCredentials,
    token: (subject, scopes, opts = {}) => tokenFor(dataDir, subject, scopes, { issuer: config.auth.issuer, audience: config.auth.audience, ...opts }),
    async close() {
      await runtime.stop(1000);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
