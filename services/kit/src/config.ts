import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** A list given as one string (an environment variable): comma- or newline-separated, blanks dropped. */
export function splitList(v: unknown): unknown {
  return typeof v === 'string' ? v.split(/[,\n]/).map((x) => x.trim()).filter((x) => x !== '') : v;
}

/** A boolean that also reads the strings "true" and "false" (environment variables). */
export const booleanFlag = () => z.preprocess((v) => (v === 'false' ? false : v === 'true' ? true : v), z.boolean());

/** An address of a peer target: `host:port` or a gRPC target such as `dns:///name:port`. */
const peerAddress = z.strictObject({ address: z.string().min(1).max(512).optional() }).prefault({});

/**
 * The settings every Gantry process has: listeners, credentials, database, telemetry, limits,
 * peers and events. Each module adds its own slice (log, webhooks, operator) under its key
 * ({@link configSchemaFor}); this kit knows none of them. Units are in the names.
 */
export const configSchema = z.strictObject({
  listen: z.strictObject({
    host: z.string().min(1).default('0.0.0.0'),
    port: z.coerce.number().int().min(0).max(65535).default(7443),
    /** Plaintext port serving grpc.health.v1 only, for Kubernetes' native gRPC probes. 0 = any free port. */
    healthPort: z.coerce.number().int().min(0).max(65535).default(7080),
  }).prefault({}),
  /** Where embedded-mode state lives: dev PKI, dev JWT keys, the PGlite database. */
  dataDir: z.string().min(1).default('.gantry'),
  tls: z.strictObject({
    /** PEM files; when all are unset, a dev PKI is generated under dataDir/pki on first run. */
    caFile: z.string().optional(),
    certFile: z.string().optional(),
    keyFile: z.string().optional(),
    /** How often certificate files are re-read, so rotated certificates apply without a restart. */
    reloadIntervalMs: z.coerce.number().int().min(1000).max(3_600_000).default(60_000),
  }).prefault({}),
  auth: z.strictObject({
    issuer: z.string().min(1).default('gantry-dev'),
    audience: z.string().min(1).default('gantry'),
    /** At most one key source, public keys only: a JWKS file (re-read on change) or a JWKS URL (https, cached, refetched on unknown kid). */
    jwksFile: z.string().optional(),
    /** https only: keys fetched over plain http could be replaced on the way, and with them every token. */
    jwksUrl: z.url({ protocol: /^https$/, error: 'must be an https:// URL: keys fetched over plain http could be replaced on the way' }).optional(),
    clockToleranceSec: z.coerce.number().int().min(0).max(300).default(30),
    /** Tokens living longer than this are refused even if unexpired. */
    maxTokenAgeSec: z.coerce.number().int().min(60).max(31 * 24 * 3600).default(24 * 3600),
    /**
     * Development only (laptops, tests): with no key source above, create an ES256 key under
     * dataDir/jwt and trust it, so `gantry token` can mint tokens. Off, a process without a key
     * source accepts no tokens at all: only platform workloads, by their certificates.
     */
    devIssuer: booleanFlag().default(false),
    /**
     * Failed authentications (bad, expired or missing credentials) one peer address may have in
     * `failureWindowSec`; past that its calls are refused with RESOURCE_EXHAUSTED before any token
     * is verified, until the window ends. Verifying costs a signature check, and an unknown `kid` a
     * JWKS fetch: without a bound, invalid tokens are free work for whoever sends them.
     */
    maxFailuresPerPeer: z.coerce.number().int().min(1).max(100_000).default(30),
    failureWindowSec: z.coerce.number().int().min(1).max(3600).default(60),
    /** Workload certificates carry `spiffe://<trustDomain>/<workload>`; only IDs of this domain identify platform workloads. */
    trustDomain: z.string().regex(/^[a-z0-9]([a-z0-9.-]{0,250}[a-z0-9])?$/, 'must be a DNS-like name such as gantry.local').default('gantry.local'),
    /**
     * Grants of workload identities beyond the program's own (each platform target is granted the
     * scopes its calls need and the event families it owns; a name here replaces that grant):
     * `{"<workload>": {"scopes": [...], "families": [...]}}` (JSON in the environment).
     */
    workloads: z.record(
      z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'workload names are lower-case letters, digits and hyphens'),
      z.strictObject({
        scopes: z.array(z.string().min(1).max(128)).max(64).default([]),
        families: z.array(z.string().regex(/^[a-z][a-z0-9-]{0,62}$/)).max(64).default([]),
      }),
    ).default({}),
  }).prefault({}),
  rateLimit: z.strictObject({
    /** `memory` for one replica; `postgres` shares counters across replicas through the database. */
    store: z.enum(['memory', 'postgres']).default('memory'),
    /** Calls allowed per principal and method in each window, unless `methods` says otherwise. */
    points: z.coerce.number().int().min(1).max(1_000_000).default(1000),
    windowSec: z.coerce.number().int().min(1).max(3600).default(1),
    /** Per-method overrides, keyed by full method path `/pkg.Service/Method`. */
    methods: z.record(z.string().regex(/^\/[\w.]+\/\w+$/), z.strictObject({
      points: z.number().int().min(1).max(1_000_000),
      windowSec: z.number().int().min(1).max(3600),
    })).default({}),
  }).prefault({}),
  database: z.strictObject({
    /** PostgreSQL URL; when unset the embedded PGlite database under dataDir/db is used. */
    url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
    poolSize: z.coerce.number().int().min(1).max(200).default(10),
    statementTimeoutMs: z.coerce.number().int().min(100).max(600_000).default(30_000),
    /**
     * At start-up, how long an unreachable database is waited for (retries with backoff, the
     * health port answering liveness meanwhile) before the process exits non-zero. 0: one attempt.
     */
    startupTimeoutMs: z.coerce.number().int().min(0).max(3_600_000).default(300_000),
    /**
     * How often a connection of its own checks that the database answers, and how long an answer
     * may take: past that (a network partition) statements are refused at once with UNAVAILABLE and
     * readiness turns NOT_SERVING, instead of calls waiting out their deadlines.
     */
    pingIntervalMs: z.coerce.number().int().min(100).max(60_000).default(1_000),
    pingTimeoutMs: z.coerce.number().int().min(100).max(60_000).default(3_000),
  }).prefault({}),
  telemetry: z.strictObject({
    /** OTLP/gRPC endpoint, e.g. http://otel-collector:4317; tracing export is off when unset. */
    otlpEndpoint: z.url().optional(),
    /**
     * Share of new traces recorded (head sampling; a call that arrives with a sampled or unsampled
     * `traceparent` follows its caller's decision). 1 records every call; on a busy service 0.1 or
     * less keeps traces representative at a tenth of the cost (docs/benchmarks.md, kit).
     */
    traceSampleRatio: z.coerce.number().min(0).max(1).default(1),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  }).prefault({}),
  /**
   * Other Gantry services this process calls (the outbox relay: log and webhooks; the operator:
   * every service). {@link configSchemaFor} adds `peers.<target>.address` for every target that
   * serves gRPC: `host:port` or a gRPC target such as `dns:///gantry-log-headless.gantry.svc:7443`
   * (balanced round_robin over every address the name resolves to). Unset: the target in this
   * process when it runs that target, else nobody (events wait in the outbox until one is set).
   */
  peers: z.strictObject({
    /** Name to verify in the peers' certificates when it differs from the address's host. */
    serverName: z.string().min(1).max(253).optional(),
    /**
     * A JWT (file, re-read when it changes) this service presents to its peers, with the scopes
     * log.append and webhooks.publish. Unset in dev: minted with the dev signing key.
     */
    tokenFile: z.string().optional(),
    /** Deadline of each call to a peer. */
    callTimeoutMs: z.coerce.number().int().min(100).max(120_000).default(10_000),
  }).prefault({}),
  /** Domain events: the transactional outbox and its relay (docs/events.md). */
  events: z.strictObject({
    /** Off: services write no events (nothing is announced or audited). */
    enabled: booleanFlag().default(true),
    /** Events per relay call (AppendBatch, PublishEvents). */
    batchSize: z.coerce.number().int().min(1).max(500).default(200),
    /** After a partial batch the relay waits this long before the next, so events under load go in fuller batches; the first event after a quiet spell goes at once. */
    lingerMs: z.coerce.number().int().min(0).max(10_000).default(100),
    /** How often an idle relay looks for events other replicas committed (this process's commits wake it at once). */
    pollIntervalMs: z.coerce.number().int().min(10).max(60_000).default(500),
    /** A batch claimed by a replica that died is sent again by another after this long. */
    leaseMs: z.coerce.number().int().min(1000).max(600_000).default(30_000),
    /** Retry delay while a peer is down: doubles from min to max. */
    minBackoffMs: z.coerce.number().int().min(10).max(60_000).default(200),
    maxBackoffMs: z.coerce.number().int().min(100).max(600_000).default(30_000),
  }).prefault({}),
  limits: z.strictObject({
    // The most any method may take (batch RPCs declare it, ServiceModule.maxRequestBytes): above
    // the largest request any contract allows (a 4 MiB log batch plus framing), so such requests
    // reach validation and get a precise INVALID_ARGUMENT rather than a transport error.
    maxReceiveMessageBytes: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(8 * 1024 * 1024),
    /**
     * The request limit of a method that declares none: larger requests are refused at their
     * length prefix (RESOURCE_EXHAUSTED), before their bytes are buffered.
     */
    maxRequestBytes: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(64 * 1024),
    /**
     * Unary and server-streaming calls reserve their method's request limit from this budget from
     * admission until their request has arrived; a call the budget cannot take is refused at once
     * (RESOURCE_EXHAUSTED, retry pushback). Bounds the request bytes a process buffers, whoever sends them.
     */
    maxRequestBytesInFlight: z.coerce.number().int().min(1024).max(1024 * 1024 * 1024).default(64 * 1024 * 1024),
    /** Calls (streams included) one principal may have open in this process; more are RESOURCE_EXHAUSTED. */
    maxCallsPerPrincipal: z.coerce.number().int().min(1).max(100_000).default(128),
    maxSendMessageBytes: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
    /** HTTP/2 streams one client connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
    maxConcurrentStreams: z.coerce.number().int().min(1).max(100_000).default(100),
    keepaliveTimeMs: z.coerce.number().int().min(1000).default(30_000),
    keepaliveTimeoutMs: z.coerce.number().int().min(1000).default(10_000),
    /** On SIGTERM: how long in-flight calls and streams get to finish before they are cancelled. */
    shutdownGraceMs: z.coerce.number().int().min(0).max(300_000).default(15_000),
    /**
     * A client connection older than this (±10%, grpc-js's jitter) gets a GOAWAY: its calls
     * finish, new ones go over a new connection, and a `dns:///` round_robin client re-resolves,
     * so it spreads over pods added since it connected. 0 = connections never age out.
     */
    maxConnectionAgeMs: z.coerce.number().int().min(0).max(24 * 3600 * 1000).default(300_000),
    /**
     * After that GOAWAY, how long calls and streams still open on the old connection get before it
     * is closed under them (UNAVAILABLE). 0 = no limit: long streams (log Tail, watches) run on
     * until they end or the process drains, since our stream clients do not resume by themselves.
     */
    maxConnectionAgeGraceMs: z.coerce.number().int().min(0).max(24 * 3600 * 1000).default(0),
  }).prefault({}),
});

