// Helpers for the approvals tests: the approvals target in this process on either engine (or a
// second replica on the same PostgreSQL database) with a clock the test moves, clients with tokens
// per caller, request builders, stream readers, and a snapshot of the tables to prove that a
// refused call wrote nothing.
import { createHash, randomBytes } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { bearerMetadata, clientCredentials, clientOptions, Outbox, unary, type Runtime } from '@gantry/kit';
import { approvalsv1, eventsv1 } from '@gantry/proto';
import { tokenFor } from '@gantry/test-support/clients';
import type { EngineName } from '@gantry/test-support/databases';
import { startServicePlatform } from '@gantry/test-support/harness';
import { Collector } from '@gantry/test-support/streams';
import { APPROVALS_EVENT_SOURCE, APPROVALS_EVENT_TYPES, APPROVALS_SCHEMA, createApprovalsService, ApprovalsStore, type ApprovalsOptions } from '../src/index.js';

export type ApprovalsClient = InstanceType<typeof approvalsv1.ApprovalsServiceClient>;

export const ALL_SCOPES = ['approvals.submit', 'approvals.read', 'approvals.vote'];

export interface ApprovalsPlatform {
  runtime: Runtime;
  client: ApprovalsClient;
  /** The database URL (PostgreSQL) another replica can share, or undefined (PGlite). */
  databaseUrl: string | undefined;
  /** Bearer metadata for `subject` (default scopes: submit, read, vote). */
  as(subject: string, scopes?: string[]): Metadata;
  store: ApprovalsStore;
  /** The server's clock, in ms; tests move it. */
  clock: { nowMs: number };
  close(): Promise<void>;
}

/** Tunables that keep tests quick: a fast sweeper and frequent bookmarks. */
export const TEST_OPTIONS: ApprovalsOptions = { sweepIntervalMs: 100, bookmarkIntervalMs: 300 };

/**
 * Starts the approvals target (mTLS, JWT, rate limits) on `engine` with a clock the test controls.
 * With `sharedDatabaseUrl`, it is another replica on that PostgreSQL database.
 */
export async function startApprovalsPlatform(engine: EngineName, opts: { options?: ApprovalsOptions; sharedDatabaseUrl?: string; clock?: { nowMs: number } } = {}): Promise<ApprovalsPlatform> {
  const clock = opts.clock ?? { nowMs: Date.now() };
  const factory = createApprovalsService({ ...TEST_OPTIONS, ...opts.options, now: () => clock.nowMs });
  // Bursts of votes (50 validators at once, batches) run well above a production rate limit.
  const overrides = { rateLimit: { points: 100_000, windowSec: 1 }, ...(opts.sharedDatabaseUrl ? { database: { url: opts.sharedDatabaseUrl, poolSize: 8 } } : {}) };
  // A replica joins an existing database: the harness gets the PGlite engine so it creates none,
  // and the override points it at the shared PostgreSQL database.
  const platform = await startServicePlatform(opts.sharedDatabaseUrl ? 'PGlite' : engine, [factory], { dbLabel: 't_appr', poolSize: 12, overrides });
  const { runtime, dataDir, tls } = platform;
  const client = new approvalsv1.ApprovalsServiceClient(platform.address, clientCredentials(tls), clientOptions(tls));
  return {
    runtime,
    client,
    databaseUrl: opts.sharedDatabaseUrl ?? (runtime.db.engine === 'postgres' ? databaseUrlOf(runtime) : undefined),
    as: (subject, scopes = ALL_SCOPES) => bearerMetadata(tokenFor(dataDir, subject, scopes)),
    store: new ApprovalsStore(runtime.db, new Outbox(APPROVALS_SCHEMA, APPROVALS_EVENT_SOURCE, true, APPROVALS_EVENT_TYPES)),
    clock,
    async close() {
      client.close();
      await platform.close();
    },
  };
}

/** The URL the runtime's pool connects to (the harness's fresh database). */
function databaseUrlOf(runtime: Runtime): string {
  const pool = (runtime.db as { pool?: { options: { connectionString?: string } } }).pool;
  return pool!.options.connectionString!;
}

export const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

/** A valid submission: `n` validators v0..v(n-1) (or the given ones), M = `m`, one hour to live. */
export function newRequest(over: Partial<approvalsv1.SubmitApprovalRequestRequest> & { n?: number; m?: number } = {}): approvalsv1.SubmitApprovalRequestRequest {
  const { n = 3, m = 2, ...rest } = over;
  const content = rest.content ?? Buffer.from(`transfer ${randomBytes(8).toString('hex')}`);
  return {
    requestId: '',
    type: approvalsv1.ApprovalType.APPROVAL_TYPE_LARGE_TRANSACTION,
    priority: approvalsv1.ApprovalPriority.APPROVAL_PRIORITY_NORMAL,
    requester: '',
    title: 'move funds',
    content,
    contentHash: sha256(content),
    validators: Array.from({ length: n }, (_, i) => `v${i}`),
    requiredApprovals: m,
    expiry: { $case: 'ttl', value: { seconds: 3600n, nanos: 0 } },
    labels: {},
    ...rest,
  };
}

