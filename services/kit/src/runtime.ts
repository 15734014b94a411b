import { resolve } from 'node:path';
import type { Client as OpenFeatureClient } from '@openfeature/server-sdk';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';
import { Authenticator, authMiddleware, FailedAuthLimiter } from './auth/middleware.js';
import { ensureDevSigningKey } from './auth/keys.js';
import { TokenVerifier } from './auth/jwt.js';
import { mergeGrants, WorkloadDirectory, type WorkloadGrant } from './auth/workload.js';
import { configSlice, type GantryConfig } from './config.js';
import { adminServices } from './admin/service.js';
import { startFlags } from './flags/flags.js';
import type { FlagsLimits } from './flags/limits.js';
import { flagsMigrations, flagsSchemaFor } from './flags/store.js';
import { HealthState, startHealthServer } from './health/health.js';
import type { Logger } from './logger.js';
import { MethodRateLimiter, rateLimitMiddleware } from './ratelimit/middleware.js';
import { CleanupStack } from './modules/cleanup.js';
import type { EmittingModule, GantryModule, ModuleHandle, StartContext } from './modules/module.js';
import type { Middleware } from './rpc/context.js';
import type { ServiceModule } from './rpc/service.js';
import { GrpcServer } from './server/grpc-server.js';
import { Outbox } from './events/outbox.js';
import type { Database } from './storage/database.js';
import { migrate, migrationsApplied, type Migration } from './storage/migrations.js';
import { openPglite } from './storage/pglite.js';
import { openPostgres } from './storage/postgres.js';
import { describeDatabaseUrl, retryDatabaseStartup } from './storage/startup.js';
import { telemetryMiddleware } from './telemetry/middleware.js';
import { startTelemetry } from './telemetry/setup.js';
import { mtlsServerCredentials, type TlsFiles } from './tls/credentials.js';
import { ensureDevPki } from './tls/pki.js';

export interface RuntimeOptions {
  config: GantryConfig;
  /** The modules to run, dependencies first (ModuleRegistry.resolve). */
  modules: readonly GantryModule[];
  log: Logger;
  /** Names the process in telemetry; default `gantry-<module names>`. */
  serviceName?: string;
  /** FileDescriptorSets to serve over gRPC reflection. */
  descriptorSetPaths?: readonly string[];
  /** Tests and benchmarks plug span processors in here. */
  spanProcessors?: SpanProcessor[];
  /** How often readiness (database reachable, migrations applied, modules ready) is re-checked. */
  readinessIntervalMs?: number;
  /** Bounds of the flags store and its watches (tests shrink them; defaults FLAGS_LIMITS). */
  flagsLimits?: Partial<FlagsLimits>;
  /** Pauses between start-up attempts to reach a late database (tests shrink them; default DATABASE_STARTUP_BACKOFF). */
  databaseStartupBackoff?: { minDelayMs: number; maxDelayMs: number };
  /**
   * The program's workload identities and their grants (ModuleRegistry.workloadGrants): every
   * target's, not only this process's, since its peers call it as themselves. auth.workloads adds
   * to them and replaces a grant of the same name.
   */
  workloads?: ReadonlyMap<string, WorkloadGrant>;
}

/** A process that serves gRPC: its port, server, database and credentials. */
export interface GrpcRuntime {
  port: number;
  server: GrpcServer;
  db: Database;
  /** TLS files in use (the dev PKI's when none were configured). */
  tls: TlsFiles;
  /** JWKS file the server verifies with, when it is a local file (dev). */
  jwksFile: string | undefined;
  /** The flags client modules get. */
  flags: OpenFeatureClient;
  /** The flags schema this process serves FlagsService from (`flags_<targets>`). */
  flagsSchema: string;
}

export interface Runtime extends GrpcRuntime {
  healthPort: number;
  health: HealthState;
  /** Rejects when a module can no longer do its job (StartContext.fail); the process should exit non-zero. */
  failed: Promise<never>;
  /** The modules' lines for a person at a terminal (ModuleHandle.welcome), in start order. */
  welcome(): string[];
  /** Drains calls (up to `graceMs`) and stops every module and part, last started first. */
  stop(graceMs?: number): Promise<void>;
}

