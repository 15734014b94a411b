import { fileURLToPath } from 'node:url';
import {
  alreadyExists,
  EventWriter,
  failedPrecondition,
  loadMigrations,
  one,
  oneOrNone,
  outboxMigrations,
  storeTransaction,
  type ConstraintErrors,
  type Database,
  type Outbox,
  type OutboxEvent,
  type Sql,
  type StoreTransactions,
} from '@gantry/kit';
import type { CreditLineRow } from '../domain/credit-line.js';
import { assertBalanced, type Outcome, type PlannedTransfer } from '../domain/ledger.js';
import type { OperatorKeyRow } from '../domain/operator-keys.js';

export const SETTLEMENT_SCHEMA = 'settlement';
/** The kit's outbox table first, then the service's own numbered migrations. */
export const settlementMigrations = [...outboxMigrations(SETTLEMENT_SCHEMA), ...loadMigrations(fileURLToPath(new URL('./migrations', import.meta.url)))];

const LINE_COLUMNS = 'session_id, wallet_address, credit_limit_minor, drawn_minor, draw_count, created_at, expires_at, settled_at, outcome, net_pnl_minor';

/** LINE_COLUMNS as the adapters return them: int8 as bigint, timestamptz as Date (kit column-types.ts). */
interface LineRow {
  session_id: string;
  wallet_address: string;
  credit_limit_minor: bigint;
  drawn_minor: bigint;
  draw_count: number;
  created_at: Date;
  expires_at: Date;
  settled_at: Date | null;
  outcome: Outcome | null;
  net_pnl_minor: bigint | null;
}

/** The balance of an account read beside a line: NULL when the account does not exist yet. */
type BalanceColumn = bigint | null;

function toLine(r: LineRow): CreditLineRow {
  return {
    sessionId: r.session_id,
    walletAddress: r.wallet_address,
    creditLimitMinor: r.credit_limit_minor,
    drawnMinor: r.drawn_minor,
    drawCount: r.draw_count,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    settledAt: r.settled_at,
    outcome: r.outcome,
    netPnlMinor: r.net_pnl_minor,
  };
}

const OPERATOR_KEY_COLUMNS = 'public_key, name, registered_at, registered_by, revoked_at, revoked_by, revoke_reason';

/** OPERATOR_KEY_COLUMNS as the adapters return them (bytea as Buffer). */
interface OperatorKeyDbRow {
  public_key: Buffer;
  name: string;
  registered_at: Date;
  registered_by: string;
  revoked_at: Date | null;
  revoked_by: string | null;
  revoke_reason: string | null;
}

const toOperatorKey = (r: OperatorKeyDbRow): OperatorKeyRow => ({
  publicKey: r.public_key,
  name: r.name,
  registeredAt: r.registered_at,
  registeredBy: r.registered_by,
  revokedAt: r.revoked_at,
  revokedBy: r.revoked_by,
  revokeReason: r.revoke_reason,
});

/** walletStatus's row: the wallet's balance, its unsettled line (NULLs when none) with that line's balances, its totals. */
interface WalletStatusRow extends Omit<LineRow, 'session_id'> {
  session_id: string | null;
  available_minor: bigint;
  credit_minor: BalanceColumn;
  escrow_minor: BalanceColumn;
  extended: bigint;
  draws: bigint;
  settlements: bigint;
}

export interface WalletStatus {
  availableMinor: bigint;
  line: (CreditLineRow & { creditMinor: bigint; escrowMinor: bigint }) | undefined;
  creditExtendedMinor: bigint;
  draws: bigint;
  settlements: bigint;
}

/** A nonce a draw batch found free was claimed by another transaction before the batch wrote it: the batch rolls back. */
export class NonceTaken extends Error {
  constructor() {
    super('a nonce of this draw batch was claimed by another transaction meanwhile');
  }
}

/** A request key as one string (owners never contain a space). */
export const requestId = (owner: string, key: string) => `${owner} ${key}`;

/** An idempotency key: a wallet's nonce, or an admin's transfer id. */
export interface RequestKey {
  owner: string;
  key: string;
  operation: string;
  digest: Buffer;
}

