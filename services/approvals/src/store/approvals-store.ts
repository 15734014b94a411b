import { fileURLToPath } from 'node:url';
import {
  activeTraceContext,
  EventWriter,
  failedPrecondition,
  first,
  loadMigrations,
  one,
  oneOrNone,
  outboxMigrations,
  pruneHistory,
  storeTransaction,
  type ConstraintErrors,
  type Database,
  type HistoryRetention,
  type Outbox,
  type Sql,
  type StoreTransactions,
} from '@gantry/kit';
import type { ApprovalKind, ApprovalRecord, ChangeRecord, ChangeType, PriorityRank, RequestRecord, VoteRecord } from '../domain/approval.js';
import type { ApprovalState, Decision } from '../domain/quorum.js';
import { changeEvents, createdEvent } from './change-events.js';
import { ContentCache } from './content-cache.js';
import type { RequestCache } from './request-cache.js';

export const APPROVALS_SCHEMA = 'approvals';
/** The kit's outbox table first, then the service's own numbered migrations. */
export const approvalsMigrations = [...outboxMigrations(APPROVALS_SCHEMA), ...loadMigrations(fileURLToPath(new URL('./migrations', import.meta.url)))];

/** NOTIFY channel of every committed change; the payload is only a hint ("look again"). */
export const CHANGED_CHANNEL = 'approvals_changed';

/** Every column of a request but its content (up to 1 MiB: fetched only for what is sent). */
const REQUEST_COLUMNS = `r.approval_id, r.created_version, r.version, r.requester, r.type, r.priority, r.title, r.content_hash,
  octet_length(r.content) AS content_bytes, r.validators, r.required_approvals, r.state, r.labels, r.created_at, r.expires_at, r.finalized_at`;

/** REQUEST_COLUMNS as the adapters return them: int8 bigint, bytea Buffer, jsonb parsed, timestamptz Date (kit column-types.ts). */
interface RequestRow {
  approval_id: string;
  created_version: bigint;
  version: bigint;
  requester: string;
  type: ApprovalKind;
  priority: PriorityRank;
  title: string;
  content_hash: Buffer;
  content_bytes: number;
  validators: string[];
  required_approvals: number;
  state: ApprovalState;
  labels: Record<string, string>;
  created_at: Date;
  expires_at: Date;
  finalized_at: Date | null;
}

/** A vote inside the json aggregate of `approval`: validator, decision, reason, cast_at in ms, version. */
type JsonVote = [string, Decision, string, number, number];

/** A request's votes (every one, or up to its version: `upTo`) as one json aggregate, in version order. */
const votesJson = (upTo: string) => `(SELECT json_agg(json_build_array(v.validator, v.decision, v.reason, extract(epoch FROM v.cast_at) * 1000, v.version) ORDER BY v.version)
                 FROM approvals.votes v WHERE v.approval_id = r.approval_id${upTo}) AS votes`;

/** Votes of the json aggregate as records: values inside it are JSON's own (numbers), made Date and bigint here. */
const fromJsonVotes = (votes: JsonVote[] | null): VoteRecord[] =>
  (votes ?? []).map(([validator, decision, reason, castAtMs, version]) => ({ validator, decision, reason, castAt: new Date(castAtMs), version: BigInt(version) }));

function toRequest(r: RequestRow): RequestRecord {
  return {
    id: r.approval_id,
    createdVersion: r.created_version,
    version: r.version,
    requester: r.requester,
    type: r.type,
    priority: r.priority,
    title: r.title,
    contentHash: r.content_hash,
    contentBytes: r.content_bytes,
    validators: r.validators,
    requiredApprovals: r.required_approvals,
    state: r.state,
    labels: r.labels,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    finalizedAt: r.finalized_at,
    votes: [],
  };
}

/** Fills in each request's votes, as of the request's own version (a later snapshot may hold newer ones). */
async function attachVotes(sql: Sql, requests: RequestRecord[]): Promise<RequestRecord[]> {
  if (requests.length === 0) return requests;
  const { rows } = await sql.query<{ approval_id: string; validator: string; decision: Decision; reason: string; cast_at: Date; version: bigint }>(
    `SELECT approval_id, validator, decision, reason, cast_at, version FROM approvals.votes WHERE approval_id = ANY($1::text[]) ORDER BY version`,
    [requests.map((r) => r.id)],
  );
  const byId = new Map(requests.map((r) => [r.id, r]));
  for (const v of rows) {
    const request = byId.get(v.approval_id)!;
    const vote: VoteRecord = { validator: v.validator, decision: v.decision, reason: v.reason, castAt: v.cast_at, version: v.version };
    if (vote.version <= request.version) request.votes.push(vote);
  }
  return requests;
}

