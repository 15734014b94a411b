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
  const client = answeringUndefinedFlagsAtOnce(OpenFeature.getClient(domain), provider);
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

/**
 * Makes the client's value lookups (get*Value) of a flag nobody has defined answer the caller's
 * default at once. The SDK answers the same value, but only after its whole evaluation: hook
 * contexts, spread copies, and a FLAG_NOT_FOUND error it builds, with a stack, from the provider's
 * error code. That cost about 30 µs a call, paid by every signed draw for a kill switch that is
 * usually not defined. Only while no hook is registered, since hooks see every evaluation (the
 * kit registers none); details lookups (get*Details) keep the SDK's answer and its error code.
 */
function answeringUndefinedFlagsAtOnce(client: Client, provider: GantryFlagsProvider): Client {
  const hooked = () => client.getHooks().length > 0 || OpenFeature.getHooks().length > 0;
  const atOnce = <T>(evaluate: (flagKey: string, defaultValue: T, ...rest: never[]) => Promise<T>) => {
    const sdk = evaluate.bind(client);
    return (flagKey: string, defaultValue: T, ...rest: never[]): Promise<T> => (provider.knows(flagKey) || hooked() ? sdk(flagKey, defaultValue, ...rest) : Promise.resolve(defaultValue));
  };
  // Own properties of this one client object: its state (hooks, handlers, context) stays the SDK's.
  client.getBooleanValue = atOnce(client.getBooleanValue) as Client['getBooleanValue'];
  client.getStringValue = atOnce(client.getStringValue) as Client['getStringValue'];
  client.getNumberValue = atOnce(client.getNumberValue) as Client['getNumberValue'];
  client.getObjectValue = atOnce(client.getObjectValue) as Client['getObjectValue'];
  return client;
}
