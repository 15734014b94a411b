import { resolve } from 'node:path';
import { OpenFeature, type Client as OpenFeatureClient } from '@openfeature/server-sdk';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { authMiddleware } from './auth/middleware.js';
import { ensureDevSigningKey, type DevSigningKey } from './auth/keys.js';
import { TokenVerifier } from './auth/jwt.js';
import type { GantryConfig } from './config.js';
import { startFlags, type FlagsRuntime } from './flags/flags.js';
import type { FlagsLimits } from './flags/limits.js';
import { flagsMigrations, flagsSchemaFor } from './flags/store.js';
import { HealthState } from './health/health.js';
import type { Logger } from './logger.js';
import { MethodRateLimiter, rateLimitMiddleware } from './ratelimit/middleware.js';
import type { Middleware } from './rpc/context.js';
import type { ServiceModule } from './rpc/service.js';
import { GrpcServer } from './server/grpc-server.js';
import { Outbox } from './events/outbox.js';
import { startRelays } from './events/wiring.js';
import type { Database } from './storage/database.js';
import { migrate, migrationsApplied, type Migration } from './storage/migrations.js';
import { openPglite } from './storage/pglite.js';
import { openPostgres } from './storage/postgres.js';
import { telemetryMiddleware } from './telemetry/middleware.js';
import { startTelemetry, type Telemetry } from './telemetry/setup.js';
import { mtlsServerCredentials, type TlsFiles } from './tls/credentials.js';
import { ensureDevPki } from './tls/pki.js';

/** What a service gets to build itself. */
export interface ServiceDeps {
  db: Database;
  config: GantryConfig;
  log: Logger;
  /** Where the service writes its domain events (disabled unless its factory declares `events`). */
  outbox: Outbox;
  /** Registers cleanup that runs after calls have drained and before the database closes. */
  onShutdown(fn: () => Promise<void>): void;
  /**
   * This process's feature flags (OpenFeature, flagd rules), evaluated in memory from the flags
   * store every replica follows, e.g. `await flags.getBooleanValue('webhooks.delivery.paused', false)`.
   */
  flags: OpenFeatureClient;
}

/** A target's contribution to a process: its gRPC module(s) and the schema it owns. */
export interface ServiceFactory {
  target: string;
  /** The schema this service owns, migrated at start-up before it reports SERVING. */
  schema?: { name: string; migrations: readonly Migration[] };
  /**
   * The service emits domain events: its migrations create `<schema>.outbox`, and this process
   * relays it to the log (partition `audit.<target>`) and to webhooks. `source` names the emitter.
   */
  events?: { source: string };
  create(deps: ServiceDeps): Promise<ServiceModule[]> | ServiceModule[];
}

export interface RuntimeOptions {
  config: GantryConfig;
  services: readonly ServiceFactory[];
  log: Logger;
  /** FileDescriptorSets to serve over gRPC reflection. */
  descriptorSetPaths?: readonly string[];
  /** Tests and benchmarks plug span processors in here. */
  spanProcessors?: SpanProcessor[];
  /** How often readiness (database reachable, migrations applied) is re-checked. */
  readinessIntervalMs?: number;
  /** Bounds of the flags store and its watches (tests shrink them; defaults FLAGS_LIMITS). */
  flagsLimits?: Partial<FlagsLimits>;
}

export interface Runtime {
  port: number;
  healthPort: number;
  server: GrpcServer;
  health: HealthState;
  db: Database;
  /** TLS files in use (the dev PKI's when none were configured). */
  tls: TlsFiles;
  /** JWKS file the server verifies with, when it is a local file (dev). */
  jwksFile: string | undefined;
  /** The flags client services get (defaults only when the runtime has no services). */
  flags: OpenFeatureClient;
  /** The flags schema this process serves FlagsService from (`flags_<targets>`), or undefined without services. */
  flagsSchema: string | undefined;
  stop(graceMs?: number): Promise<void>;
}

async function openDatabase(config: GantryConfig): Promise<Database & { pool?: import('pg').Pool }> {
  if (config.database.url) {
    return openPostgres({ url: config.database.url, poolSize: config.database.poolSize, statementTimeoutMs: config.database.statementTimeoutMs });
  }
  return openPglite(resolve(config.dataDir, 'db'));
}