/** A new request as the submit handler built it. */
export interface NewRequest {
  id: string;
  requester: string;
  requestId: string | null;
  digest: Buffer;
  type: ApprovalKind;
  priority: PriorityRank;
  title: string;
  content: Buffer;
  contentHash: Buffer;
  validators: string[];
  requiredApprovals: number;
  labels: Record<string, string>;
  createdAt: Date;
  expiresAt: Date;
}

/** One change to an existing request: a vote (maybe deciding it), or its expiry. */
export interface Change {
  approvalId: string;
  type: Exclude<ChangeType, 'CREATED'>;
  state: ApprovalState;
  vote?: { validator: string; decision: Decision; reason: string };
  at: Date;
  finalizedAt: Date | null;
}

export interface ListFilter {
  states: ApprovalState[];
  types: ApprovalKind[];
  requester: string;
  validator: string;
  createdAfter: Date | undefined;
  createdBefore: Date | undefined;
}

export interface PendingQuery {
  validator: string;
  types: ApprovalKind[];
  minPriority: PriorityRank;
}

/** Position in a validator's to-do list, which is ordered by priority (highest first), then age. */
export interface PendingCursor {
  priority: PriorityRank;
  createdVersion: bigint;
}

/** What the change history keeps (the sweeper prunes the rest). */
export type { HistoryRetention };

/** The submit raced a retry with the same request_id: read the winner and answer as a retry. */
export class IdempotencyRace extends Error {}

/** The database's own refusals as the contract's errors (or, for a raced submit, as a retry). */
const CONSTRAINT_ERRORS: ConstraintErrors = {
  requests_idempotency: { violation: 'unique', error: () => new IdempotencyRace('request_id taken concurrently') },
  terminal_states_never_change: { violation: 'check', error: () => failedPrecondition('the approval is already final; votes are closed') },
};

/** The approvals service's SQL. Every statement names the `approvals` schema. */
export class ApprovalsStore {
  private readonly transactions: StoreTransactions<ApprovalsTx>;

  constructor(
    private readonly db: Database,
    outbox: Outbox,
    /** Content of requests read or created by this process (content never changes). */
    readonly content: ContentCache = new ContentCache(),
  ) {
    this.transactions = { db, outbox, begin: (sql) => new ApprovalsTx(sql, outbox, content), errors: CONSTRAINT_ERRORS };
  }

  /**
   * Runs `fn` in one transaction; database constraint violations become contract errors. The
   * domain events of its changes are written in it and handed to the relay once it commits.
   */
  transaction<T>(fn: (tx: ApprovalsTx) => Promise<T>): Promise<T> {
    return storeTransaction(this.transactions, fn);
  }

  /** The current service-wide version (of the last committed change). */
  async headVersion(): Promise<bigint> {
    const { rows } = await this.db.query<{ version: bigint }>(`SELECT version FROM approvals.head`);
    return one(rows, 'approvals head').version;
  }

  /** One request with its votes, or undefined. */
  async request(id: string): Promise<RequestRecord | undefined> {
    const { rows } = await this.db.query<RequestRow>(`SELECT ${REQUEST_COLUMNS} FROM approvals.requests r WHERE r.approval_id = $1`, [id]);
    const row = oneOrNone(rows, `approval ${id}`);
    if (!row) return undefined;
    const [request] = await attachVotes(this.db, [toRequest(row)]);
    return request;
  }

  /**
   * One request with its votes and its content, or undefined: what GetApprovalStatus sends, in one
   * statement (one snapshot, one round trip) where `request` + `withContent` take three.
   */
  async approval(id: string): Promise<ApprovalRecord | undefined> {
    const { rows } = await this.db.query<RequestRow & { content: Buffer; votes: JsonVote[] | null }>(
      `SELECT ${REQUEST_COLUMNS}, r.content, ${votesJson(' AND v.version <= r.version')} FROM approvals.requests r WHERE r.approval_id = $1`,
      [id],
    );
    const row = oneOrNone(rows, `approval ${id}`);
    if (!row) return undefined;
    return { ...toRequest(row), content: row.content, votes: fromJsonVotes(row.votes) };
  }

