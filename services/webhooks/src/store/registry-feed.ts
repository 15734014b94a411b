// The registry's change history as the kit's change feed reads it (services/kit/src/streams/
// change-feed.ts: one reader per process, bounded per-watch queues, a stalled watch cut off).
import { ChangeFeed, type Database, type FeedLimits, type Logger } from '@gantry/kit';
import { webhookFromJson, type RegistryChangeType, type WebhookRecord } from '../domain/webhook.js';
import type { EndpointRegistry } from './registry.js';
import { REGISTRY_CHANNEL } from './sql.js';
import type { WebhooksStore } from './webhooks-store.js';

/** A registry change with the webhook as of that change: what registry watches send. */
export interface RegistryEvent {
  version: bigint;
  type: RegistryChangeType;
  owner: string;
  webhook: WebhookRecord;
  /** Approximate size, for the queues' byte bounds. */
  bytes: number;
}

export interface RegistryFeedLimits extends FeedLimits {
  /** Changes one read takes from the database. */
  readChanges: number;
}

/** Fixed cost counted per event on top of its JSON. */
const EVENT_OVERHEAD_BYTES = 256;

/** Changes with version > `after` (of `owner` unless ''), with the head and oldest retained version of the same snapshot. */
export async function readRegistryEvents(
  registry: EndpointRegistry,
  after: bigint,
  readChanges: number,
  owner: string,
): Promise<{ events: RegistryEvent[]; head: bigint; oldestRetained: bigint; complete: boolean }> {
  const page = await registry.changesAfter(after, readChanges, owner);
  const events = page.changes.map((c) => ({
    version: c.version,
    type: c.type,
    owner: c.owner,
    webhook: webhookFromJson(c.webhook),
    bytes: JSON.stringify(c.webhook).length + EVENT_OVERHEAD_BYTES,
  }));
  return { events, head: page.head, oldestRetained: page.oldestRetained, complete: page.changes.length < readChanges };
}

export type RegistryFeed = ChangeFeed<RegistryEvent>;

/** The process's follower of the registry history (the kit's change feed on this store). */
export function registryFeed(db: Database, store: Pick<WebhooksStore, 'registry'>, limits: RegistryFeedLimits, log: Logger): RegistryFeed {
  return new ChangeFeed<RegistryEvent>(
    db,
    REGISTRY_CHANNEL,
    { head: () => store.registry.headVersion(), read: async (after) => (await readRegistryEvents(store.registry, after, limits.readChanges, '')).events },
    limits,
    log,
    'webhooks registry',
  );
}