export type GantryConfig = z.infer<typeof configSchema>;
/** Config as given (file, overrides): the kit's keys, plus module slices checked by the composed schema. */
export type ConfigInput = z.input<typeof configSchema> & Record<string, unknown>;

/** A module's slice of the config: its key at the top level and its schema (defaults included). */
export interface ConfigSlice {
  key: string;
  schema: z.ZodType;
}

/** What {@link configSchemaFor} needs of a module: its slice, and whether it serves gRPC (so others may call it). */
export interface ConfigSource {
  name: string;
  config?: ConfigSlice;
  /** A target that serves gRPC gets `peers.<name>.address`. */
  servesGrpc: boolean;
}

/** The config schema of a program: the kit's settings, each module's slice, and an address for every gRPC target. */
export function configSchemaFor(modules: readonly ConfigSource[]): z.ZodType<GantryConfig> {
  const peers = configSchema.shape.peers.unwrap();
  const addresses = Object.fromEntries(modules.filter((m) => m.servesGrpc).map((m) => [m.name, peerAddress]));
  const slices: Record<string, z.ZodType> = {};
  for (const m of modules) {
    if (!m.config) continue;
    const { key, schema } = m.config;
    if (key in configSchema.shape || key in slices) throw new Error(`config key "${key}" of module ${m.name} is taken`);
    slices[key] = schema;
  }
  return configSchema.extend({ peers: peers.extend(addresses).prefault({}), ...slices }) as unknown as z.ZodType<GantryConfig>;
}