  /**
   * The given requests with their content, from the cache or in one read of what it lacks
   * (callers bound how many bytes they ask for at once).
   */
  async withContent<R extends RequestRecord>(requests: R[]): Promise<(R & ApprovalRecord)[]> {
    if (requests.length === 0) return [];
    const content = new Map<string, Buffer>();
    const missing = new Set<string>();
    for (const { id } of requests) {
      if (content.has(id) || missing.has(id)) continue;
      const cached = this.content.get(id);
      if (cached) content.set(id, cached);
      else missing.add(id);
    }
    if (missing.size > 0) {
      const { rows } = await this.db.query<{ approval_id: string; content: Buffer }>(`SELECT approval_id, content FROM approvals.requests WHERE approval_id = ANY($1::text[])`, [[...missing]]);
      for (const r of rows) {
        content.set(r.approval_id, r.content);
        this.content.put(r.approval_id, r.content);
      }
    }
    return requests.map((r) => ({ ...r, content: content.get(r.id)! }));
  }

  /**
   * Changes with version > `after` (of one request when `approvalId` is set), oldest first, with
   * the current version and the oldest version still retained, read in one snapshot.
   */
  async changesAfter(after: bigint, limit: number, approvalId: string): Promise<{ changes: (ChangeRecord & { request: RequestRecord })[]; head: bigint; oldestRetained: bigint }> {
    const { rows } = await this.db.query<{ head: bigint; oldest: bigint | null; version: bigint | null; approval_id: string; type: ChangeType; state: ApprovalState }>(
      `WITH h AS (SELECT version AS head, (SELECT min(version) FROM approvals.events) AS oldest FROM approvals.head)
       SELECT h.head, h.oldest, e.version, e.approval_id, e.type, e.state
         FROM h LEFT JOIN LATERAL (
           SELECT version, approval_id, type, state FROM approvals.events
            WHERE version > $1 AND ($3 = '' OR approval_id = $3) ORDER BY version LIMIT $2) e ON true
        ORDER BY e.version`,
      [after.toString(), limit, approvalId],
    );
    // Every row carries the head; with no change after `after`, one row of NULLs does.
    const { head, oldest } = first(rows, 'approvals head');
    // With no history at all, everything up to the head has been pruned (or nothing happened yet).
    const oldestRetained = oldest ?? head + 1n;
    const found = rows.flatMap((r) => (r.version !== null ? [{ ...r, version: r.version }] : []));
    const requests = await this.requests([...new Set(found.map((r) => r.approval_id))]);
    const changes = found.map((r) => ({ version: r.version, approvalId: r.approval_id, type: r.type, state: r.state, request: requests.get(r.approval_id)! }));
    return { changes, head, oldestRetained };
  }

  /** Requests by id with every vote they have now. */
  private async requests(ids: string[]): Promise<Map<string, RequestRecord>> {
    if (ids.length === 0) return new Map();
    const { rows } = await this.db.query<RequestRow>(`SELECT ${REQUEST_COLUMNS} FROM approvals.requests r WHERE r.approval_id = ANY($1::text[])`, [ids]);
    const found = await attachVotes(this.db, rows.map(toRequest));
    return new Map(found.map((r) => [r.id, r]));
  }