export const { VOTE_DECISION_APPROVE: APPROVE, VOTE_DECISION_REJECT: REJECT, VOTE_DECISION_ABSTAIN: ABSTAIN } = approvalsv1.VoteDecision;
export const { APPROVAL_STATE_PENDING: PENDING, APPROVAL_STATE_APPROVED: APPROVED, APPROVAL_STATE_REJECTED: REJECTED, APPROVAL_STATE_EXPIRED: EXPIRED } = approvalsv1.ApprovalState;
export const { APPROVAL_EVENT_TYPE_CREATED: CREATED, APPROVAL_EVENT_TYPE_VOTED: VOTED, APPROVAL_EVENT_TYPE_FINALIZED: FINALIZED, APPROVAL_EVENT_TYPE_BOOKMARK: BOOKMARK } = approvalsv1.ApprovalEventType;
export const { PENDING_CHANGE_ADDED: ADDED, PENDING_CHANGE_REMOVED: REMOVED } = approvalsv1.PendingChange;

/** The unary RPCs as promises, as `subject`. */
export function rpc(p: ApprovalsPlatform, subject = 'alice', scopes?: string[]) {
  const c = p.client;
  const md = p.as(subject, scopes);
  return {
    submit: (req: approvalsv1.SubmitApprovalRequestRequest) => unary(c.submitApprovalRequest, c, req, md).then((r) => r.approval!),
    get: (approvalId: string) => unary(c.getApprovalStatus, c, { approvalId }, md).then((r) => r.approval!),
    vote: (approvalId: string, decision = APPROVE, reason = '') => unary(c.submitValidatorResponse, c, { approvalId, decision, reason }, md),
    list: (req: Partial<approvalsv1.ListApprovalsRequest>) =>
      unary(c.listApprovals, c, { states: [], types: [], requester: '', validator: '', createdAfter: undefined, createdBefore: undefined, pageSize: 0, pageToken: '', ...req }, md),
  };
}

/** Server streams are read with the shared Collector (test-support/streams.ts). */
export { Collector };

/** Opens a watch as `subject`. */
export function watch(p: ApprovalsPlatform, req: Partial<approvalsv1.WatchApprovalUpdatesRequest>, subject = 'watcher', deadlineMs = 60_000): Collector<approvalsv1.WatchApprovalUpdatesResponse> {
  return new Collector(p.client.watchApprovalUpdates({ approvalId: '', fromVersion: 0n, ...req }, p.as(subject), { deadline: Date.now() + deadlineMs }));
}

/** Opens a validator's to-do stream. */
export function pending(p: ApprovalsPlatform, validator: string, filter?: approvalsv1.PendingFilter, deadlineMs = 60_000): Collector<approvalsv1.StreamPendingApprovalsResponse> {
  return new Collector(p.client.streamPendingApprovals({ filter }, p.as(validator), { deadline: Date.now() + deadlineMs }));
}

/** Every row of the approvals tables: equal snapshots mean nothing was written. */
export async function tablesSnapshot(p: ApprovalsPlatform): Promise<string> {
  const q = (sql: string) => p.runtime.db.query(sql).then((r) => r.rows);
  return JSON.stringify({
    head: await q('SELECT version::text AS v FROM approvals.head'),
    requests: await q('SELECT approval_id, state, version::text AS v FROM approvals.requests ORDER BY approval_id'),
    votes: await q('SELECT approval_id, validator, decision FROM approvals.votes ORDER BY approval_id, validator'),
    events: await q('SELECT version::text AS v, type, state FROM approvals.events ORDER BY version'),
    outbox: await q('SELECT event_id FROM approvals.outbox ORDER BY seq'),
  });
}

/** The domain events in the outbox about `approvalId`, decoded, in commit order. */
export async function outboxEvents(p: ApprovalsPlatform, approvalId: string): Promise<eventsv1.Event[]> {
  const { rows } = await p.runtime.db.query<{ payload: Buffer }>('SELECT payload FROM approvals.outbox ORDER BY seq');
  return rows.map((r) => eventsv1.Event.decode(r.payload)).filter((e) => e.subject === approvalId);
}

export { openFreshDatabase } from '@gantry/test-support/databases';
