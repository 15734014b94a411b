import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BATCH_REQUEST_BYTES, defineModule, openPostgres, defineService, ProviderEvents, scopesOf, type GantryModule, type Logger, type ServiceDeps } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import { webhooksHandlers } from './api/handlers.js';
import { WEBHOOKS_ADMIN_SCOPE, webhooksScopes } from './api/scopes.js';
import { webhooksConfig, type WebhooksConfig } from './config.js';
import { WebhooksStreams } from './api/streams.js';
import { AddressGuard } from './domain/address-guard.js';
import { PLATFORM_READ_SCOPES } from './domain/families.js';
import { DELIVERY_PAUSED_FLAG } from './domain/flags.js';
import { KEY_BYTES, parseKeyring, SecretBox } from './domain/secret-box.js';
import { headerNamesOnly } from './domain/webhook.js';
import { Dispatcher, headersAadFor, type DispatcherOptions } from './delivery/dispatcher.js';
import { HttpSender, systemResolver, type Resolver } from './delivery/http.js';
import { Pruner } from './delivery/pruner.js';
import { QueuedNotifier } from './delivery/queued-notifier.js';
import { deliveryCounter, observeQueueDepth } from './metrics.js';
import { registryFeed } from './store/registry-feed.js';
import { startRegistryRetention } from './store/registry-retention.js';
import { QUEUED_CHANNEL } from './store/sql.js';
import { WEBHOOKS_SCHEMA, WebhooksStore, webhooksMigrations } from './store/webhooks-store.js';

export interface WebhooksOptions {
  /** The service clock in ms (due times, retry delays, signature timestamps); tests pass a fake one. */
  now?: () => number;
  /** Random source in [0, 1) for retry jitter. */
  random?: () => number;
  /** DNS resolution for the SSRF guard and connections; tests pass a fake one (DNS rebinding). */
  resolver?: Resolver;
  /** Called with each process's dispatcher once it runs (tests and benchmarks). */
  onDispatcher?: (d: Dispatcher) => void;
  /** Called with each process's watches once they run (tests wait for a watch to be live). */
  onStreams?: (s: WebhooksStreams) => void;
  /** A watch's queue of changes not yet sent: past this many it is cut off (tests make it small). */
  streamQueueEvents?: number;
}

/** Defaults of the tunables that are not config; each is a bound docs/webhooks.md states. */
export const WEBHOOKS_DEFAULTS = {
  registryReadChanges: 500,
  streamPollMs: 1000,
  bookmarkIntervalMs: 15_000,
  streamQueueEvents: 1000,
  /** Bytes one registry watch may have queued (about 1,000 webhooks of full size). */
  streamQueueBytes: 16 * 1024 * 1024,
  /** Registry watches and, separately, delivery watches per process. */
  maxStreams: 10_000,
  /** Outcome transactions one process runs at once (delivery/outcome-committer.ts). */
  outcomeTxInFlight: 2,
  /** Endpoints one claim looks at. */
  claimEndpoints: 100,
  /** Batches of each kind one retention pass deletes at most (delivery/pruner.ts). */
  pruneBatchesPerPass: 100,
  /** Endpoints whose plaintext header values one start-up transaction seals. */
  sealHeadersBatch: 500,
} as const;

/** The key ring that seals endpoint secrets: from config, or a dev key generated under dataDir/webhooks. */
async function loadSecretBox(w: WebhooksConfig, dataDir: string): Promise<{ box: SecretBox; generated?: string }> {
  if (w.secretKeyFile && w.secretKeys) throw new Error('set only one of webhooks.secretKeyFile (GANTRY_WEBHOOKS_SECRET_KEY_FILE) and webhooks.secretKeys (GANTRY_WEBHOOKS_SECRET_KEYS)');
  if (w.secretKeys) return { box: new SecretBox(parseKeyring(w.secretKeys, 'webhooks.secretKeys')) };
  if (w.secretKeyFile) return { box: new SecretBox(parseKeyring(readFileSync(w.secretKeyFile, 'utf8'), w.secretKeyFile)) };
  const dir = resolve(dataDir, 'webhooks');
  const file = join(dir, 'secret-keys');
  let generated: string | undefined;
  if (!existsSync(file)) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(file, `dev-${randomBytes(4).toString('hex')}=${randomBytes(KEY_BYTES).toString('base64')}\n`, { mode: 0o600 });
    await chmod(file, 0o600);
    generated = file;
  }
  return { box: new SecretBox(parseKeyring(readFileSync(file, 'utf8'), file)), ...(generated ? { generated } : {}) };
}