  /**
   * A page of requests, newest first, and the current version read in the same snapshot. States
   * filter on the state at `now`: a PENDING request past its deadline counts as EXPIRED even
   * before the sweeper has recorded it.
   */
  async list(filter: ListFilter, beforeCreatedVersion: bigint | undefined, limit: number, now: Date): Promise<{ head: bigint; requests: RequestRecord[] }> {
    const { rows } = await this.db.query<{ head: bigint } & (RequestRow | { [K in keyof RequestRow]: null })>(
      `WITH h AS (SELECT version AS head FROM approvals.head)
       SELECT h.head, page.* FROM h LEFT JOIN LATERAL (
         SELECT ${REQUEST_COLUMNS} FROM approvals.requests r
          WHERE (cardinality($1::text[]) = 0 OR (CASE WHEN r.state = 'PENDING' AND r.expires_at <= $9 THEN 'EXPIRED' ELSE r.state END) = ANY($1::text[]))
            AND (cardinality($2::text[]) = 0 OR r.type = ANY($2::text[]))
            AND ($3 = '' OR r.requester = $3)
            AND ($4 = '' OR r.validators @> ARRAY[$4::text])
            AND ($5::timestamptz IS NULL OR r.created_at > $5)
            AND ($6::timestamptz IS NULL OR r.created_at < $6)
            AND ($7::bigint IS NULL OR r.created_version < $7)
          ORDER BY r.created_version DESC LIMIT $8) page ON true
        ORDER BY page.created_version DESC`,
      [filter.states, filter.types, filter.requester, filter.validator, filter.createdAfter ?? null, filter.createdBefore ?? null, beforeCreatedVersion?.toString() ?? null, limit, now],
    );
    // Every row carries the head; an empty page is one row of NULLs.
    const { head } = first(rows, 'approvals head');
    const page = rows.flatMap((r) => (r.approval_id !== null ? [toRequest(r)] : []));
    return { head, requests: await attachVotes(this.db, page) };
  }

  /** Requests still PENDING (deadline passed or not: the sweeper expires those), through the partial index of pending requests. */
  async countPending(): Promise<bigint> {
    const { rows } = await this.db.query<{ n: bigint }>(`SELECT count(*)::int8 AS n FROM approvals.requests WHERE state = 'PENDING'`);
    return rows[0]!.n;
  }

  /**
   * A page of what `q.validator` still has to decide: PENDING before `now`, in its set, not its own
   * request, not voted on yet; highest priority first, then oldest first.
   */
  async pending(q: PendingQuery, after: PendingCursor | undefined, limit: number, now: Date): Promise<RequestRecord[]> {
    const { rows } = await this.db.query<RequestRow>(
      `SELECT ${REQUEST_COLUMNS} FROM approvals.requests r
        WHERE r.state = 'PENDING' AND r.expires_at > $2 AND r.validators @> ARRAY[$1::text] AND r.requester <> $1
          AND NOT EXISTS (SELECT 1 FROM approvals.votes v WHERE v.approval_id = r.approval_id AND v.validator = $1)
          AND (cardinality($3::text[]) = 0 OR r.type = ANY($3::text[]))
          AND r.priority >= $4
          AND ($5::smallint IS NULL OR r.priority < $5 OR (r.priority = $5 AND r.created_version > $6))
        ORDER BY r.priority DESC, r.created_version ASC LIMIT $7`,
      [q.validator, now, q.types, q.minPriority, after?.priority ?? null, after?.createdVersion.toString() ?? null, limit],
    );
    return attachVotes(this.db, rows.map(toRequest));
  }

  /**
   * Records EXPIRED for up to `limit` PENDING requests past their deadline at `now`, each with its
   * own version and its event. SKIP LOCKED: replicas sweeping at once split the work, and a request
   * being voted on is left to that vote (which expires it itself if the deadline has passed).
   * Returns how many.
   */
  async expireDue(now: Date, limit: number): Promise<number> {
    return this.transaction(async (tx) => {
      const due = await tx.lockDue(now, limit);
      if (due.length === 0) return 0;
      await tx.record(due.map((r) => ({ approvalId: r.id, type: 'FINALIZED', state: 'EXPIRED', at: now, finalizedAt: r.expiresAt })), new Map(due.map((r) => [r.id, r])));
      return due.length;
    });
  }

  /**
   * Deletes the oldest history: changes made before `olderThan` (null: no time bound) or older than
   * the last `maxVersions` versions (0: no count bound), at most `limit` rows per call. Only a prefix
   * of the history goes (it stops at the first change still kept), so the history stays gapless
   * from its oldest version and a watch from before it is told so (OUT_OF_RANGE). Requests and votes
   * stay; only the ability to resume a watch from that far back goes. Reads only the oldest `limit`
   * rows, by the primary key. Returns how many were deleted.
   */
  pruneHistory(policy: HistoryRetention, limit: number): Promise<number> {
    return pruneHistory(this.db, { changes: 'approvals.events', head: 'approvals.head' }, policy, limit);
  }
}

/** The statements one change runs inside its transaction. */
export class ApprovalsTx extends EventWriter {
  constructor(
    sql: Sql,
    outbox: Outbox,
    private readonly content: ContentCache,
  ) {
    super(sql, outbox);
  }