async function openDatabase(config: GantryConfig, applicationName: string): Promise<Database & { pool?: import('pg').Pool }> {
  if (config.database.url) {
    const { url, poolSize, statementTimeoutMs, pingIntervalMs, pingTimeoutMs } = config.database;
    return openPostgres({ url, applicationName, poolSize, statementTimeoutMs, pingIntervalMs, pingTimeoutMs });
  }
  return openPglite(resolve(config.dataDir, 'db'));
}

/** A schema and its migrations, applied at start-up. */
type Schema = { name: string; migrations: readonly Migration[] };

/**
 * TLS files (the dev PKI's when none are configured) and the JWT verifier: the configured key
 * source, else the dev issuer's key when auth.devIssuer is on, else none (workloads only).
 */
async function loadCredentials(config: GantryConfig, log: Logger): Promise<{ tls: TlsFiles; jwksFile: string | undefined; verifier: TokenVerifier | undefined }> {
  let tls: TlsFiles;
  if (config.tls.caFile && config.tls.certFile && config.tls.keyFile) {
    tls = { caFile: config.tls.caFile, certFile: config.tls.certFile, keyFile: config.tls.keyFile, reloadIntervalMs: config.tls.reloadIntervalMs };
  } else {
    const { paths, created } = await ensureDevPki(resolve(config.dataDir, 'pki'));
    if (created) log.info({ dir: paths.dir }, 'created a dev PKI (CA, server and client certificates) for local use');
    tls = { caFile: paths.caFile, certFile: paths.serverCertFile, keyFile: paths.serverKeyFile, reloadIntervalMs: config.tls.reloadIntervalMs };
  }
  let jwksFile = config.auth.jwksFile;
  if (!config.auth.jwksFile && !config.auth.jwksUrl) {
    if (!config.auth.devIssuer) {
      log.warn('no token issuer configured (auth.jwksUrl, auth.jwksFile): calls with a token are refused; platform workloads call by their certificates');
      return { tls, jwksFile: undefined, verifier: undefined };
    }
    jwksFile = (await ensureDevSigningKey(resolve(config.dataDir, 'jwt'))).jwksFile;
  }
  return { tls, jwksFile, verifier: TokenVerifier.fromConfig(config.auth, jwksFile) };
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
        // Connections carry the service's name, so pg_stat_activity and PostgreSQL's logs say whose they are.
        db ??= await openDatabase(config, opts.serviceName ?? defaultServiceName(opts.modules));
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

/** Who may call what: tokens and workload grants against every method's scopes, failures bounded per peer. */
function authenticatorFor(opts: RuntimeOptions, modules: readonly ServiceModule[], verifier: TokenVerifier | undefined): Authenticator {
  const { config } = opts;
  const workloads = new WorkloadDirectory(config.auth.trustDomain, mergeGrants(opts.workloads, config.auth.workloads));
  const scopeTable = new Map<string, readonly string[]>();
  for (const m of modules) {
    for (const [key, method] of Object.entries(m.definition)) scopeTable.set(method.path, (m.scopes as Record<string, readonly string[]>)[key]!);
  }
  return new Authenticator(verifier, workloads, (path) => scopeTable.get(path), new FailedAuthLimiter(config.auth));
}

/** The middleware chain every service method runs through: telemetry → auth → rate limit. */
function middlewaresFor(opts: RuntimeOptions, auth: Authenticator, db: Database & { pool?: import('pg').Pool; assertReachable?: () => void }): Middleware[] {
  const { config, log } = opts;
  if (config.rateLimit.store === 'postgres' && !db.pool) {
    throw new Error('rateLimit.store=postgres needs database.url (GANTRY_DATABASE_URL): the embedded database is not shared between replicas');
  }
  const limiter = new MethodRateLimiter(config.rateLimit, config.rateLimit.store === 'postgres' ? { kind: 'postgres', pool: db.pool!, assertReachable: db.assertReachable! } : { kind: 'memory' });
  return [telemetryMiddleware(log), authMiddleware(auth), rateLimitMiddleware(limiter)];
}

/** The readiness checks: the database answers, every schema is migrated, every module is ready. */
class Readiness {
  private checking = false;
  readonly parts: (() => Promise<boolean> | boolean)[] = [];

  constructor(
    private readonly health: HealthState,
    private readonly log: Logger,
  ) {}

  /** Runs the checks and sets readiness; a check that outlasts the interval is not stacked up. */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const results = await Promise.all(this.parts.map((part) => part()));
      this.health.setReady(results.every(Boolean));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'readiness check failed: the database does not answer; readiness NOT_SERVING until it does');
      this.health.setReady(false);
    } finally {
      this.checking = false;
    }
  }
}