/** Starts one Gantry process: the chosen targets on one mTLS port, health on a plaintext port. */
export async function startRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const { config, log } = opts;
  let telemetry: Telemetry | undefined;
  const serviceName = `gantry-${opts.services.map((s) => s.target).join('+') || 'none'}`;
  telemetry = await startTelemetry({ serviceName, otlpEndpoint: config.telemetry.otlpEndpoint, spanProcessors: opts.spanProcessors });

  let tls: TlsFiles;
  if (config.tls.caFile && config.tls.certFile && config.tls.keyFile) {
    tls = { caFile: config.tls.caFile, certFile: config.tls.certFile, keyFile: config.tls.keyFile, reloadIntervalMs: config.tls.reloadIntervalMs };
  } else {
    const { paths, created } = await ensureDevPki(resolve(config.dataDir, 'pki'));
    if (created) log.info({ dir: paths.dir }, 'created a dev PKI (CA, server and client certificates) for local use');
    tls = { caFile: paths.caFile, certFile: paths.serverCertFile, keyFile: paths.serverKeyFile, reloadIntervalMs: config.tls.reloadIntervalMs };
  }

  let jwksFile = config.auth.jwksFile;
  let devKey: DevSigningKey | undefined;
  if (!config.auth.jwksFile && !config.auth.jwksUrl && !config.auth.hmacSecretFile) {
    devKey = await ensureDevSigningKey(resolve(config.dataDir, 'jwt'));
    jwksFile = devKey.jwksFile;
  }
  const verifier = TokenVerifier.fromConfig(config.auth, jwksFile);

  const db = await openDatabase(config);
  // Every process with services serves flags from a schema of its own (replicas share it).
  const flagsSchema = opts.services.length > 0 ? flagsSchemaFor(opts.services.map((s) => s.target)) : undefined;
  const schemas = [
    ...opts.services.flatMap((s) => (s.schema ? [s.schema] : [])),
    ...(flagsSchema ? [{ name: flagsSchema, migrations: flagsMigrations(flagsSchema) }] : []),
  ];
  let flags: FlagsRuntime | undefined;
  // Without services there are no flags: a client of a domain no provider serves answers the defaults.
  let flagsClient: OpenFeatureClient = OpenFeature.getClient('gantry-flags/none');
  const shutdownHooks: (() => Promise<void>)[] = [];
  const modules: ServiceModule[] = [];
  const outboxes: { target: string; outbox: Outbox }[] = [];
  try {
    for (const schema of schemas) {
      const applied = await migrate(db, schema.name, schema.migrations);
      if (applied.length > 0) log.info({ schema: schema.name, versions: applied }, 'applied migrations');
    }
    if (flagsSchema) {
      flags = await startFlags({ db, schema: flagsSchema, log, limits: opts.flagsLimits });
      flagsClient = flags.client;
      modules.push(flags.module);
    }
    for (const factory of opts.services) {
      const emits = factory.events !== undefined && factory.schema !== undefined;
      const outbox = new Outbox(factory.schema?.name ?? 'none', factory.events?.source ?? factory.target, emits && config.events.enabled);
      if (outbox.enabled) outboxes.push({ target: factory.target, outbox });
      modules.push(...(await factory.create({ db, config, log, outbox, onShutdown: (fn) => shutdownHooks.push(fn), flags: flagsClient })));
    }
  } catch (err) {
    await flags?.stop();
    await db.close();
    throw err;
  }

  const scopeTable = new Map<string, readonly string[]>();
  for (const m of modules) {
    for (const [key, method] of Object.entries(m.definition)) scopeTable.set(method.path, (m.scopes as Record<string, readonly string[]>)[key]!);
  }
  if (config.rateLimit.store === 'postgres' && !db.pool) {
    throw new Error('rateLimit.store=postgres needs database.url (GANTRY_DATABASE_URL): the embedded database is not shared between replicas');
  }
  const limiter = new MethodRateLimiter(config.rateLimit, config.rateLimit.store === 'postgres' ? { kind: 'postgres', pool: db.pool! } : { kind: 'memory' });
  const middlewares: Middleware[] = [telemetryMiddleware(log), authMiddleware(verifier, (path) => scopeTable.get(path)), rateLimitMiddleware(limiter)];

  const health = new HealthState(modules.map((m) => m.name));
  const server = new GrpcServer({
    modules,
    middlewares,
    credentials: await mtlsServerCredentials(tls),
    host: config.listen.host,
    port: config.listen.port,
    healthPort: config.listen.healthPort,
    limits: config.limits,
    health,
    descriptorSetPaths: opts.descriptorSetPaths,
    log,
  });
  const ports = await server.start();
  let relays: { stop(): Promise<void> } | undefined;
  try {
    if (outboxes.length > 0) relays = await startRelays({ config, db, log, tls, outboxes, devKey, port: ports.port, targets: opts.services.map((s) => s.target) });
  } catch (err) {
    await server.shutdown(0);
    await flags?.stop();
    await db.close();
    throw err;
  }

  const checkReadiness = async () => {
    try {
      await db.ping();
      const migrated = await Promise.all(schemas.map((s) => migrationsApplied(db, s.name, s.migrations)));
      health.setReady(migrated.every(Boolean));
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'readiness check failed');
      health.setReady(false);
    }
  };
  await checkReadiness();
  const readinessTimer = setInterval(() => void checkReadiness(), opts.readinessIntervalMs ?? 5000);
  readinessTimer.unref();

  return {
    ...ports,
    server,
    health,
    db,
    tls,
    jwksFile,
    flags: flagsClient,
    flagsSchema,
    async stop(graceMs) {
      clearInterval(readinessTimer);
      // Events committed by calls still draining wait in the outbox for the next start (or another replica).
      await relays?.stop();
      await server.shutdown(graceMs);
      for (const hook of shutdownHooks.reverse()) await hook().catch((err: unknown) => log.warn({ err }, 'shutdown hook failed'));
      await flags?.stop().catch((err: unknown) => log.warn({ err }, 'stopping flags failed'));
      verifier.close();
      await db.close();
      await telemetry?.shutdown();
      telemetry = undefined;
    },
  };
}