/** The address configured for a peer target, if any. */
export function peerAddressOf(config: GantryConfig, target: string): string | undefined {
  return (config.peers as unknown as Record<string, { address?: string } | undefined>)[target]?.address;
}

/** A module's slice of a loaded config. */
export function configSlice<T>(config: GantryConfig, key: string): T {
  const slice = (config as unknown as Record<string, unknown>)[key];
  if (slice === undefined) throw new Error(`invariant: config has no "${key}" slice; was its module given to loadConfig?`);
  return slice as T;
}

/** `logLevel` → `LOG_LEVEL`. */
function envSegment(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

type ZodDef = { type: string; shape?: Record<string, z.ZodType>; innerType?: z.ZodType; out?: z.ZodType };
const defOf = (t: z.ZodType) => (t as unknown as { _zod: { def: ZodDef } })._zod.def;

/**
 * Every settable key of `schema` and its environment variable: `GANTRY_` and the path in upper
 * snake case (`listen.healthPort` → `GANTRY_LISTEN_HEALTH_PORT`), so a new key has one at once.
 * A record (per-method rate limits) takes JSON.
 */
export function envNamesOf(schema: z.ZodType): Map<string, string> {
  const names = new Map<string, string>();
  const walk = (node: z.ZodType, path: string[]): void => {
    const def = defOf(node);
    if (def.type === 'object' && def.shape) {
      for (const [key, child] of Object.entries(def.shape)) walk(child, [...path, key]);
    } else if (['default', 'prefault', 'optional', 'nullable'].includes(def.type) && def.innerType) {
      walk(def.innerType, path);
    } else {
      const name = `GANTRY_${path.map(envSegment).join('_')}`;
      const taken = names.get(name);
      if (taken) throw new Error(`invariant: config keys ${taken} and ${path.join('.')} both map to ${name}`);
      names.set(name, path.join('.'));
    }
  };
  walk(schema, []);
  return names;
}

/** Names from before the environment variables were derived from the schema, with their successors. */
const RENAMED_ENV: Record<string, string> = {
  GANTRY_HOST: 'GANTRY_LISTEN_HOST',
  GANTRY_PORT: 'GANTRY_LISTEN_PORT',
  GANTRY_HEALTH_PORT: 'GANTRY_LISTEN_HEALTH_PORT',
  GANTRY_JWT_ISSUER: 'GANTRY_AUTH_ISSUER',
  GANTRY_JWT_AUDIENCE: 'GANTRY_AUTH_AUDIENCE',
  GANTRY_JWT_JWKS_FILE: 'GANTRY_AUTH_JWKS_FILE',
  GANTRY_JWT_JWKS_URL: 'GANTRY_AUTH_JWKS_URL',
  GANTRY_JWT_CLOCK_TOLERANCE_SEC: 'GANTRY_AUTH_CLOCK_TOLERANCE_SEC',
  GANTRY_OTLP_ENDPOINT: 'GANTRY_TELEMETRY_OTLP_ENDPOINT',
  GANTRY_LOG_LEVEL: 'GANTRY_TELEMETRY_LOG_LEVEL',
  GANTRY_MAX_RECEIVE_MESSAGE_BYTES: 'GANTRY_LIMITS_MAX_RECEIVE_MESSAGE_BYTES',
  GANTRY_MAX_SEND_MESSAGE_BYTES: 'GANTRY_LIMITS_MAX_SEND_MESSAGE_BYTES',
  GANTRY_SHUTDOWN_GRACE_MS: 'GANTRY_LIMITS_SHUTDOWN_GRACE_MS',
  GANTRY_MAX_CONNECTION_AGE_MS: 'GANTRY_LIMITS_MAX_CONNECTION_AGE_MS',
  GANTRY_MAX_CONNECTION_AGE_GRACE_MS: 'GANTRY_LIMITS_MAX_CONNECTION_AGE_GRACE_MS',
};

/** Names that are gone, and why. */
const REMOVED_ENV: Record<string, string> = {
  // A shared secret verifies and mints alike: whoever reads it from a pod mints any token.
  GANTRY_AUTH_HMAC_SECRET_FILE: 'an HS256 secret can mint tokens as well as check them; give a JWKS (GANTRY_AUTH_JWKS_FILE or GANTRY_AUTH_JWKS_URL), or GANTRY_AUTH_DEV_ISSUER=true for development',
  GANTRY_JWT_HMAC_SECRET_FILE: 'an HS256 secret can mint tokens as well as check them; give a JWKS (GANTRY_AUTH_JWKS_FILE or GANTRY_AUTH_JWKS_URL), or GANTRY_AUTH_DEV_ISSUER=true for development',
};

/** Names under this prefix belong to test tooling (scripts/test-env, the test suites): never config. */
const TEST_ENV_PREFIX = 'GANTRY_TEST_';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Tree = { [key: string]: unknown };

function setPath(tree: Tree, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = tree;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Tree;
  }
  node[keys[keys.length - 1]!] = value;
}

