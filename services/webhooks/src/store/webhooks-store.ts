// The webhooks service's store: its schema and migrations, and its three aggregates: the endpoint
// registry (registry.ts), the delivery queue (delivery-queue.ts) and published events (events.ts),
// and the retention of the last two (retention.ts).
// Every statement names the `webhooks` schema. A caller takes the aggregate it needs; an API call
// that writes more than one (a delete cancels deliveries, a trigger stores an event and queues it)
// does so in one `transaction`.
import { fileURLToPath } from 'node:url';
import { loadMigrations, type Database } from '@gantry/kit';
import { DeliveryQueue, QueueTx } from './delivery-queue.js';
import { EventsTx } from './events.js';
import { EndpointRegistry, RegistryTx } from './registry.js';
import { Retention } from './retention.js';

export const WEBHOOKS_SCHEMA = 'webhooks';
export const webhooksMigrations = loadMigrations(fileURLToPath(new URL('./migrations', import.meta.url)));

/** The statements of one transaction, by aggregate. */
export interface WebhooksTx {
  registry: RegistryTx;
  queue: QueueTx;
  events: EventsTx;
}

/** The store one process shares: the registry's and the queue's reads and own transactions, and transactions across aggregates. */
export class WebhooksStore {
  readonly registry: EndpointRegistry;
  readonly queue: DeliveryQueue;
  readonly retention: Retention;

  constructor(private readonly db: Database) {
    this.registry = new EndpointRegistry(db);
    this.queue = new DeliveryQueue(db);
    this.retention = new Retention(db);
  }

  /** Runs `fn` in one transaction, with each aggregate's statements bound to it. */
  async transaction<T>(fn: (tx: WebhooksTx) => Promise<T>): Promise<T> {
    return this.db.transaction((sql) => fn({ registry: new RegistryTx(sql), queue: new QueueTx(sql), events: new EventsTx(sql) }));
  }
}
