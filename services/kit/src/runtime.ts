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
import { HealthState, startHealthServer } from './health/health.js';
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
import { describeDatabaseUrl, retryDatabaseStartup } from './storage/startup.js';
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
  /** Pauses between start-up attempts to reach a late database (tests shrink them; default DATABASE_STARTUP_BACKOFF). */
  databaseStartupBackoff?: { minDelayMs: number; maxDelayMs: number };
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

/** A schema and its migrations, applied at start-up. */
type Schema = { name: string; migrations: readonly Migration[] };

/** Undo steps of a start-up in progress, run last first when a later step fails. */
type Cleanups = (() => Promise<void> | void)[];

async function unwind(cleanups: Cleanups, log: Logger): Promise<void> {
  for (const undo of cleanups.reverse()) {
    try {
      await undo();
    } catch (err) {
      log.warn({ err }, 'cleaning up a failed start-up failed');
    }
  }
}

/** TLS files (the dev PKI's when none are configured) and the JWT verifier (the dev key's when no source is configured). */
async function loadCredentials(config: GantryConfig, log: Logger): Promise<{ tls: TlsFiles; jwksFile: string | undefined; devKey: DevSigningKey | undefined; verifier: TokenVerifier }> {
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
  return { tls, jwksFile, devKey, verifier: TokenVerifier.fromConfig(config.auth, jwksFile) };
}

/**
 * Opens the database and applies every schema's migrations. A database that is late (not up, not
 * reachable yet) is waited for up to database.startupTimeoutMs, with a log line per failed attempt;
 * errors that waiting cannot fix fail at once.
 */
async function openMigratedDatabase(opts: RuntimeOptions, schemas: readonly Schema[]): Promise<Database & { pool?: import('pg').Pool }> {
  const { config, log } = opts;
  const where = config.database.url ? `PostgreSQL at ${describeDatabaseUrl(config.database.url)}` : `the embedded database in ${resolve(config.dataDir, 'db')}`;
  const fatalHint = config.database.url
    ? 'check database.url (GANTRY_DATABASE_URL): its syntax, user and password, database name and TLS settings (or, when a migration failed, its SQL)'
    : 'check the data directory (GANTRY_DATA_DIR) and its permissions (or, when a migration failed, its SQL)';
  let db: (Database & { pool?: import('pg').Pool }) | undefined;
  try {
    return await retryDatabaseStartup(
      async () => {
        db ??= await openDatabase(config);
        for (const schema of schemas) {
          const applied = await migrate(db, schema.name, schema.migrations);
          if (applied.length > 0) log.info({ schema: schema.name, versions: applied }, 'applied migrations');
        }
        return db;
      },
      { timeoutMs: config.database.startupTimeoutMs, where, fatalHint, log, backoff: opts.databaseStartupBackoff },
    );
  } catch (err) {
    await db?.close().catch(() => {});
    throw err;
  }
}

/** The flags store (a process with services serves FlagsService) and each target's modules, on an opened database. */
async function createModules(opts: RuntimeOptions, db: Database, flagsSchema: string | undefined, cleanups: Cleanups, shutdownHooks: (() => Promise<void>)[]) {
  const { config, log } = opts;
  const modules: ServiceModule[] = [];
  const outboxes: { target: string; outbox: Outbox }[] = [];
  let flags: FlagsRuntime | undefined;
  // Without services there are no flags: a client of a domain no provider serves answers the defaults.
  let flagsClient: OpenFeatureClient = OpenFeature.getClient('gantry-flags/none');
  if (flagsSchema) {
    flags = await startFlags({ db, schema: flagsSchema, log, limits: opts.flagsLimits });
    cleanups.push(() => flags!.stop());
    flagsClient = flags.client;
    modules.push(flags.module);
  }
  for (const factory of opts.services) {
    const emits = factory.events !== undefined && factory.schema !== undefined;
    const outbox = new Outbox(factory.schema?.name ?? 'none', factory.events?.source ?? factory.target, emits && config.events.enabled);
    if (outbox.enabled) outboxes.push({ target: factory.target, outbox });
    modules.push(...(await factory.create({ db, config, log, outbox, onShutdown: (fn) => shutdownHooks.push(fn), flags: flagsClient })));
  }
  return { modules, outboxes, flags, flagsClient };
}