/** Header values stored in the clear by an earlier version, sealed now, a batch per transaction; returns how many endpoints. */
export async function sealPlaintextHeaders(store: WebhooksStore, box: SecretBox): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await store.transaction(async (tx) => {
      const rows = await tx.registry.plaintextHeaders(WEBHOOKS_DEFAULTS.sealHeadersBatch);
      for (const r of rows) {
        await tx.registry.sealHeaders(r.id, headerNamesOnly(r.headers), box.seal(JSON.stringify(r.headers), headersAadFor(r.id)));
      }
      return rows.length;
    });
    total += n;
    if (n < WEBHOOKS_DEFAULTS.sealHeadersBatch) return total;
  }
}

/** The delivery dispatcher of one process, on the module's settings and the shared defaults. */
function dispatcherFor(o: { store: WebhooksStore; box: SecretBox; guard: AddressGuard; resolver: Resolver; now: () => number; random: () => number; settings: WebhooksConfig; flags: ServiceDeps['flags']; log: Logger; counted: DispatcherOptions['counted'] }): Dispatcher {
  const { settings: c, flags } = o;
  const d = WEBHOOKS_DEFAULTS;
  return new Dispatcher(
    o.store,
    o.box,
    new HttpSender(o.guard, o.resolver, c.attemptTimeoutMs, { connectionsPerOrigin: c.connectionsPerOrigin, maxPools: c.maxConnectionPools, maxOriginsPerPool: c.maxOriginsPerPool }),
    {
      now: o.now,
      random: o.random,
      policy: { scheduleMs: c.retryScheduleMs, jitterRatio: c.retryJitterRatio, maxAttempts: c.maxAttempts, maxRetryAfterMs: c.maxRetryAfterMs },
      disableRule: { failures: c.disableAfterFailures, forMs: c.disableAfterMs },
      attemptTimeoutMs: c.attemptTimeoutMs,
      pollIntervalMs: c.pollIntervalMs,
      claimLingerMs: c.claimLingerMs,
      maxInFlight: c.maxInFlight,
      maxQueuedOutcomes: c.maxQueuedOutcomes,
      outcomes: { maxPerTx: c.outcomeBatch, maxTxInFlight: d.outcomeTxInFlight },
      claim: {
        endpoints: d.claimEndpoints,
        batch: c.claimBatch,
        defaultMaxConcurrency: c.defaultMaxConcurrency,
        defaultRateLimitPerSecond: c.defaultRateLimitPerSecond,
        leaseMs: c.attemptTimeoutMs + c.leaseMarginMs,
      },
      drainTimeoutMs: c.drainTimeoutMs,
      onDisabled: () => undefined,
      counted: o.counted,
      paused: () => flags.getBooleanValue(DELIVERY_PAUSED_FLAG, false),
    },
    o.log,
  );
}