/**
 * The database's own refusals as the contract's errors. The store checks first and explains
 * better; these are the last line, for races the checks cannot see.
 */
const CONSTRAINT_ERRORS: ConstraintErrors = {
  debits_must_not_exceed_credits: { violation: 'check', error: () => failedPrecondition('insufficient funds: the booking would take an account below zero') },
  draws_within_limit: { violation: 'check', error: () => failedPrecondition('the draw exceeds the credit line') },
  credit_lines_one_unsettled: { violation: 'unique', error: () => failedPrecondition('the wallet already has an unsettled credit line; settle it first') },
};

/** The settlement ledger's SQL. Every statement names the `settlement` schema. */
export class SettlementStore {
  private readonly transactions: StoreTransactions<LedgerTx>;

  constructor(
    private readonly db: Database,
    private readonly outbox: Outbox,
  ) {
    this.transactions = { db, outbox, begin: (sql) => new LedgerTx(sql, outbox), errors: CONSTRAINT_ERRORS };
  }

  /**
   * Runs `fn` in one transaction; database constraint violations become contract errors. Events
   * the transaction emitted go to the relay once it has committed.
   */
  transaction<T>(fn: (tx: LedgerTx) => Promise<T>): Promise<T> {
    return storeTransaction(this.transactions, fn);
  }

