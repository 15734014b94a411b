import type { Client as OpenFeatureClient } from '@openfeature/server-sdk';
import type { ConfigSlice, ConfigSource, GantryConfig } from '../config.js';
import type { EventCatalogue, Outbox } from '../events/outbox.js';
import type { HealthState } from '../health/health.js';
import type { Logger } from '../logger.js';
import type { ScopeTable, ServiceModule } from '../rpc/service.js';
import type { Database } from '../storage/database.js';
import type { Migration } from '../storage/migrations.js';
import type { TlsFiles } from '../tls/credentials.js';

/** What a module's gRPC services are built from, once the database is migrated. */
export interface ServiceDeps<Settings = unknown> {
  db: Database;
  config: GantryConfig;
  /** The module's own slice of the config (its `config.key`), validated with its defaults. */
  settings: Settings;
  log: Logger;
  /** Where the module writes its domain events (disabled unless it declares `events`). */
  outbox: Outbox;
  /** Registers cleanup that runs after calls have drained and before the database closes. */
  onShutdown(fn: () => Promise<void>): void;
  /**
   * This process's feature flags (OpenFeature, flagd rules), evaluated in memory from the flags
   * store every replica follows, e.g. `await flags.getBooleanValue('webhooks.delivery.paused', false)`.
   */
  flags: OpenFeatureClient;
}

/** A module's outbox, as the relay module sees it. */
export interface EmittingModule {
  name: string;
  outbox: Outbox;
}

/** What this process serves, for modules that start once its gRPC port listens. */
export interface Serving {
  db: Database;
  /** The gRPC port and the targets served on it: a peer target run here is called here. */
  port: number;
  targets: readonly string[];
  tls: TlsFiles;
  /** The outboxes of this process's modules that emit events. */
  emitters: readonly EmittingModule[];
}

/** What a module's `start` gets. */
export interface StartContext<Settings = unknown> {
  config: GantryConfig;
  settings: Settings;
  log: Logger;
  health: HealthState;
  /** Set when the process serves gRPC (some module has `create`); undefined in, say, the operator alone. */
  serving: Serving | undefined;
  /** Runs the readiness checks now (a module became ready sooner than the next periodic check). */
  recheckReadiness(): void;
  /** Ends the process with an error: the module can no longer do its job (an operator that lost its lease). */
  fail(err: Error): void;
}

/** A started module: how to tell whether it is ready, and how to stop it. */
export interface ModuleHandle {
  /** Part of readiness: false keeps the process NOT_SERVING. */
  ready?(): boolean;
  stop?(graceMs?: number): Promise<void>;
  /** Lines for a person at a terminal once the process runs: where to reach what the module serves. */
  welcome?(): string[];
}

/**
 * One part of a Gantry program (Mimir's modules): a target such as `log`, a part others depend on
 * such as the event relay, or a group such as `all` (only dependencies). The runtime starts the
 * modules a target needs in dependency order and stops them in reverse.
 */
export interface GantryModule<Settings = unknown> {
  name: string;
  /** Modules started before this one (and stopped after it). */
  dependencies?: readonly string[];
  /** Its slice of the config; `settings` is that slice, parsed. */
  config?: ConfigSlice;
  /** Every scope its RPCs require or its handlers check, for `gantry token --all-scopes`. */
  scopes?: readonly string[];
  /**
   * The scopes its own calls to peer targets need (the event relay's, the operator's). A target's
   * workload identity is granted those of the modules it runs (ModuleRegistry.workloadGrants).
   */
  calls?: readonly string[];
  /** The schema it owns, migrated at start-up before the process reports SERVING. */
  schema?: { name: string; migrations: readonly Migration[] };
  /** It emits domain events: its outbox in `<schema>.outbox` (see events/outbox.ts), `source` and the event types it may write. */
  events?: { source: string; types: EventCatalogue };
  /** Its gRPC services, built on the migrated database (a module with `create` makes the process serve gRPC). */
  create?(deps: ServiceDeps<Settings>): Promise<ServiceModule[]> | ServiceModule[];
  /** Work that runs once the process serves (relays, controllers); its handle stops it. */
  start?(ctx: StartContext<Settings>): Promise<ModuleHandle | void> | ModuleHandle | void;
}

/** Declares a module with its settings' type checked against `create` and `start`. */
export function defineModule<Settings = unknown>(module: GantryModule<Settings>): GantryModule {
  return module as GantryModule;
}

/** Every scope in some scope tables, and any a handler checks beyond its method's own. */
export function scopesOf(tables: readonly ScopeTable<Record<string, unknown>>[], extra: readonly string[] = []): string[] {
  return [...new Set([...tables.flatMap((t) => Object.values(t).flat()), ...extra])].sort();
}

/** The config slices and gRPC targets of some modules, for loadConfig's `modules`. */
export function configSources(modules: readonly GantryModule[]): ConfigSource[] {
  return modules.map((m) => ({ name: m.name, config: m.config, servesGrpc: m.create !== undefined }));
}
