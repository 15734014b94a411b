// Helpers for the webhooks tests: the webhooks target in this process on either engine (or another
// replica on the same PostgreSQL database) with a clock the test moves, a real local HTTP receiver
// that verifies what it gets, and clients with tokens per caller.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metadata } from '@grpc/grpc-js';
import { bearerMetadata, clientCredentials, clientOptions, FlagsClient, unary, type ConfigInput, type Runtime, type WorkloadGrant } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import { tokenFor, workloadCredentials } from '@gantry/test-support/clients';
import type { EngineName } from '@gantry/test-support/databases';
import { startServicePlatform } from '@gantry/test-support/harness';
import { Collector } from '@gantry/test-support/streams';
import { createWebhooksService, type WebhooksConfigInput, type WebhooksOptions, type WebhooksStreams } from '../src/index.js';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';

export type WebhooksClient = InstanceType<typeof webhooksv1.WebhooksServiceClient>;
export const ALL_SCOPES = ['webhooks.manage', 'webhooks.read', 'webhooks.publish'];
/**
 * What registrations take by default: the local receiver at 127.0.0.1 is an internal target
 * allow-listed by a bare CIDR, which only an administrator may register (docs/security.md, Webhooks).
 */
export const REGISTRAR_SCOPES = [...ALL_SCOPES, 'webhooks.admin'];

export interface WebhooksPlatform {
  runtime: Runtime;
  client: WebhooksClient;
  /** The platform's data dir (dev PKI, the generated key ring of webhooks/secret-keys). */
  dataDir: string;
  /** A client that calls as platform workload `name` (its certificate, no token). */
  asWorkload(name: string): Promise<WebhooksClient>;
  databaseUrl: string | undefined;
  as(subject: string, scopes?: string[]): Metadata;
  clock: { nowMs: number };
  /** The watches this process serves now (set once the service runs). */
  streams: () => { registry: number; deliveries: number };
  /** The process's FlagsService, with a flags.write token (kill switches). */
  flags: FlagsClient;
  close(): Promise<void>;
}

/** Config that keeps tests quick: the local receiver allow-listed, fast polling, short timeouts. */
export const TEST_WEBHOOKS_CONFIG = {
  allowedCidrs: ['127.0.0.1/32'],
  pollIntervalMs: 50,
  attemptTimeoutMs: 2000,
  leaseMarginMs: 1000,
  drainTimeoutMs: 2000,
} satisfies WebhooksConfigInput;

export async function startWebhooksPlatform(
  engine: EngineName,
  opts: {
    options?: WebhooksOptions;
    webhooks?: WebhooksConfigInput;
    sharedDatabaseUrl?: string;
    clock?: { nowMs: number };
    spanProcessors?: SpanProcessor[];
    /** Platform workloads the service knows (their scopes and event families), as `gantry serve` grants targets. */
    workloads?: ReadonlyMap<string, WorkloadGrant>;
  } = {},
): Promise<WebhooksPlatform> {
  const clock = opts.clock ?? { nowMs: Date.now() };
  let streams: WebhooksStreams | undefined;
  const factory = createWebhooksService({
    random: () => 0.5,
    ...opts.options,
    now: () => clock.nowMs,
    onStreams: (s) => {
      streams = s;
      opts.options?.onStreams?.(s);
    },
  });
  const overrides: ConfigInput = {
    rateLimit: { points: 100_000, windowSec: 1 },
    webhooks: { ...TEST_WEBHOOKS_CONFIG, ...opts.webhooks },
  };
  const platform = await startServicePlatform(engine, [factory], {
    dbLabel: 't_hooks',
    poolSize: 6,
    overrides,
    spanProcessors: opts.spanProcessors,
    sharedDatabaseUrl: opts.sharedDatabaseUrl,
    ...(opts.workloads ? { workloads: opts.workloads } : {}),
  });
  const { runtime, dataDir, tls } = platform;
  const client = new webhooksv1.WebhooksServiceClient(platform.address, clientCredentials(tls), clientOptions(tls));
  const pool = (runtime.db as { pool?: { options: { connectionString?: string } } }).pool;
  const flagsToken = bearerMetadata(tokenFor(dataDir, 'sre', ['flags.write']));
  const flags = new FlagsClient(platform.address, clientCredentials(tls), clientOptions(tls), () => flagsToken);
  const workloadClients: WebhooksClient[] = [];
  return {
    runtime,
    client,
    dataDir,
    async asWorkload(name) {
      const c = new webhooksv1.WebhooksServiceClient(platform.address, await workloadCredentials(dataDir, name), clientOptions(tls));
      workloadClients.push(c);
      return c;
    },
    databaseUrl: opts.sharedDatabaseUrl ?? pool?.options.connectionString,
    as: (subject, scopes = ALL_SCOPES) => bearerMetadata(tokenFor(dataDir, subject, scopes)),
    clock,
    streams: () => streams?.active ?? { registry: 0, deliveries: 0 },
    flags,
    async close() {
      client.close();
      for (const c of workloadClients) c.close();
      flags.close();
      await platform.close();
    },
  };
}

export const spec = (url: string, over: Partial<webhooksv1.WebhookSpec> = {}): webhooksv1.WebhookSpec => ({
  url,
  eventTypes: ['order.created'],
  headers: {},
  description: '',
  paused: false,
  rateLimitPerSecond: 0,
  maxConcurrency: 0,
  labels: {},
  ...over,
});