function mergeInto(target: Tree, source: Tree): Tree {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (value && typeof value === 'object' && !Array.isArray(value) && existing && typeof existing === 'object') {
      mergeInto(existing as Tree, value as Tree);
    } else {
      target[key] = value;
    }
  }
  return target;
}

function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as Tree;
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

/** A record-valued key (per-method limits) given in the environment is JSON. */
function envValue(name: string, value: string, isRecord: boolean): unknown {
  if (!isRecord) return value;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new ConfigError(`invalid config ${name}: not valid JSON (${(err as Error).message})`);
  }
}

/** Applies the GANTRY_* variables of `env` to `tree`; refuses unknown and renamed names. */
function applyEnv(tree: Tree, env: NodeJS.ProcessEnv, schema: z.ZodType, otherNames: ReadonlySet<string>, origin: Map<string, string>): void {
  const names = envNamesOf(schema);
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('GANTRY_') || value === undefined || name.startsWith(TEST_ENV_PREFIX) || otherNames.has(name)) continue;
    const path = names.get(name);
    if (path === undefined) {
      const successor = RENAMED_ENV[name];
      if (successor) throw new ConfigError(`environment variable ${name} was renamed to ${successor}: rename it where it is set`);
      const removed = REMOVED_ENV[name];
      if (removed) throw new ConfigError(`environment variable ${name} is no longer accepted: ${removed}`);
      throw new ConfigError(`unknown environment variable ${name}; known ones: ${[...names.keys()].join(', ')} (docs/configuration.md)`);
    }
    if (value === '') continue;
    setPath(tree, path, envValue(name, value, path === 'rateLimit.methods'));
    origin.set(path, name);
  }
}

