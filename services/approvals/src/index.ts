import { randomUUID } from 'node:crypto';
import { defineModule, defineService, scopesOf, type GantryModule } from '@gantry/kit';
import { approvalsDefinition, approvalsHandlers } from './api/handlers.js';
import { APPROVALS_ADMIN_SCOPE, approvalsScopes } from './api/scopes.js';
import { approvalsConfig, type ApprovalsConfig } from './config.js';
import { APPROVALS_EVENT_SOURCE, APPROVALS_EVENT_TYPES } from './events.js';
import { APPROVALS_SCHEMA, ApprovalsStore, approvalsMigrations } from './store/approvals-store.js';
import { approvalsFeed, publishCommitted, type FeedLimits } from './store/change-feed.js';
import { ExpirySweeper } from './store/expiry-sweeper.js';
import { MAX_QUEUED_VOTES, MAX_TX_IN_FLIGHT, MAX_VOTES_PER_TX, VoteCommitter } from './store/vote-committer.js';
import { observePending } from './metrics.js';

export interface ApprovalsOptions {
  /** The clock in milliseconds since the epoch; tests pass a fake one. */
  now?: () => number;
  /** How often each replica looks for requests past their deadline. */
  sweepIntervalMs?: number;
  /** Versions of history kept at most for watches to resume from (else config `approvals.historyMaxVersions`); older from_versions get OUT_OF_RANGE. */
  historyVersions?: number;
  /** A stream's queue of changes not yet sent: past this many (or `streamQueueBytes`) it is cut off. */
  streamQueueEvents?: number;
  streamQueueBytes?: number;
  /** A quiet watcher gets a BOOKMARK at least this often. */
  bookmarkIntervalMs?: number;
  /** Votes one replica holds waiting to commit; beyond it a vote is RESOURCE_EXHAUSTED. */
  maxQueuedVotes?: number;
}

/** Defaults of the tunables above; each is a bound the docs (docs/approvals.md) state. */
export const APPROVALS_DEFAULTS = {
  sweepIntervalMs: 1000,
  sweepBatch: 500,
  streamQueueEvents: 1000,
  streamQueueBytes: 32 * 1024 * 1024,
  bookmarkIntervalMs: 15_000,
  feedReadChanges: 500,
  feedReadBytes: 4 * 1024 * 1024,
  feedPollMs: 1000,
  maxStreams: 10_000,
  maxPendingPerSession: 10_000,
  pendingPage: 200,
  maxVotesPerTx: MAX_VOTES_PER_TX,
  maxQueuedVotes: MAX_QUEUED_VOTES,
  maxVoteTxInFlight: MAX_TX_IN_FLIGHT,
} as const;

/** The approvals target with injected clock and tunables (tests); `approvalsService` uses the defaults. */
export function createApprovalsService(opts: ApprovalsOptions = {}): GantryModule {
  const now = opts.now ?? Date.now;
  const d = APPROVALS_DEFAULTS;
  return defineModule<ApprovalsConfig>({
    name: 'approvals',
    config: approvalsConfig,
    // Its events go out through the relay, which starts once the process serves.
    dependencies: ['events'],
    scopes: scopesOf([approvalsScopes], [APPROVALS_ADMIN_SCOPE]),
    schema: { name: APPROVALS_SCHEMA, migrations: approvalsMigrations },
    events: { source: APPROVALS_EVENT_SOURCE, types: APPROVALS_EVENT_TYPES },
    async create({ db, log, outbox, onShutdown, settings: c }) {
      const store = new ApprovalsStore(db, outbox);
      const limits: FeedLimits = {
        readChanges: d.feedReadChanges,
        readBytes: d.feedReadBytes,
        queueEvents: opts.streamQueueEvents ?? d.streamQueueEvents,
        queueBytes: opts.streamQueueBytes ?? d.streamQueueBytes,
        maxSubscriptions: d.maxStreams,
        pollMs: d.feedPollMs,
      };
      const feed = approvalsFeed(db, store, limits, log);
      await feed.start();
      const sweeper = new ExpirySweeper(
        store,
        { intervalMs: opts.sweepIntervalMs ?? d.sweepIntervalMs, batch: d.sweepBatch, retentionMs: c.historyRetentionMs, maxVersions: opts.historyVersions ?? c.historyMaxVersions, pruneBatch: c.historyPruneBatch, now, onChange: () => feed.wake() },
        log,
      );
      sweeper.start();
      const committer = new VoteCommitter(store, (changes) => publishCommitted(feed, store, changes), { maxVotesPerTx: d.maxVotesPerTx, maxQueuedVotes: opts.maxQueuedVotes ?? d.maxQueuedVotes, maxTxInFlight: d.maxVoteTxInFlight });
      const pending = observePending(store);
      onShutdown(async () => {
        pending.stop();
        await sweeper.stop();
        await feed.stop();
      });
      return [
        defineService<typeof approvalsDefinition>({
          name: 'gantry.approvals.v1.ApprovalsService',
          definition: approvalsDefinition,
          scopes: approvalsScopes,
          handlers: approvalsHandlers({
            store,
            feed,
            now,
            newId: randomUUID,
            committer,
            limits: { ...limits, bookmarkIntervalMs: opts.bookmarkIntervalMs ?? d.bookmarkIntervalMs, maxPendingPerSession: d.maxPendingPerSession, pendingPage: d.pendingPage },
          }),
          // Content up to 1 MiB, and room for the rest so an oversized one gets a precise INVALID_ARGUMENT.
          maxRequestBytes: { submitApprovalRequest: 2 * 1024 * 1024 },
        }),
      ];
    },
  });
}

/** The approvals target: M-of-N validator approvals with watches, validator streams and expiry. */
export const approvalsService: GantryModule = createApprovalsService();

export { APPROVALS_SCHEMA, ApprovalsStore } from './store/approvals-store.js';
export { approvalsConfig, approvalsConfigSchema, type ApprovalsConfig } from './config.js';
export { APPROVALS_EVENT_SOURCE, APPROVALS_EVENT_TYPES } from './events.js';