  /** The request an idempotency key was used for, with the digest of the body it came with. */
  async byRequestId(requester: string, requestId: string): Promise<{ id: string; digest: Buffer } | undefined> {
    const { rows } = await this.sql.query<{ approval_id: string; request_digest: Buffer }>(
      `SELECT approval_id, request_digest FROM approvals.requests WHERE requester = $1 AND request_id = $2`,
      [requester, requestId],
    );
    const row = oneOrNone(rows, `request ${requestId} of ${requester}`);
    return row && { id: row.approval_id, digest: row.request_digest };
  }

  /** Inserts a PENDING request as one change (CREATED); returns its version. */
  async insert(r: NewRequest): Promise<bigint> {
    const { rows } = await this.sql.query<{ version: bigint }>(
      `WITH v AS (UPDATE approvals.head SET version = version + 1 RETURNING version),
       req AS (INSERT INTO approvals.requests (approval_id, created_version, version, requester, request_id, request_digest, type, priority, title,
                 content, content_hash, validators, required_approvals, state, labels, created_at, expires_at)
               SELECT $1, v.version, v.version, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[], $11, 'PENDING', $12::jsonb, $13, $14 FROM v),
       ev AS (INSERT INTO approvals.events (version, approval_id, type, state, at) SELECT v.version, $1, 'CREATED', 'PENDING', $13 FROM v)
       SELECT v.version, pg_notify('${CHANGED_CHANNEL}', v.version::text) AS notified FROM v`,
      [r.id, r.requester, r.requestId, r.digest, r.type, r.priority, r.title, r.content, r.contentHash, r.validators, r.requiredApprovals, JSON.stringify(r.labels), r.createdAt, r.expiresAt],
    );
    await this.emit([createdEvent(this.outbox, r)], r.createdAt);
    // Cached before the commit: content under an id that never commits is never asked for.
    this.content.put(r.id, r.content);
    return one(rows, 'new request version').version;
  }

  /** Locks one request for a change and reads it with its votes (see `lockAll`). */
  async lock(id: string): Promise<RequestRecord | undefined> {
    return (await this.lockAll([id])).get(id);
  }