export interface LoadConfigOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: ConfigInput;
  /** The program's modules, whose slices and peer addresses the config holds (none: the kit's settings only). */
  modules?: readonly ConfigSource[];
  /** GANTRY_* variables the program reads itself (the CLI's GANTRY_TOKEN), not config. */
  otherEnv?: readonly string[];
}

/**
 * Builds the config from (lowest to highest precedence) defaults, an optional JSON file, the
 * environment, and explicit overrides. Throws ConfigError naming the bad key and where it came from.
 */
export function loadConfig(opts: LoadConfigOptions = {}): GantryConfig {
  const env = opts.env ?? process.env;
  const schema = configSchemaFor(opts.modules ?? []);
  const origin = new Map<string, string>();
  const file = opts.file ?? env.GANTRY_CONFIG_FILE;
  let tree: Tree = file ? readConfigFile(file) : {};
  applyEnv(tree, env, schema, new Set(['GANTRY_CONFIG_FILE', ...(opts.otherEnv ?? [])]), origin);
  if (opts.overrides) tree = mergeInto(tree, opts.overrides as Tree);

  const parsed = schema.safeParse(tree);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.join('.');
    const source = origin.get(path) ?? (file ? `${path} in ${file}` : path);
    const label = origin.has(path) ? `${source} (${path})` : source;
    throw new ConfigError(`invalid config ${label || '(root)'}: ${issue.message}`);
  }
  checkKeySources(parsed.data);
  return parsed.data;
}

/** Choices the schema cannot express: all TLS files or none, at most one JWT key source, a request budget that fits the largest request. */
function checkKeySources(config: GantryConfig): void {
  const tlsSet = [config.tls.caFile, config.tls.certFile, config.tls.keyFile].filter(Boolean).length;
  if (tlsSet !== 0 && tlsSet !== 3) {
    throw new ConfigError('invalid config tls: set all of caFile, certFile and keyFile (GANTRY_TLS_*), or none for the dev PKI');
  }
  const keySources = [config.auth.jwksFile, config.auth.jwksUrl].filter(Boolean).length;
  if (keySources > 1) {
    throw new ConfigError('invalid config auth: set only one of jwksFile, jwksUrl');
  }
  const { maxRequestBytesInFlight, maxReceiveMessageBytes } = config.limits;
  if (maxRequestBytesInFlight < maxReceiveMessageBytes) {
    throw new ConfigError(`invalid config limits.maxRequestBytesInFlight: ${maxRequestBytesInFlight} is below limits.maxReceiveMessageBytes (${maxReceiveMessageBytes}), so a call of the largest request could never be admitted; raise it or lower maxReceiveMessageBytes`);
  }
}