/** The gRPC half of a process: credentials, database, flags, each module's services, the mTLS port. */
async function startGrpc(opts: RuntimeOptions, stack: CleanupStack, health: HealthState, readiness: Readiness): Promise<GrpcRuntime & { emitters: EmittingModule[] }> {
  const { config, log } = opts;
  const { tls, jwksFile, verifier } = await loadCredentials(config, log);
  stack.push('token verifier', () => verifier?.close());
  // Every process with services serves flags from a schema of its own (replicas share it).
  const flagsSchema = flagsSchemaFor(opts.modules.filter((m) => m.create).map((m) => m.name));
  const schemas: Schema[] = [...opts.modules.flatMap((m) => (m.schema ? [m.schema] : [])), { name: flagsSchema, migrations: flagsMigrations(flagsSchema) }];
  const db = await openMigratedDatabase(opts, schemas);
  stack.push('database', () => db.close());
  readiness.parts.push(async () => {
    await db.ping();
    return (await Promise.all(schemas.map((s) => migrationsApplied(db, s.name, s.migrations)))).every(Boolean);
  });
  const flags = await startFlags({ db, schema: flagsSchema, log, limits: opts.flagsLimits });
  stack.push('flags', () => flags.stop());
  // AdminService and channelz too: behind the admin scope, in every serving process.
  const admin = adminServices({ targets: opts.modules.filter((m) => m.create).map((m) => m.name), engine: db.engine, config, log, health });
  stack.push('admin', () => admin.stop());
  const services: ServiceModule[] = [flags.module, ...admin.services];
  const emitters: EmittingModule[] = [];
  for (const m of opts.modules) {
    const outbox = new Outbox(m.schema?.name ?? 'none', m.events?.source ?? m.name, m.events !== undefined && m.schema !== undefined && config.events.enabled, m.events?.types);
    if (outbox.enabled) emitters.push({ name: m.name, outbox });
    if (!m.create) continue;
    const settings = m.config ? configSlice(config, m.config.key) : undefined;
    const created = await m.create({ db, config, settings, log, outbox, onShutdown: (fn) => stack.push(m.name, fn), flags: flags.client });
    assertDeclaredScopes(m, created);
    services.push(...created);
  }
  health.addServices(services.map((s) => s.name));
  const auth = authenticatorFor(opts, services, verifier);
  const server = new GrpcServer({
    modules: services,
    middlewares: middlewaresFor(opts, auth, db),
    authorize: (call) => auth.authorize(call),
    credentials: await mtlsServerCredentials(tls),
    host: config.listen.host,
    port: config.listen.port,
    limits: config.limits,
    health,
    descriptorSetPaths: opts.descriptorSetPaths,
    log,
  });
  const { port } = await server.start();
  stack.push('gRPC server', (graceMs) => server.shutdown(graceMs));
  return { port, server, db, tls, jwksFile, flags: flags.client, flagsSchema, emitters };
}

/** A module's services may require only scopes it declares (so `gantry token --all-scopes` and the docs know them all). */
function assertDeclaredScopes(m: GantryModule, services: readonly ServiceModule[]): void {
  if (!m.scopes) return;
  const declared = new Set(m.scopes);
  for (const s of services) {
    for (const scope of Object.values(s.scopes as Record<string, readonly string[]>).flat()) {
      if (!declared.has(scope)) throw new Error(`invariant: ${s.name} requires scope ${scope}, which module ${m.name} does not declare`);
    }
  }
}