  /** Locks up to `limit` PENDING requests past their deadline at `now`, oldest deadline first, skipping locked ones. */
  async lockDue(now: Date, limit: number): Promise<RequestRecord[]> {
    const { rows } = await this.sql.query<RequestRow>(
      `SELECT ${REQUEST_COLUMNS} FROM approvals.requests r WHERE r.state = 'PENDING' AND r.expires_at <= $1 ORDER BY r.expires_at, r.approval_id LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [now, limit],
    );
    return attachVotes(this.sql, rows.map(toRequest));
  }

  /**
   * Locks requests for a change, in id order (so transactions on any replica that lock several
   * never deadlock), and reads them with their votes.
   */
  async lockAll(ids: string[], cache?: RequestCache): Promise<Map<string, RequestRecord>> {
    if (cache) return this.lockAllCached(ids, cache);
    // One statement in the common case: the votes aggregate reads the statement's snapshot, so it
    // is complete only when the locked row is still the version that snapshot saw (every vote
    // bumps its request's version in its own transaction). A row that changed while this waited
    // for its lock has its votes read again, by a statement that sees what the holder committed.
    const { rows } = await this.sql.query<RequestRow & { snapshot_version: bigint; votes: JsonVote[] | null }>(
      `SELECT ${REQUEST_COLUMNS}, (SELECT s.version FROM approvals.requests s WHERE s.approval_id = r.approval_id) AS snapshot_version, ${votesJson('')}
         FROM approvals.requests r WHERE r.approval_id = ANY($1::text[]) ORDER BY r.approval_id FOR UPDATE`,
      [ids],
    );
    const current = rows.filter((r) => r.snapshot_version === r.version).map((r) => ({ ...toRequest(r), votes: fromJsonVotes(r.votes) }));
    const changed = await attachVotes(this.sql, rows.filter((r) => r.snapshot_version !== r.version).map(toRequest));
    return new Map([...current, ...changed].map((r) => [r.id, r]));
  }

  /**
   * lockAll through `cache` (request-cache.ts): the lock statement reads only each row's version; a
   * request kept at that version is used as kept, the others are read whole (votes included) by a
   * second statement, which, run under the locks just taken, sees every change committed to them.
   */
  private async lockAllCached(ids: string[], cache: RequestCache): Promise<Map<string, RequestRecord>> {
    const { rows } = await this.sql.query<{ approval_id: string; version: bigint }>(
      `SELECT r.approval_id, r.version FROM approvals.requests r WHERE r.approval_id = ANY($1::text[]) ORDER BY r.approval_id FOR UPDATE`,
      [ids],
    );
    const locked = new Map<string, RequestRecord>();
    const missing: string[] = [];
    for (const row of rows) {
      const kept = cache.at(row.approval_id, row.version);
      if (kept) locked.set(kept.id, kept);
      else missing.push(row.approval_id);
    }
    if (missing.length === 0) return locked;
    const { rows: whole } = await this.sql.query<RequestRow & { votes: JsonVote[] | null }>(
      `SELECT ${REQUEST_COLUMNS}, ${votesJson('')} FROM approvals.requests r WHERE r.approval_id = ANY($1::text[])`,
      [missing],
    );
    for (const row of whole) {
      const r = { ...toRequest(row), votes: fromJsonVotes(row.votes) };
      locked.set(r.id, r);
      cache.set(r);
    }
    // In id order, as the lock statement returned them (callers may rely on the order of a Map's keys).
    return new Map(rows.flatMap((row) => (locked.has(row.approval_id) ? [[row.approval_id, locked.get(row.approval_id)!] as const] : [])));
  }

  /**
   * Records changes to locked requests, in order, as consecutive versions: their votes, each
   * request's state after its last change, one history row each. One statement whatever the
   * number of changes (arrays, not a text that varies), and the version counter is bumped once, by
   * all of them, as the last statement of the transaction. Their domain events are written too:
   * `locked` has each changed request as it was before. Returns the version of the first.
   */
  async record(changes: Change[], locked: ReadonlyMap<string, RequestRecord>): Promise<bigint> {
    const events = this.outbox.enabled ? changeEvents(this.outbox, changes, locked) : [];
    const column = <T>(f: (c: Change) => T) => changes.map(f);
    // The domain events go into the kit's outbox table in this same statement (its columns as
    // Outbox.add writes them), saving a round trip per vote batch; the relay is woken after commit.
    const { rows } = await this.sql.query<{ first: bigint }>(
      `WITH c AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[])
                    WITH ORDINALITY AS c(approval_id, type, state, validator, decision, reason, at, finalized_at, n)),
       v AS (UPDATE approvals.head SET version = version + (SELECT count(*) FROM c) RETURNING version - (SELECT count(*) FROM c) AS base),
       vote AS (INSERT INTO approvals.votes (approval_id, validator, decision, reason, cast_at, version)
                SELECT c.approval_id, c.validator, c.decision, c.reason, c.at, v.base + c.n FROM c, v WHERE c.validator IS NOT NULL),
       last AS (SELECT DISTINCT ON (approval_id) approval_id, state, finalized_at, n FROM c ORDER BY approval_id, n DESC),
       req AS (UPDATE approvals.requests r SET version = v.base + last.n, state = last.state, finalized_at = last.finalized_at FROM last, v WHERE r.approval_id = last.approval_id),
       ev AS (INSERT INTO approvals.events (version, approval_id, type, state, at) SELECT v.base + c.n, c.approval_id, c.type, c.state, c.at FROM c, v),
       ob AS (INSERT INTO approvals.outbox (event_id, event_type, payload, trace_context, created_at)
              SELECT e.id, e.type, e.payload, $12::jsonb, $13::timestamptz FROM unnest($9::text[], $10::text[], $11::bytea[]) AS e(id, type, payload))
       SELECT v.base + 1 AS first, pg_notify('${CHANGED_CHANNEL}', (v.base + (SELECT count(*) FROM c))::text) AS notified FROM v`,
      [
        column((c) => c.approvalId),
        column((c) => c.type),
        column((c) => c.state),
        column((c) => c.vote?.validator ?? null),
        column((c) => c.vote?.decision ?? null),
        column((c) => c.vote?.reason ?? null),
        column((c) => c.at),
        column((c) => c.finalizedAt),
        events.map((e) => e.id),
        events.map((e) => e.type),
        events.map((e) => e.payload),
        JSON.stringify(activeTraceContext()),
        changes[0]!.at,
      ],
    );
    this.emitted ||= events.length > 0;
    return one(rows, 'first recorded version').first;
  }
}