  /**
   * Deletes wallet nonces claimed before `before`, at most `limit` (one bounded statement);
   * returns how many. Admin transfer ids are kept: no timestamp check stands behind them.
   */
  async pruneNonces(before: Date, limit: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM settlement.requests WHERE (owner, key) IN (
         SELECT owner, key FROM settlement.requests WHERE owner <> 'admin' AND created_at < $1 ORDER BY created_at LIMIT $2)`,
      [before, limit],
    );
    return rowCount;
  }

  /** Balance (credits - debits) of each account that exists. */
  async balances(ids: readonly string[]): Promise<Map<string, bigint>> {
    return balancesOf(this.db, ids, false);
  }

  /**
   * A wallet's balance, its unsettled line with that line's balances, and its lifetime totals, in
   * one statement (one snapshot), so a draw committing meanwhile cannot make them disagree.
   * Undefined when the wallet has never held funds.
   */
  async walletStatus(walletAddress: string): Promise<WalletStatus | undefined> {
    const balance = (id: string) => `(SELECT credits_posted - debits_posted FROM settlement.accounts WHERE id = ${id})`;
    const { rows } = await this.db.query<WalletStatusRow>(
      `SELECT w.credits_posted - w.debits_posted AS available_minor,
              ${LINE_COLUMNS.split(', ').map((c) => `l.${c}`).join(', ')},
              ${balance("'credit:' || l.session_id")} AS credit_minor,
              ${balance("'escrow:' || l.session_id")} AS escrow_minor,
              t.extended, t.draws, t.settlements
         FROM settlement.accounts w
         LEFT JOIN settlement.credit_lines l ON l.wallet_address = $1 AND l.settled_at IS NULL
         CROSS JOIN LATERAL (
           SELECT coalesce(sum(credit_limit_minor), 0)::bigint AS extended, coalesce(sum(draw_count), 0) AS draws, count(settled_at) AS settlements
             FROM settlement.credit_lines WHERE wallet_address = $1) t
        WHERE w.id = 'wallet:' || $1`,
      [walletAddress],
    );
    const r = oneOrNone(rows, `wallet ${walletAddress}`);
    if (!r) return undefined;
    return {
      availableMinor: r.available_minor,
      // No unsettled line: the LEFT JOIN gave NULL line columns.
      line: r.session_id !== null ? { ...toLine({ ...r, session_id: r.session_id }), creditMinor: r.credit_minor ?? 0n, escrowMinor: r.escrow_minor ?? 0n } : undefined,
      creditExtendedMinor: r.extended,
      draws: r.draws,
      settlements: r.settlements,
    };
  }

  /** Operator keys, newest registration first, at most `limit`. */
  async operatorKeys(limit: number): Promise<OperatorKeyRow[]> {
    const { rows } = await this.db.query<OperatorKeyDbRow>(`SELECT ${OPERATOR_KEY_COLUMNS} FROM settlement.operator_keys ORDER BY registered_at DESC, public_key LIMIT $1`, [limit]);
    return rows.map(toOperatorKey);
  }

  /**
   * Checks the ledger against its transfers: each account's posted totals equal the sums of the
   * transfers that name it, and all balances add up to zero. Returns the problems found.
   */
  async audit(): Promise<string[]> {
    const { rows } = await this.db.query(
      `WITH sums AS (
         SELECT a.id, a.debits_posted, a.credits_posted,
                coalesce((SELECT sum(amount_minor) FROM settlement.transfers t WHERE t.debit_account = a.id), 0) AS debits,
                coalesce((SELECT sum(amount_minor) FROM settlement.transfers t WHERE t.credit_account = a.id), 0) AS credits
           FROM settlement.accounts a)
       SELECT id, debits_posted, credits_posted, debits, credits FROM sums
        WHERE debits_posted <> debits OR credits_posted <> credits`,
    );
    const problems = rows.map((r) => `account ${String(r.id)}: posted ${String(r.debits_posted)}/${String(r.credits_posted)}, transfers ${String(r.debits)}/${String(r.credits)}`);
    // numeric: a sum of int8 balances, compared in SQL.
    const total = await this.db.query<{ total: string; unbalanced: boolean }>(
      `SELECT total, total <> 0 AS unbalanced FROM (SELECT coalesce(sum(credits_posted - debits_posted), 0) AS total FROM settlement.accounts) t`,
    );
    const { total: sum, unbalanced } = one(total.rows, 'ledger total');
    if (unbalanced) problems.push(`balances add up to ${sum}, not 0: money was created or destroyed`);
    return problems;
  }
}

async function unsettledLineOf(sql: Sql, walletAddress: string): Promise<CreditLineRow | undefined> {
  const { rows } = await sql.query<LineRow>(`SELECT ${LINE_COLUMNS} FROM settlement.credit_lines WHERE wallet_address = $1 AND settled_at IS NULL`, [walletAddress]);
  const line = oneOrNone(rows, `unsettled credit line of ${walletAddress}`);
  return line && toLine(line);
}

async function balancesOf(sql: Sql, ids: readonly string[], lock: boolean): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  if (ids.length === 0) return out;
  // ORDER BY id: every transaction locks shared accounts in the same order, so two bookings that
  // touch the same pair of accounts (a deposit and a withdrawal) cannot deadlock.
  const { rows } = await sql.query<{ id: string; balance: bigint }>(
    `SELECT id, credits_posted - debits_posted AS balance FROM settlement.accounts WHERE id = ANY($1::text[]) ORDER BY id${lock ? ' FOR UPDATE' : ''}`,
    [ids],
  );
  for (const r of rows) out.set(r.id, r.balance);
  return out;
}

/** The statements one booking runs inside its transaction. */
export class LedgerTx extends EventWriter {
  /**
   * Claims an idempotency key. Returns undefined when the key is new (the caller books, then
   * calls `complete`), or the stored response when the same request was already booked. The same
   * key with a different body is refused. A concurrent duplicate waits here for the first to
   * commit or roll back, so two copies of one request never both book.
   */
  async claim(req: RequestKey, now: Date): Promise<unknown> {
    const inserted = await this.sql.query(
      `INSERT INTO settlement.requests (owner, key, operation, digest, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
      [req.owner, req.key, req.operation, req.digest, now],
    );
    if (inserted.rowCount === 1) return undefined;
    // The key exists: this transaction's insert found it, and requests are never deleted.
    const { rows } = await this.sql.query<{ operation: string; digest: Buffer; response: unknown }>(
      `SELECT operation, digest, response FROM settlement.requests WHERE owner = $1 AND key = $2`,
      [req.owner, req.key],
    );
    const prior = one(rows, `request ${req.owner}/${req.key}`);
    const sameBody = prior.operation === req.operation && prior.digest.equals(req.digest);
    if (!sameBody || prior.response === null) {
      throw alreadyExists(`${req.owner === 'admin' ? 'transfer_id' : 'nonce'} ${req.key} was already used for a different request; use a new one`);
    }
    return prior.response;
  }