/** The middleware chain every service method runs through: telemetry → auth → rate limit. */
function middlewaresFor(config: GantryConfig, log: Logger, modules: readonly ServiceModule[], verifier: TokenVerifier, db: Database & { pool?: import('pg').Pool }): Middleware[] {
  const scopeTable = new Map<string, readonly string[]>();
  for (const m of modules) {
    for (const [key, method] of Object.entries(m.definition)) scopeTable.set(method.path, (m.scopes as Record<string, readonly string[]>)[key]!);
  }
  if (config.rateLimit.store === 'postgres' && !db.pool) {
    throw new Error('rateLimit.store=postgres needs database.url (GANTRY_DATABASE_URL): the embedded database is not shared between replicas');
  }
  const limiter = new MethodRateLimiter(config.rateLimit, config.rateLimit.store === 'postgres' ? { kind: 'postgres', pool: db.pool! } : { kind: 'memory' });
  return [telemetryMiddleware(log), authMiddleware(verifier, (path) => scopeTable.get(path)), rateLimitMiddleware(limiter)];
}

/**
 * Starts one Gantry process: the chosen targets on one mTLS port, health on a plaintext port.
 * The health port is bound first and answers `liveness` SERVING at once; the database (waited for
 * when late), migrations, modules and the mTLS port follow, then `startup` turns SERVING and
 * `readiness` follows the periodic checks (docs/helm.md, Probes).
 */
export async function startRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const { config, log } = opts;
  const health = new HealthState();
  const probe = await startHealthServer(config.listen.host, config.listen.healthPort, health);
  log.info({ health_port: probe.port }, 'health port listening (liveness SERVING); starting up: database, migrations, services');
  const cleanups: Cleanups = [() => probe.close()];
  try {
    return await startServing(opts, health, probe, cleanups);
  } catch (err) {
    await unwind(cleanups, log);
    throw err;
  }
}

async function startServing(opts: RuntimeOptions, health: HealthState, probe: { port: number; close(): void }, cleanups: Cleanups): Promise<Runtime> {
  const { config, log } = opts;
  const serviceName = `gantry-${opts.services.map((s) => s.target).join('+') || 'none'}`;
  let telemetry: Telemetry | undefined = await startTelemetry({ serviceName, otlpEndpoint: config.telemetry.otlpEndpoint, spanProcessors: opts.spanProcessors });
  cleanups.push(() => telemetry?.shutdown());
  const { tls, jwksFile, devKey, verifier } = await loadCredentials(config, log);
  cleanups.push(() => verifier.close());

  // Every process with services serves flags from a schema of its own (replicas share it).
  const flagsSchema = opts.services.length > 0 ? flagsSchemaFor(opts.services.map((s) => s.target)) : undefined;
  const schemas: Schema[] = [
    ...opts.services.flatMap((s) => (s.schema ? [s.schema] : [])),
    ...(flagsSchema ? [{ name: flagsSchema, migrations: flagsMigrations(flagsSchema) }] : []),
  ];
  const db = await openMigratedDatabase(opts, schemas);
  cleanups.push(() => db.close());
  const shutdownHooks: (() => Promise<void>)[] = [];
  const { modules, outboxes, flags, flagsClient } = await createModules(opts, db, flagsSchema, cleanups, shutdownHooks);
  health.addServices(modules.map((m) => m.name));

  const server = new GrpcServer({
    modules,
    middlewares: middlewaresFor(config, log, modules, verifier, db),
    credentials: await mtlsServerCredentials(tls),
    host: config.listen.host,
    port: config.listen.port,
    limits: config.limits,
    health,
    descriptorSetPaths: opts.descriptorSetPaths,
    log,
  });
  const { port } = await server.start();
  cleanups.push(() => server.shutdown(0));
  const relays = outboxes.length > 0 ? await startRelays({ config, db, log, tls, outboxes, devKey, port, targets: opts.services.map((s) => s.target) }) : undefined;
  health.markStarted();

  let checking = false;
  const checkReadiness = async () => {
    // A check that outlasts the interval (a database that stopped answering) is not stacked up.
    if (checking) return;
    checking = true;
    try {
      await db.ping();
      const migrated = await Promise.all(schemas.map((s) => migrationsApplied(db, s.name, s.migrations)));
      health.setReady(migrated.every(Boolean));
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'readiness check failed: the database does not answer; readiness NOT_SERVING until it does');
      health.setReady(false);
    } finally {
      checking = false;
    }
  };
  await checkReadiness();
  const readinessTimer = setInterval(() => void checkReadiness(), opts.readinessIntervalMs ?? 5000);
  readinessTimer.unref();

  return {
    port,
    healthPort: probe.port,
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
      // Liveness answers SERVING to the end of the drain; the probe port goes last.
      probe.close();
      await telemetry?.shutdown();
      telemetry = undefined;
    },
  };
}