/** A PublishEventRequest with defaults for what `req` leaves out. */
export const event = (req: Partial<webhooksv1.PublishEventRequest> & { eventId: string }): webhooksv1.PublishEventRequest => ({
  eventType: 'order.created',
  payload: Buffer.from('{"order":1}'),
  contentType: '',
  owner: '',
  occurredAt: undefined,
  traceContext: {},
  ...req,
});

/**
 * The unary RPCs as promises, as `subject`. Without `scopes`, create and update go with
 * REGISTRAR_SCOPES (the local receiver is an admin's to register) and the rest with ALL_SCOPES.
 */
export function rpc(p: WebhooksPlatform, subject = 'alice', scopes?: string[]) {
  const c = p.client;
  const md = p.as(subject, scopes);
  const registrar = p.as(subject, scopes ?? REGISTRAR_SCOPES);
  return {
    create: (req: Partial<webhooksv1.CreateWebhookRequest>) => unary(c.createWebhook, c, { owner: '', externalId: '', spec: undefined, secret: '', ...req }, registrar),
    get: (webhookId: string) => unary(c.getWebhook, c, { webhookId }, md).then((r) => r.webhook!),
    list: (req: Partial<webhooksv1.ListWebhooksRequest> = {}) => unary(c.listWebhooks, c, { owner: '', status: 0, externalId: '', pageSize: 0, pageToken: '', ...req }, md),
    update: (req: Partial<webhooksv1.UpdateWebhookRequest> & { webhookId: string }) => unary(c.updateWebhook, c, { spec: undefined, updateMask: undefined, reenable: false, ...req }, registrar).then((r) => r.webhook!),
    delete: (webhookId: string) => unary(c.deleteWebhook, c, { webhookId }, md),
    rotate: (webhookId: string, overlapSec?: number, secret = '') =>
      unary(c.rotateSecret, c, { webhookId, overlap: overlapSec === undefined ? undefined : { seconds: BigInt(overlapSec), nanos: 0 }, secret }, md),
    publish: (req: Partial<webhooksv1.PublishEventRequest> & { eventId: string }) => unary(c.publishEvent, c, event(req), md),
    publishBatch: (events: (Partial<webhooksv1.PublishEventRequest> & { eventId: string })[]) => unary(c.publishEvents, c, { events: events.map(event) }, md),
    trigger: (webhookId: string) => unary(c.triggerWebhook, c, { webhookId, eventType: '', payload: Buffer.alloc(0) }, md),
    history: (req: Partial<webhooksv1.GetDeliveryHistoryRequest> = {}) => unary(c.getDeliveryHistory, c, { webhookId: '', eventId: '', status: 0, since: undefined, pageSize: 0, pageToken: '', ...req }, md),
    retry: (req: webhooksv1.RetryFailedDeliveriesRequest) => unary(c.retryFailedDeliveries, c, req, md),
    stats: (webhookId: string, windowSec?: number) => unary(c.getWebhookStatistics, c, { webhookId, window: windowSec === undefined ? undefined : { seconds: BigInt(windowSec), nanos: 0 } }, md),
  };
}

/** Opens WatchWebhookRegistry as `subject`. */
export function watchRegistry(p: WebhooksPlatform, req: Partial<webhooksv1.WatchWebhookRegistryRequest>, subject = 'alice', scopes?: string[]): Collector<webhooksv1.WatchWebhookRegistryResponse> {
  return new Collector(p.client.watchWebhookRegistry({ owner: '', fromVersion: 0n, ...req }, p.as(subject, scopes), { deadline: Date.now() + 60_000 }));
}

/** Opens WatchDeliveries as `subject`. */
export function watchDeliveries(p: WebhooksPlatform, req: Partial<webhooksv1.WatchDeliveriesRequest>, subject = 'alice'): Collector<webhooksv1.WatchDeliveriesResponse> {
  return new Collector(p.client.watchDeliveries({ webhookId: '', eventTypes: [], ...req }, p.as(subject), { deadline: Date.now() + 60_000 }));
}

/** Server streams are read with the shared Collector (test-support/streams.ts). */
export { Collector };

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A real HTTP server on 127.0.0.1 that records each request and answers as `respond` says (default 200). */
export class Receiver {
  readonly received: Received[] = [];
  /** Answers per path, taken in order; when none is left, 200. */
  readonly script = new Map<string, { status: number; headers?: Record<string, string>; delayMs?: number }[]>();
  /** Paths whose requests are held open until `release` (for concurrency tests). */
  readonly hold = new Set<string>();
  /** Requests open now, and the most ever open at once, per path. */
  readonly open = new Map<string, number>();
  readonly peak = new Map<string, number>();
  private held: (() => void)[] = [];
  private server!: Server;
  port = 0;

  /** Answers every held request (as scripted) and stops holding `path`. */
  release(path: string): void {
    this.hold.delete(path);
    const held = this.held;
    this.held = [];
    for (const answer of held) answer();
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '';
        this.received.push({ path, headers: req.headers, body: Buffer.concat(chunks) });
        const open = (this.open.get(path) ?? 0) + 1;
        this.open.set(path, open);
        this.peak.set(path, Math.max(open, this.peak.get(path) ?? 0));
        const next = this.script.get(path)?.shift() ?? { status: 200 };
        const answer = () =>
          setTimeout(() => {
            this.open.set(path, (this.open.get(path) ?? 1) - 1);
            res.writeHead(next.status, next.headers ?? {});
            res.end(`answer ${next.status}`);
          }, next.delayMs ?? 0);
        if (this.hold.has(path)) this.held.push(answer);
        else answer();
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  at(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

let counter = 0;
/** A path no other test uses. */
export const uniquePath = (name: string) => `/${name}-${process.pid}-${++counter}`;