  /** The stored requests under these keys, by "owner key" (a plain read: the batch claims its keys when it writes). */
  async priors(keys: readonly RequestKey[]): Promise<Map<string, { operation: string; digest: Buffer; response: unknown }>> {
    // One primary-key probe per key (the LIMIT keeps each a lookup of its own), whatever the
    // planner believes about the table's size.
    const { rows } = await this.sql.query<{ owner: string; key: string; operation: string; digest: Buffer; response: unknown }>(
      `SELECT r.owner, r.key, r.operation, r.digest, r.response
         FROM unnest($1::text[], $2::text[]) AS k (owner, key)
         CROSS JOIN LATERAL (SELECT * FROM settlement.requests r WHERE r.owner = k.owner AND r.key = k.key LIMIT 1) r`,
      [keys.map((k) => k.owner), keys.map((k) => k.key)],
    );
    return new Map(rows.map((r) => [requestId(r.owner, r.key), r]));
  }

  /** Locks lines in session id order (batches locking overlapping lines cannot deadlock); the latest committed version of each. */
  async lockLines(sessionIds: readonly string[]): Promise<Map<string, CreditLineRow>> {
    const { rows } = await this.sql.query<LineRow>(`SELECT ${LINE_COLUMNS} FROM settlement.credit_lines WHERE session_id = ANY($1::text[]) ORDER BY session_id FOR UPDATE`, [sessionIds]);
    return new Map(rows.map((r) => [r.session_id, toLine(r)]));
  }