/** The webhooks target with injected clock, randomness and resolver (tests); `webhooksService` uses the real ones. */
export function createWebhooksService(opts: WebhooksOptions = {}): GantryModule {
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const resolver = opts.resolver ?? systemResolver;
  const d = WEBHOOKS_DEFAULTS;
  return defineModule<WebhooksConfig>({
    name: 'webhooks',
    config: webhooksConfig,
    // Handlers check the admin scope and, for subscriptions to the platform's event families, their read scopes.
    scopes: scopesOf([webhooksScopes], [WEBHOOKS_ADMIN_SCOPE, ...PLATFORM_READ_SCOPES]),
    schema: { name: WEBHOOKS_SCHEMA, migrations: webhooksMigrations },
    async create({ db, config, settings: c, log, onShutdown, flags }) {
      const { box, generated } = await loadSecretBox(c, config.dataDir);
      if (generated) log.info({ file: generated }, 'created a dev key for webhook secrets at rest; set webhooks.secretKeyFile in production');
      const guard = new AddressGuard(c.allowedCidrs, c.allowedPorts);
      const store = new WebhooksStore(db);
      const sealed = await sealPlaintextHeaders(store, box);
      if (sealed > 0) log.info({ endpoints: sealed }, 'encrypted the header values of endpoints registered before they were sealed');
      const queueEvents = opts.streamQueueEvents ?? d.streamQueueEvents;
      const feed = registryFeed(db, store, { readChanges: d.registryReadChanges, queueEvents, queueBytes: d.streamQueueBytes, maxSubscriptions: d.maxStreams, pollMs: d.streamPollMs }, log);
      const streams = new WebhooksStreams(db, store, feed, { readChanges: d.registryReadChanges, pollMs: d.streamPollMs, bookmarkIntervalMs: d.bookmarkIntervalMs, queueEvents, maxStreams: d.maxStreams }, log);
      await streams.start();
      opts.onStreams?.(streams);
      const stopRetention = startRegistryRetention(db, c, now, log);
      // The dispatcher's own connections (webhooks.dispatcherPoolSize); LISTEN stays on the service's database.
      const own = config.database.url && db.engine === 'postgres' && c.dispatcherPoolSize > 0
        ? await openPostgres({ url: config.database.url, poolSize: c.dispatcherPoolSize, statementTimeoutMs: config.database.statementTimeoutMs, pingIntervalMs: config.database.pingIntervalMs, pingTimeoutMs: config.database.pingTimeoutMs })
        : undefined;
      const deliveryStore = own ? new WebhooksStore(own) : store;
      const counted = deliveryCounter();
      const dispatcher = dispatcherFor({ store: deliveryStore, box, guard, resolver, now, random, settings: c, flags, log, counted });
      const depth = observeQueueDepth(store.queue);
      const unlisten = await db.listen(QUEUED_CHANNEL, () => dispatcher.wake());
      // Publish calls send no NOTIFY in their transactions; the other replicas hear of their work through this.
      const notifier = new QueuedNotifier(() => db.notify(QUEUED_CHANNEL, ''), log);
      // A flag change (turning the kill switch off) resumes delivery at once, not at the next poll.
      const onFlagsChanged = () => dispatcher.wake();
      flags.addHandler(ProviderEvents.ConfigurationChanged, onFlagsChanged);
      dispatcher.start();
      opts.onDispatcher?.(dispatcher);
      const pruner = new Pruner(
        deliveryStore.retention,
        { now, retainDeliveriesMs: c.retainDeliveriesMs, retainEventsMs: c.retainEventsMs, intervalMs: c.pruneIntervalMs, batch: c.pruneBatch, maxBatchesPerPass: d.pruneBatchesPerPass },
        log,
      );
      pruner.start();
      onShutdown(async () => {
        await unlisten();
        await notifier.drain();
        depth.stop();
        flags.removeHandler(ProviderEvents.ConfigurationChanged, onFlagsChanged);
        await pruner.stop();
        await dispatcher.stop();
        await stopRetention();
        await own?.close();
        await streams.stop();
      });
      return [
        defineService({
          name: 'gantry.webhooks.v1.WebhooksService',
          definition: webhooksv1.WebhooksServiceService,
          scopes: webhooksScopes,
          handlers: webhooksHandlers({ store, box, guard, resolver, now, maxAttempts: () => c.maxAttempts, queued: (created = 0) => {
            counted('queued', created);
            dispatcher.wake();
            notifier.signal();
          },
          streams,
        }),
          // A 256 KiB payload and its fields; a spec's headers and labels (up to ~130 KiB in UTF-8); a batch of events.
          maxRequestBytes: { publishEvent: 512 * 1024, triggerWebhook: 512 * 1024, createWebhook: 256 * 1024, updateWebhook: 256 * 1024, publishEvents: BATCH_REQUEST_BYTES },
        }),
      ];
    },
  });
}

/** The webhooks target: a registry of endpoints and a durable, signed outbound delivery queue. */
export const webhooksService: GantryModule = createWebhooksService();

export { WebhooksStore } from './store/webhooks-store.js';
export type { Dispatcher } from './delivery/dispatcher.js';
export { RESUME_VERSION_TRAILER, type WebhooksStreams } from './api/streams.js';
export { webhooksConfig, webhooksConfigSchema, type WebhooksConfig, type WebhooksConfigInput } from './config.js';
export { webhooksSink } from './sink.js';
