import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';
import { pino, type Logger } from 'pino';
import { configSources, grantOf, loadConfig, type WorkloadGrant, silentLogger, startRuntime, type ConfigInput, type GantryModule, type Runtime, type RuntimeOptions, devPkiPaths } from '../src/index.js';
import { echoFactory } from './echo.js';
import { tokenFor, type TokenOptions } from './clients.js';
import { freshPgliteDir, freshPostgresDatabase, type EngineName } from './databases.js';

export * from './clients.js';
export * from './databases.js';

/** Test platforms trust a dev issuer (auth.devIssuer), whose key under dataDir/jwt `tokenFor` signs with. */
const DEV_ISSUER_ENV = { GANTRY_AUTH_DEV_ISSUER: 'true' };

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
  const config = loadConfig({ env: DEV_ISSUER_ENV, overrides: { dataDir, listen: { host: '127.0.0.1', port: 0, healthPort: 0 }, telemetry: { logLevel: 'silent' }, ...overrides } });
  if (!config.database.url) await freshPgliteDir(join(dataDir, 'db'));
  const runtime = await startRuntime({ config, modules: [echoFactory], log: silentLogger(), readinessIntervalMs: 500, ...extra });
  const pki = devPkiPaths(join(dataDir, 'pki'));
  let clientCredentials: ChannelCredentials | undefined;
  return {
    runtime,
    dataDir,
    address: `127.0.0.1:${runtime.port}`,
    // Read when first used: a platform given TLS files of its own (overrides.tls) has no dev PKI.
    get clientCredentials() {
      return (clientCredentials ??= credentials.createSsl(readFileSync(pki.caFile), readFileSync(pki.clientKeyFile), readFileSync(pki.clientCertFile)));
    },
    token: (subject, scopes, opts = {}) => tokenFor(dataDir, subject, scopes, { issuer: config.auth.issuer, audience: config.auth.audience, ...opts }),
    async close() {
      await runtime.stop(1000);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ServicePlatform {
  runtime: Runtime;
  dataDir: string;
  address: string;
  /** Client TLS files from the dev PKI; the server certificate names `localhost`. */
  tls: { caFile: string; certFile: string; keyFile: string; serverName: string };
  close(): Promise<void>;
}

/**
 * Starts `services` in this process with the full kit stack on free ports, on a fresh PGlite
 * directory or a fresh PostgreSQL database (named `<dbLabel>_<random>`, dropped on close).
 */
export async function startServicePlatform(
  engine: EngineName,
  services: GantryModule[],
  opts: {
    overrides?: ConfigInput;
    dbLabel: string;
    poolSize?: number;
    spanProcessors?: SpanProcessor[];
    /** A PostgreSQL database another platform uses too (replicas); kept on close. `engine` is then ignored. */
    sharedDatabaseUrl?: string;
    flagsLimits?: RuntimeOptions['flagsLimits'];
    /** Workload grants besides the platform's own (the dev server certificate's workload `all`). */
    workloads?: RuntimeOptions['workloads'];
  },
): Promise<ServicePlatform> {
  const database = opts.sharedDatabaseUrl ? { url: opts.sharedDatabaseUrl, drop: async () => undefined } : engine === 'PostgreSQL' ? await freshPostgresDatabase(opts.dbLabel) : undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-svc-'));
  const cleanup = async () => {
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  let runtime: Runtime;
  try {
    if (!database) await freshPgliteDir(join(dataDir, 'db'));
    const config = loadConfig({
      env: DEV_ISSUER_ENV,
      modules: configSources(services),
      overrides: {
        dataDir,
        listen: { host: '127.0.0.1', port: 0, healthPort: 0 },
        telemetry: { logLevel: 'silent' },
        // The HTTP gateway (in `all`) listens on a fixed port by default: tests run side by side.
        ...(services.some((m) => m.config?.key === 'gateway') ? { gateway: { port: 0 } } : {}),
        ...(database ? { database: { url: database.url, poolSize: opts.poolSize ?? 4 } } : {}),
        ...opts.overrides,
      },
    });
    const workloads = new Map([...selfGrant(services), ...(opts.workloads ?? [])]);
    runtime = await startRuntime({ config, modules: services, log: silentLogger(), readinessIntervalMs: 1000, spanProcessors: opts.spanProcessors, flagsLimits: opts.flagsLimits, workloads });
  } catch (err) {
    await cleanup();
    throw err;
  }
  const pki = (f: string) => join(dataDir, 'pki', f);
  let closing: Promise<void> | undefined;
  return {
    runtime,
    dataDir,
    address: `127.0.0.1:${runtime.port}`,
    tls: { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' },
    // Idempotent: a test may stop the platform itself (a drain) before its `after` hook does.
    close: async () => {
      closing ??= (async () => {
        await runtime.stop(1000);
        await cleanup();
      })();
      await closing;
    },
  };
}

/**
 * The grant of the dev server certificate's workload (`all`), which a platform's event relay calls
 * itself as: the calls and event families of the modules it runs, as `gantry serve` grants a target.
 */
function selfGrant(services: readonly GantryModule[]): Map<string, WorkloadGrant> {
  // From the modules given, not resolved through a registry: a test may run a module without the
  // ones it depends on (settlement without the relay).
  return new Map([['all', grantOf(services)]]);
}

/** One JSON log line as pino wrote it. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A logger keeping every line it writes (info and up) in `lines`, for tests that read what was logged. */
export function capturingLogger(onLine: (line: LogLine) => void = () => undefined): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'info', base: undefined }, {
    write: (text: string) => {
      const line = JSON.parse(text) as LogLine;
      lines.push(line);
      onLine(line);
    },
  });
  return { log, lines };
}

/**
 * Starts a runtime without waiting for its start-up to finish: resolves as soon as the health port
 * is bound (the runtime's first log line says which), with that port, the promise of the started
 * runtime, and the runtime's log lines so far and to come.
 */
export async function startRuntimeEarly(opts: Omit<RuntimeOptions, 'log'>): Promise<{ healthPort: number; started: Promise<Runtime>; lines: LogLine[] }> {
  let onHealthPort!: (port: number) => void;
  const bound = new Promise<number>((resolve) => (onHealthPort = resolve));
  const { log, lines } = capturingLogger((line) => {
    if (typeof line.health_port === 'number') onHealthPort(line.health_port);
  });
  const started = startRuntime({ ...opts, log });
  // Observed here so a start-up that fails before the test looks is not an unhandled rejection.
  started.catch(() => undefined);
  const healthPort = await Promise.race([bound, started.then(() => bound)]);
  return { healthPort, started, lines };
}