  /**
   * Writes a batch of draws in one statement: each booked draw's nonce with its response (the
   * claim; in (owner, key) order), its transfer (posted by the trigger) and its event (with its own
   * caller's trace context), and each line's new drawn amount and count. Throws NonceTaken, which
   * rolls the batch back, when another transaction claimed one of the nonces since `priors` read
   * them (the claim waits for that transaction, as `claim` does). The transfers pass the ledger's
   * pair assertion first.
   */
  async bookDraws(b: {
    draws: readonly { transfer: PlannedTransfer & { id: string }; sessionId: string; memo: string; now: Date; request: RequestKey; response: unknown; event?: { event: OutboxEvent; trace: string } }[];
    lines: readonly { sessionId: string; drawnMinor: bigint; drawCount: number }[];
  }): Promise<void> {
    const { draws, lines } = b;
    assertBalanced(draws.map((d) => d.transfer));
    const events = this.outbox.enabled ? draws.flatMap((d) => (d.event ? [{ ...d.event, now: d.now }] : [])) : [];
    const { rows } = await this.sql.query<{ claimed: bigint; lines: bigint; booked: bigint; events: bigint }>(
      `WITH claimed AS (
         INSERT INTO settlement.requests (owner, key, operation, digest, created_at, response)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::jsonb[]) ORDER BY 1, 2
         ON CONFLICT DO NOTHING RETURNING 1),
       drawn AS (
         UPDATE settlement.credit_lines l SET (drawn_minor, draw_count) = (
           SELECT x.drawn, x.n FROM unnest($7::text[], $8::bigint[], $9::int[]) AS x (session_id, drawn, n) WHERE x.session_id = l.session_id)
          WHERE l.session_id = ANY($7::text[]) RETURNING 1),
       booked AS (
         INSERT INTO settlement.transfers (id, debit_account, credit_account, amount_minor, kind, session_id, memo, created_at)
         SELECT * FROM unnest($10::text[], $11::text[], $12::text[], $13::bigint[], $14::text[], $15::text[], $16::text[], $5::timestamptz[]) RETURNING 1),
       events AS (
         INSERT INTO settlement.outbox (event_id, event_type, payload, trace_context, created_at)
         SELECT * FROM unnest($17::text[], $18::text[], $19::bytea[], $20::jsonb[], $21::timestamptz[]) RETURNING 1)
       SELECT (SELECT count(*) FROM claimed) AS claimed, (SELECT count(*) FROM drawn) AS lines, (SELECT count(*) FROM booked) AS booked, (SELECT count(*) FROM events) AS events`,
      [
        draws.map((d) => d.request.owner),
        draws.map((d) => d.request.key),
        draws.map((d) => d.request.operation),
        draws.map((d) => d.request.digest),
        draws.map((d) => d.now.toISOString()),
        draws.map((d) => JSON.stringify(d.response)),
        lines.map((l) => l.sessionId),
        lines.map((l) => l.drawnMinor.toString()),
        lines.map((l) => l.drawCount),
        draws.map((d) => d.transfer.id),
        draws.map((d) => d.transfer.debit),
        draws.map((d) => d.transfer.credit),
        draws.map((d) => d.transfer.amountMinor.toString()),
        draws.map((d) => d.transfer.kind),
        draws.map((d) => d.sessionId),
        draws.map((d) => d.memo),
        events.map((e) => e.event.id),
        events.map((e) => e.event.type),
        events.map((e) => e.event.payload),
        events.map((e) => e.trace),
        events.map((e) => e.now.toISOString()),
      ],
    );
    const n = one(rows, 'draw batch counts');
    if (Number(n.claimed) !== draws.length) throw new NonceTaken();
    const expected = { lines: lines.length, booked: draws.length, events: events.length };
    const got = { lines: Number(n.lines), booked: Number(n.booked), events: Number(n.events) };
    // Rolled back by the throw: a batch writes all of itself or nothing.
    if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`invariant: a draw batch wrote ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
    this.emitted ||= events.length > 0;
  }

  /** Locks the line for this booking. */
  async lockLine(sessionId: string): Promise<CreditLineRow | undefined> {
    const { rows } = await this.sql.query<LineRow>(`SELECT ${LINE_COLUMNS} FROM settlement.credit_lines WHERE session_id = $1 FOR UPDATE`, [sessionId]);
    const line = oneOrNone(rows, `credit line ${sessionId}`);
    return line && toLine(line);
  }

  /** Balances of the given accounts, locked in id order until the transaction ends. */
  lockBalances(ids: readonly string[]): Promise<Map<string, bigint>> {
    return balancesOf(this.sql, ids, true);
  }

  /** Balances without locks (the line's lock already serialises its session accounts). */
  balances(ids: readonly string[]): Promise<Map<string, bigint>> {
    return balancesOf(this.sql, ids, false);
  }

  /** The wallet's unsettled credit line, if any (inside the transaction: PGlite has one connection). */
  unsettledLine(walletAddress: string): Promise<CreditLineRow | undefined> {
    return unsettledLineOf(this.sql, walletAddress);
  }

  /** Creates accounts that do not exist yet (with a floor of zero). */
  async openAccounts(ids: readonly string[]): Promise<void> {
    await this.sql.query(`INSERT INTO settlement.accounts (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [ids]);
  }

  /**
   * Books transfers (ids given) and stores the response of the request that booked them, in one
   * statement; `drawnMinor` also adds a draw to the session's line in the same statement. The
   * booking passes the ledger's pair assertion before any SQL is sent.
   */
  async book(
    transfers: readonly (PlannedTransfer & { id: string })[],
    meta: { sessionId?: string; memo?: string; now: Date; drawnMinor?: bigint },
    request: RequestKey,
    response: unknown,
  ): Promise<void> {
    assertBalanced(transfers);
    await this.sql.query(
      `WITH drawn AS (
         UPDATE settlement.credit_lines SET drawn_minor = drawn_minor + $13, draw_count = draw_count + 1
          WHERE $13::bigint IS NOT NULL AND session_id = $5
         RETURNING 1),
       booked AS (
         INSERT INTO settlement.transfers (id, debit_account, credit_account, amount_minor, kind, session_id, memo, created_at)
         SELECT id, debit, credit, amount, kind, $5, $6, $7
           FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $8::text[]) AS t (id, debit, credit, amount, kind)
         RETURNING 1)
       UPDATE settlement.requests SET response = $9 WHERE owner = $10 AND key = $11 AND (SELECT count(*) FROM booked) = $12`,
      [
        transfers.map((t) => t.id),
        transfers.map((t) => t.debit),
        transfers.map((t) => t.credit),
        transfers.map((t) => t.amountMinor.toString()),
        meta.sessionId ?? null,
        meta.memo ?? '',
        meta.now,
        transfers.map((t) => t.kind),
        JSON.stringify(response),
        request.owner,
        request.key,
        transfers.length,
        meta.drawnMinor?.toString() ?? null,
      ],
    );
  }

