// A webhooks schema on a fresh database of either engine, for tests that drive the store directly
// (no service, no dispatcher), and endpoints with deliveries made through the store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, openPglite, openPostgres, type Database } from '@gantry/kit';
import { freshPgliteDir, freshPostgresDatabase, type EngineName } from '@gantry/test-support/databases';
import type { Spec } from '../src/domain/webhook.js';
import type { EventRow } from '../src/store/events.js';
import { WEBHOOKS_SCHEMA, WebhooksStore, webhooksMigrations } from '../src/store/webhooks-store.js';

export interface QueueDatabase {
  db: Database;
  store: WebhooksStore;
  close(): Promise<void>;
}

/** A migrated webhooks schema on a fresh PGlite directory or PostgreSQL database (`label` names the latter). */
export async function openQueueDatabase(engine: EngineName, label: string): Promise<QueueDatabase> {
  let db: Database;
  let cleanup: () => Promise<void>;
  if (engine === 'PGlite') {
    const dir = mkdtempSync(join(tmpdir(), `gantry-${label}-`));
    await freshPgliteDir(join(dir, 'db'));
    db = await openPglite(join(dir, 'db'));
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  } else {
    const fresh = await freshPostgresDatabase(label);
    db = await openPostgres({ url: fresh.url, poolSize: 2, statementTimeoutMs: 10_000 });
    cleanup = fresh.drop;
  }
  await migrate(db, WEBHOOKS_SCHEMA, webhooksMigrations);
  return {
    db,
    store: new WebhooksStore(db),
    async close() {
      await db.close();
      await cleanup();
    },
  };
}

/** A new endpoint `id` subscribed to a type of its own, and `count` deliveries to it (one event each) queued at `at`, of `maxAttempts` each. */
export async function endpointWithDeliveries(
  store: WebhooksStore,
  id: string,
  opts: { count: number; maxAttempts?: number; at?: Date; spec?: Partial<Spec> },
): Promise<{ webhookId: string; deliveryIds: string[]; eventIds: string[] }> {
  const type = `queue.${id}`;
  const at = opts.at ?? new Date();
  const spec: Spec = { url: `http://127.0.0.1/${id}`, eventTypes: [type], headers: {}, description: '', paused: false, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {}, ...opts.spec };
  const events: EventRow[] = Array.from({ length: opts.count }, (_, i) => ({
    eventId: `evt-${id}-${i}`, eventType: type, owner: 'queue', family: '', payload: Buffer.from('{}'), contentType: 'application/json', digest: Buffer.alloc(32), occurredAt: null, traceContext: {},
  }));
  return store.transaction(async (tx) => {
    await tx.registry.insert({ id, owner: 'queue', externalId: '', spec, families: [], internalApproved: false, secret: { keyId: 'k', ciphertext: Buffer.from('sealed') }, headers: null, at });
    await tx.events.insertEvents(events, at);
    const queued = await tx.events.fanOut(events, opts.maxAttempts ?? 8, at);
    return { webhookId: id, deliveryIds: events.flatMap((e) => queued.get(e.eventId) ?? []), eventIds: events.map((e) => e.eventId) };
  });
}