/** Runs each module's `start` in order; their handles join readiness and the cleanup stack. */
async function startModules(opts: RuntimeOptions, stack: CleanupStack, ctx: Omit<StartContext, 'settings'>, readiness: Readiness): Promise<ModuleHandle[]> {
  const handles: ModuleHandle[] = [];
  for (const m of opts.modules) {
    if (!m.start) continue;
    const settings = m.config ? configSlice(opts.config, m.config.key) : undefined;
    const handle = await m.start({ ...ctx, settings, log: opts.log });
    if (handle?.ready) readiness.parts.push(handle.ready.bind(handle));
    if (handle?.stop) stack.push(m.name, handle.stop.bind(handle));
    if (handle) handles.push(handle);
  }
  return handles;
}

/**
 * `gantry-<targets>`: the modules serving gRPC; in a process serving none, the target itself (the
 * last module, since dependencies come first). Groups and helpers such as the relay are not named.
 */
function defaultServiceName(modules: readonly GantryModule[]): string {
  const serving = modules.filter((m) => m.create);
  const named = serving.length > 0 ? serving : modules.slice(-1);
  return `gantry-${named.map((m) => m.name).join('+') || 'none'}`;
}

/** Fields of the gRPC half, asserted present: a process without gRPC modules (the operator alone) has none. */
function grpcOf(grpc: GrpcRuntime | undefined): GrpcRuntime {
  if (!grpc) throw new Error('invariant: this process serves no gRPC (none of its modules has services)');
  return grpc;
}

/**
 * Starts one Gantry process: its modules in dependency order, the gRPC ones on one mTLS port, and
 * health on a plaintext port. The health port is bound first and answers `liveness` SERVING at
 * once; telemetry, the database (waited for when late), migrations, services, the mTLS port and
 * the modules' background work follow, then `startup` turns SERVING and `readiness` follows the
 * periodic checks (docs/helm.md, Probes). Everything started is stopped last-first by one
 * cleanup stack, on a failed start-up as on stop.
 */
export async function startRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const { config, log } = opts;
  const health = new HealthState();
  const stack = new CleanupStack(log);
  const probe = await startHealthServer(config.listen.host, config.listen.healthPort, health);
  stack.push('health port', () => probe.close());
  log.info({ health_port: probe.port }, 'health port listening (liveness SERVING); starting up');
  let fail!: (err: Error) => void;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => undefined);
  try {
    const telemetry = await startTelemetry({ serviceName: opts.serviceName ?? defaultServiceName(opts.modules), otlpEndpoint: config.telemetry.otlpEndpoint, spanProcessors: opts.spanProcessors, traceSampleRatio: config.telemetry.traceSampleRatio });
    stack.push('telemetry', () => telemetry.shutdown());
    probe.routes.set('/metrics', (req, res) => telemetry.metrics(req, res));
    const readiness = new Readiness(health, log);
    const grpc = opts.modules.some((m) => m.create) ? await startGrpc(opts, stack, health, readiness) : undefined;
    const serving = grpc && { db: grpc.db, port: grpc.port, targets: opts.modules.filter((m) => m.create).map((m) => m.name), tls: grpc.tls, emitters: grpc.emitters };
    const handles = await startModules(opts, stack, { config, log, health, serving, recheckReadiness: () => void readiness.check(), fail }, readiness);
    health.markStarted();
    await readiness.check();
    const timer = setInterval(() => void readiness.check(), opts.readinessIntervalMs ?? 5000);
    timer.unref();
    stack.push('readiness checks', () => clearInterval(timer));
    return {
      healthPort: probe.port,
      health,
      failed,
      welcome: () => handles.flatMap((h) => h.welcome?.() ?? []),
      get port() { return grpcOf(grpc).port; },
      get server() { return grpcOf(grpc).server; },
      get db() { return grpcOf(grpc).db; },
      get tls() { return grpcOf(grpc).tls; },
      get jwksFile() { return grpcOf(grpc).jwksFile; },
      get flags() { return grpcOf(grpc).flags; },
      get flagsSchema() { return grpcOf(grpc).flagsSchema; },
      async stop(graceMs) {
        // Readiness NOT_SERVING for good; liveness answers to the end, the probe port going last.
        health.drain();
        await stack.unwind(graceMs);
      },
    };
  } catch (err) {
    await stack.unwind(0);
    throw err;
  }
}