  async insertLine(line: { sessionId: string; walletAddress: string; creditLimitMinor: bigint; createdAt: Date; expiresAt: Date }): Promise<void> {
    await this.sql.query(
      `INSERT INTO settlement.credit_lines (session_id, wallet_address, credit_limit_minor, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
      [line.sessionId, line.walletAddress, line.creditLimitMinor.toString(), line.createdAt, line.expiresAt],
    );
  }

  /** Records a settlement on its line, with the operator attestation it was booked on. */
  async recordSettlement(s: {
    sessionId: string;
    settledAt: Date;
    outcome: Outcome;
    netPnlMinor: bigint;
    finalL2BalanceMinor: bigint;
    lockedInBetsMinor: bigint;
    returnedMinor: bigint;
    attestation: { publicKey: Buffer; signature: Buffer };
  }): Promise<void> {
    await this.sql.query(
      `UPDATE settlement.credit_lines
          SET settled_at = $2, outcome = $3, net_pnl_minor = $4, final_l2_balance_minor = $5, locked_in_bets_minor = $6, returned_minor = $7,
              attested_by = $8, attestation = $9
        WHERE session_id = $1`,
      [
        s.sessionId,
        s.settledAt,
        s.outcome,
        s.netPnlMinor.toString(),
        s.finalL2BalanceMinor.toString(),
        s.lockedInBetsMinor.toString(),
        s.returnedMinor.toString(),
        s.attestation.publicKey,
        s.attestation.signature,
      ],
    );
  }

  /**
   * An operator key. `lock` 'share' holds off its revocation until this transaction ends (a
   * settlement it attests commits before the revocation or not at all); 'update' is the revocation's own lock.
   */
  async operatorKey(publicKey: Buffer, lock: 'share' | 'update' | 'none'): Promise<OperatorKeyRow | undefined> {
    const suffix = lock === 'share' ? ' FOR SHARE' : lock === 'update' ? ' FOR UPDATE' : '';
    const { rows } = await this.sql.query<OperatorKeyDbRow>(`SELECT ${OPERATOR_KEY_COLUMNS} FROM settlement.operator_keys WHERE public_key = $1${suffix}`, [publicKey]);
    const row = oneOrNone(rows, 'operator key');
    return row && toOperatorKey(row);
  }

  /**
   * Serialises registrations with each other (not with settlements or revocations), so two
   * concurrent ones cannot both see room under the active-key limit; returns the active keys.
   */
  async lockKeyRegistry(): Promise<number> {
    await this.sql.query('LOCK TABLE settlement.operator_keys IN SHARE ROW EXCLUSIVE MODE');
    const { rows } = await this.sql.query<{ active: bigint }>('SELECT count(*) AS active FROM settlement.operator_keys WHERE revoked_at IS NULL');
    return Number(one(rows, 'active operator keys').active);
  }

  async insertOperatorKey(k: OperatorKeyRow): Promise<void> {
    await this.sql.query(`INSERT INTO settlement.operator_keys (public_key, name, registered_at, registered_by) VALUES ($1, $2, $3, $4)`, [k.publicKey, k.name, k.registeredAt, k.registeredBy]);
  }

  async revokeOperatorKey(publicKey: Buffer, r: { at: Date; by: string; reason: string }): Promise<OperatorKeyRow> {
    const { rows } = await this.sql.query<OperatorKeyDbRow>(
      `UPDATE settlement.operator_keys SET revoked_at = $2, revoked_by = $3, revoke_reason = $4 WHERE public_key = $1 RETURNING ${OPERATOR_KEY_COLUMNS}`,
      [publicKey, r.at, r.by, r.reason],
    );
    return toOperatorKey(one(rows, 'revoked operator key'));
  }
}
