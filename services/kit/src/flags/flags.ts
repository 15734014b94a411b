// Wires one process's flags: the store in its schema, the change feed, the evaluation snapshot, the
// OpenFeature provider under a domain of its own (the OpenFeature API is a process-wide singleton
// and one process may run several runtimes, as tests do), and the FlagsService module.
import { NOOP_PROVIDER, OpenFeature, type Client } from '@openfeature/server-sdk';
import type { Logger } from '../logger.js';
import type { ServiceModule } from '../rpc/service.js';
import type { Database } from '../storage/database.js';
import { FLAGS_LIMITS, type FlagsLimits } from './limits.js';
import { GantryFlagsProvider } from './provider.js';
import { flagsModule } from './service.js';
import { FlagsSnapshot, flagsFeed } from './snapshot.js';
import { FlagsStore } from './store.js';

/** A process's flags, running. */
export interface FlagsRuntime {
  /** The OpenFeature client services evaluate with (in memory; no database access). */
  client: Client;
  /** The OpenFeature domain the provider is registered under. */
  domain: string;
  module: ServiceModule;
  store: FlagsStore;
  snapshot: FlagsSnapshot;
  stop(): Promise<void>;
}

let domains = 0;

/** Starts the flags of a process whose schema `schema` is migrated already. */
export async function startFlags(opts: { db: Database; schema: string; log: Logger; limits?: Partial<FlagsLimits>; now?: () => Date }): Promise<FlagsRuntime> {
  const limits: FlagsLimits = { ...FLAGS_LIMITS, ...opts.limits };
  const log = opts.log;
  const store = new FlagsStore(opts.db, opts.schema, limits);
  const provider = new GantryFlagsProvider(log);
  const feed = flagsFeed(store, limits, log);
  const snapshot = new FlagsSnapshot(store, feed, limits, log, (flags) => provider.setFlags(flags));
  await feed.start();
  try {
    await snapshot.start();
  } catch (err) {
    await feed.stop();
    throw err;
  }
  const domain = `gantry-flags/${opts.schema}/${process.pid}.${++domains}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  const client = OpenFeature.getClient(domain);
  const module = flagsModule({ store, feed, snapshot, limits, now: opts.now ?? (() => new Date()) });
  return {
    client,
    domain,
    module,
    store,
    snapshot,
    async stop() {
      // Clients of this domain fall back to the no-op provider (the caller's defaults).
      OpenFeature.setProvider(domain, NOOP_PROVIDER);
      await provider.onClose();
      await snapshot.stop();
      await feed.stop();
    },
  };
}
