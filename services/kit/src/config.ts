import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** A list given as one string (an environment variable): comma- or newline-separated, blanks dropped. */
function splitList(v: unknown): unknown {
  return typeof v === 'string' ? v.split(/[,\n]/).map((x) => x.trim()).filter((x) => x !== '') : v;
}

/** Every limit and knob of a Gantry process. Units are in the names. */
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
    /** One key source: a JWKS file (re-read on change), a JWKS URL (cached, refetched on unknown kid), or an HS256 secret file (dev only). */
    jwksFile: z.string().optional(),
    jwksUrl: z.url().optional(),
    hmacSecretFile: z.string().optional(),
    clockToleranceSec: z.coerce.number().int().min(0).max(300).default(30),
    /** Tokens living longer than this are refused even if unexpired. */
    maxTokenAgeSec: z.coerce.number().int().min(60).max(31 * 24 * 3600).default(24 * 3600),
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
  }).prefault({}),
  telemetry: z.strictObject({
    /** OTLP/gRPC endpoint, e.g. http://otel-collector:4317; tracing export is off when unset. */
    otlpEndpoint: z.url().optional(),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  }).prefault({}),
  /** The log target's settings. */
  log: z.strictObject({
    /** Checkpoint origin prefix; a partition's origin is "<origin>/<partition>". */
    origin: z.string().regex(/^[\x21-\x7e]{1,200}$/, 'must be printable ASCII without spaces').default('gantry.local/log'),
    /** Ed25519 private key (PKCS#8 PEM) that signs checkpoints; generated under dataDir/log when unset. */
    signingKeyFile: z.string().optional(),
    /** Largest payload of one entry. */
    maxPayloadBytes: z.coerce.number().int().min(1).max(4 * 1024 * 1024).default(1024 * 1024),
  }).prefault({}),
  /** The webhooks target's settings (docs/webhooks.md). */
  webhooks: z.strictObject({
    /**
     * Keys that encrypt endpoint secrets at rest (AES-256-GCM): lines or comma-separated entries
     * `<keyId>=<base64 of 32 bytes>`; the first encrypts, every one decrypts (rotation). A file,
     * or the value itself; when both are unset a dev key is generated under dataDir/webhooks.
     */
    secretKeyFile: z.string().optional(),
    secretKeys: z.string().optional(),
    /** CIDRs deliveries may reach even though they are loopback, private, link-local or metadata addresses. */
    allowedCidrs: z.preprocess(splitList, z.array(z.string().min(1).max(64)).max(100)).default([]),
    /** Delay before each attempt (the first is normally 0): Svix's schedule by default. */
    retryScheduleMs: z.preprocess(splitList, z.array(z.coerce.number().int().min(0).max(7 * 24 * 3600 * 1000)).min(1).max(50))
      .default([0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]),
    /** Each delay is spread uniformly over ±this fraction of itself, so retries of many deliveries do not arrive together. */
    retryJitterRatio: z.coerce.number().min(0).max(1).default(0.2),
    /** Attempts per delivery before it is dead-lettered; past the schedule's end the last delay repeats. */
    maxAttempts: z.coerce.number().int().min(1).max(50).default(8),
    /** One HTTP attempt, connect to last response byte read. */
    attemptTimeoutMs: z.coerce.number().int().min(100).max(120_000).default(15_000),
    /** Longest Retry-After (429/503) honoured; a longer one is cut to this. */
    maxRetryAfterMs: z.coerce.number().int().min(0).max(7 * 24 * 3600 * 1000).default(36_000_000),
    /** An endpoint is disabled after this many failed attempts in a row spanning at least `disableAfterMs` (0 = never). */
    disableAfterFailures: z.coerce.number().int().min(0).max(1_000_000).default(50),
    disableAfterMs: z.coerce.number().int().min(0).max(90 * 24 * 3600 * 1000).default(5 * 24 * 3600 * 1000),
    /** How often an idle dispatcher looks for due deliveries (a publish in any replica wakes it sooner). */
    pollIntervalMs: z.coerce.number().int().min(10).max(60_000).default(1000),
    /** Deliveries one claim takes at most. */
    claimBatch: z.coerce.number().int().min(1).max(1000).default(100),
    /** Attempts one process runs at once, over every endpoint. */
    maxInFlight: z.coerce.number().int().min(1).max(10_000).default(256),
    /** A claimed attempt not finished this long after its timeout is presumed lost (crashed replica) and retried elsewhere. */
    leaseMarginMs: z.coerce.number().int().min(100).max(600_000).default(10_000),
    /** Per-endpoint defaults when its spec says 0. */
    defaultMaxConcurrency: z.coerce.number().int().min(1).max(1000).default(10),
    defaultRateLimitPerSecond: z.coerce.number().int().min(1).max(100_000).default(100),
    /** On shutdown, how long in-flight attempts get to finish before they are aborted (and retried by another replica). */
    drainTimeoutMs: z.coerce.number().int().min(0).max(300_000).default(10_000),
  }).prefault({}),
  /**
   * Other Gantry services this process calls (the outbox relay: log and webhooks). An address is
   * `host:port` or a gRPC target such as `dns:///gantry-log-headless.gantry.svc:7443` (balanced
   * round_robin over every address the name resolves to). Unset: the target in this process when
   * it runs that target, else nobody (its events wait in the outbox until one is set).
   */
  peers: z.strictObject({
    log: z.strictObject({ address: z.string().min(1).max(512).optional() }).prefault({}),
    webhooks: z.strictObject({ address: z.string().min(1).max(512).optional() }).prefault({}),
    /** Only the operator calls these (it pushes feature flags to every service). */
    settlement: z.strictObject({ address: z.string().min(1).max(512).optional() }).prefault({}),
    approvals: z.strictObject({ address: z.string().min(1).max(512).optional() }).prefault({}),
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
    enabled: z.preprocess((v) => (v === 'false' ? false : v === 'true' ? true : v), z.boolean()).default(true),
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
  /** The operator target (`gantry serve --target=operator`, docs/operator.md). */
  operator: z.strictObject({
    /** A kubeconfig file; unset: the in-cluster service account when running in a pod, else $KUBECONFIG or ~/.kube/config. */
    kubeconfig: z.string().min(1).optional(),
    /** The namespace whose Webhooks and FeatureFlags it reconciles; unset: its own pod's namespace (else the kubeconfig context's, else "default"). */
    namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a namespace name').optional(),
    /** The Lease replicas elect a leader with (in `namespace`); only the leader reconciles. */
    leaseName: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be a Kubernetes object name').default('gantry-operator'),
    /** This replica's name in the Lease; unset: the pod name (hostname) plus a random suffix. */
    identity: z.string().min(1).max(128).optional(),
    leaderElection: z.preprocess((v) => (v === 'false' ? false : v === 'true' ? true : v), z.boolean()).default(true),
    /** A standby takes over this long after the leader stopped renewing. */
    leaseDurationMs: z.coerce.number().int().min(1000).max(300_000).default(15_000),
    /** The leader stops reconciling when it could not renew for this long (less than leaseDurationMs). */
    renewDeadlineMs: z.coerce.number().int().min(500).max(300_000).default(10_000),
    /** How often the leader renews and a standby retries. */
    retryPeriodMs: z.coerce.number().int().min(100).max(60_000).default(2_000),
    /** Every object is reconciled again this often, which corrects drift in the services. */
    resyncMs: z.coerce.number().int().min(1000).max(24 * 3600 * 1000).default(300_000),
    /** Objects of one kind reconciled at once. */
    workers: z.coerce.number().int().min(1).max(64).default(2),
  }).prefault({}).refine((o) => o.renewDeadlineMs < o.leaseDurationMs, { message: 'renewDeadlineMs must be less than leaseDurationMs', path: ['renewDeadlineMs'] }),
  limits: z.strictObject({
    // Above the largest request any contract allows (a 4 MiB log batch plus framing), so such
    // requests reach validation and get a precise INVALID_ARGUMENT rather than a transport error.
    maxReceiveMessageBytes: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(8 * 1024 * 1024),
    maxSendMessageBytes: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
    maxConcurrentStreams: z.coerce.number().int().min(1).max(100_000).default(1000),
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
export type ConfigInput = z.input<typeof configSchema>;

/** Environment variable → config path. The only env vars Gantry reads; documented in docs/configuration.md. */
export const ENV_KEYS: Record<string, string> = {
  GANTRY_HOST: 'listen.host',
  GANTRY_PORT: 'listen.port',
  GANTRY_HEALTH_PORT: 'listen.healthPort',
  GANTRY_DATA_DIR: 'dataDir',
  GANTRY_TLS_CA_FILE: 'tls.caFile',
  GANTRY_TLS_CERT_FILE: 'tls.certFile',
  GANTRY_TLS_KEY_FILE: 'tls.keyFile',
  GANTRY_TLS_RELOAD_INTERVAL_MS: 'tls.reloadIntervalMs',
  GANTRY_JWT_ISSUER: 'auth.issuer',
  GANTRY_JWT_AUDIENCE: 'auth.audience',
  GANTRY_JWT_JWKS_FILE: 'auth.jwksFile',
  GANTRY_JWT_JWKS_URL: 'auth.jwksUrl',
  GANTRY_JWT_HMAC_SECRET_FILE: 'auth.hmacSecretFile',
  GANTRY_JWT_CLOCK_TOLERANCE_SEC: 'auth.clockToleranceSec',
  GANTRY_RATE_LIMIT_STORE: 'rateLimit.store',
  GANTRY_RATE_LIMIT_POINTS: 'rateLimit.points',
  GANTRY_RATE_LIMIT_WINDOW_SEC: 'rateLimit.windowSec',
  GANTRY_DATABASE_URL: 'database.url',
  GANTRY_DATABASE_POOL_SIZE: 'database.poolSize',
  GANTRY_DATABASE_STARTUP_TIMEOUT_MS: 'database.startupTimeoutMs',
  GANTRY_OTLP_ENDPOINT: 'telemetry.otlpEndpoint',
  GANTRY_LOG_LEVEL: 'telemetry.logLevel',
  GANTRY_MAX_RECEIVE_MESSAGE_BYTES: 'limits.maxReceiveMessageBytes',
  GANTRY_MAX_SEND_MESSAGE_BYTES: 'limits.maxSendMessageBytes',
  GANTRY_SHUTDOWN_GRACE_MS: 'limits.shutdownGraceMs',
  GANTRY_MAX_CONNECTION_AGE_MS: 'limits.maxConnectionAgeMs',
  GANTRY_MAX_CONNECTION_AGE_GRACE_MS: 'limits.maxConnectionAgeGraceMs',
  GANTRY_LOG_ORIGIN: 'log.origin',
  GANTRY_LOG_SIGNING_KEY_FILE: 'log.signingKeyFile',
  GANTRY_LOG_MAX_PAYLOAD_BYTES: 'log.maxPayloadBytes',
  GANTRY_PEERS_LOG_ADDRESS: 'peers.log.address',
  GANTRY_PEERS_WEBHOOKS_ADDRESS: 'peers.webhooks.address',
  GANTRY_PEERS_SETTLEMENT_ADDRESS: 'peers.settlement.address',
  GANTRY_PEERS_APPROVALS_ADDRESS: 'peers.approvals.address',
  GANTRY_PEERS_SERVER_NAME: 'peers.serverName',
  GANTRY_PEERS_TOKEN_FILE: 'peers.tokenFile',
  GANTRY_OPERATOR_KUBECONFIG: 'operator.kubeconfig',
  GANTRY_OPERATOR_NAMESPACE: 'operator.namespace',
  GANTRY_OPERATOR_LEASE_NAME: 'operator.leaseName',
  GANTRY_OPERATOR_IDENTITY: 'operator.identity',
  GANTRY_OPERATOR_LEADER_ELECTION: 'operator.leaderElection',
  GANTRY_OPERATOR_LEASE_DURATION_MS: 'operator.leaseDurationMs',
  GANTRY_OPERATOR_RENEW_DEADLINE_MS: 'operator.renewDeadlineMs',
  GANTRY_OPERATOR_RETRY_PERIOD_MS: 'operator.retryPeriodMs',
  GANTRY_OPERATOR_RESYNC_MS: 'operator.resyncMs',
  GANTRY_OPERATOR_WORKERS: 'operator.workers',
  GANTRY_EVENTS_ENABLED: 'events.enabled',
  GANTRY_EVENTS_BATCH_SIZE: 'events.batchSize',
  GANTRY_EVENTS_POLL_INTERVAL_MS: 'events.pollIntervalMs',
  GANTRY_EVENTS_MAX_BACKOFF_MS: 'events.maxBackoffMs',
  GANTRY_WEBHOOKS_SECRET_KEY_FILE: 'webhooks.secretKeyFile',
  GANTRY_WEBHOOKS_SECRET_KEYS: 'webhooks.secretKeys',
  GANTRY_WEBHOOKS_ALLOWED_CIDRS: 'webhooks.allowedCidrs',
  GANTRY_WEBHOOKS_RETRY_SCHEDULE_MS: 'webhooks.retryScheduleMs',
  GANTRY_WEBHOOKS_MAX_ATTEMPTS: 'webhooks.maxAttempts',
  GANTRY_WEBHOOKS_ATTEMPT_TIMEOUT_MS: 'webhooks.attemptTimeoutMs',
  GANTRY_WEBHOOKS_DISABLE_AFTER_FAILURES: 'webhooks.disableAfterFailures',
  GANTRY_WEBHOOKS_DISABLE_AFTER_MS: 'webhooks.disableAfterMs',
  GANTRY_WEBHOOKS_POLL_INTERVAL_MS: 'webhooks.pollIntervalMs',
  GANTRY_WEBHOOKS_CLAIM_BATCH: 'webhooks.claimBatch',
  GANTRY_WEBHOOKS_LEASE_MARGIN_MS: 'webhooks.leaseMarginMs',
};

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

/**
 * Builds the config from (lowest to highest precedence) defaults, an optional JSON file, the
 * environment, and explicit overrides. Throws ConfigError naming the bad key and where it came from.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigInput } = {}): GantryConfig {
  const env = opts.env ?? process.env;
  const origin = new Map<string, string>();
  let tree: Tree = {};
  const file = opts.file ?? env.GANTRY_CONFIG_FILE;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
    try {
      tree = JSON.parse(text) as Tree;
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  for (const [name, path] of Object.entries(ENV_KEYS)) {
    const value = env[name];
    if (value !== undefined && value !== '') {
      setPath(tree, path, value);
      origin.set(path, name);
    }
  }
  const unknownEnv = Object.keys(env).filter((k) => k.startsWith('GANTRY_') && !(k in ENV_KEYS) && !IGNORED_ENV.has(k));
  if (unknownEnv.length > 0) {
    throw new ConfigError(`unknown environment variable ${unknownEnv[0]}; known ones: ${Object.keys(ENV_KEYS).join(', ')}`);
  }
  if (opts.overrides) tree = mergeInto(tree, opts.overrides as Tree);

  const parsed = configSchema.safeParse(tree);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.join('.');
    const source = origin.get(path) ?? (file ? `${path} in ${file}` : path);
    const label = origin.has(path) ? `${source} (${path})` : source;
    throw new ConfigError(`invalid config ${label || '(root)'}: ${issue.message}`);
  }
  const config = parsed.data;
  const tlsSet = [config.tls.caFile, config.tls.certFile, config.tls.keyFile].filter(Boolean).length;
  if (tlsSet !== 0 && tlsSet !== 3) {
    throw new ConfigError('invalid config tls: set all of caFile, certFile and keyFile (GANTRY_TLS_*), or none for the dev PKI');
  }
  const keySources = [config.auth.jwksFile, config.auth.jwksUrl, config.auth.hmacSecretFile].filter(Boolean).length;
  if (keySources > 1) {
    throw new ConfigError('invalid config auth: set only one of jwksFile, jwksUrl, hmacSecretFile');
  }
  return config;
}

/** GANTRY_* variables read by other parts (tests, scripts) rather than the server config. */
const IGNORED_ENV = new Set(['GANTRY_CONFIG_FILE', 'GANTRY_TEST_DATABASE_URL', 'GANTRY_TEST_PG_PORT', 'GANTRY_TEST_KUBE_PORT', 'GANTRY_KUBE_CACHE_DIR', 'GANTRY_TOOLS_DIR', 'GANTRY_TOKEN', 'GANTRY_ADDRESS']);
