// Group commit for draws, on the kit's GroupCommitter as approvals' votes. One transaction per
// draw spent most of a draw's CPU on round trips, BEGIN and COMMIT; a PL/pgSQL fast path saved
// them but repeated the draw rules in SQL. Here the rules stay in domain/credit-line.ts: while
// draw transactions are in flight (at most `maxTxInFlight`), later draws queue (optionally a
// `lingerMs` more), and the next transaction takes up to `maxBatch` of them:
//
//   1. read the draws' nonces: one already stored is a retry (its stored response) or a reuse
//      (ALREADY_EXISTS), as for a lone request;
//   2. lock the lines involved in session id order (batches and replicas cannot deadlock), then
//      read their accounts' balances (after the locks: the balances the lines' last writers left);
//   3. decide each draw with planDraw, in arrival order, on a working copy of its line, so several
//      draws on one line in one batch see each other and never overdraw it;
//   4. write every booked draw (its nonce with its response, transfer, event) and each line's new
//      totals in one statement; commit once. A refused draw writes nothing, so its nonce stays
//      free. If another transaction claimed one of the nonces since step 1 (another replica, or a
//      different request under the same nonce), the claim waits for it and the batch rolls back.
//
// Each caller gets its own outcome after the commit: a refused draw its own error, which fails
// none of the others. If the transaction itself fails (a deadlock with another replica, a
// constraint the checks did not foresee), its draws are retried one per transaction, so one draw
// the database refuses cannot fail the draws batched with it. Two draws with the same nonce never
// share a batch or run in two batches at once (the nonce is the GroupCommitter key): the later
// waits for the next batch, and sees the first as a lone request would.
import { GantryError, GroupCommitter, Status, alreadyExists, notFound, type GroupCommitLimits, type OutboxEvent } from '@gantry/kit';
import { planDraw, type CreditLineRow, type DrawPlan, type LineBalances } from '../domain/credit-line.js';
import { creditAccount, escrowAccount, walletAccount } from '../domain/ledger.js';
import { NonceTaken, requestId, type LedgerTx, type RequestKey, type SettlementStore } from './settlement-store.js';

/** Most draws one transaction decides and writes. */
export const MAX_DRAWS_PER_TX = 256;
/** Most draws a process holds at once (queued, in flight); beyond it a draw is RESOURCE_EXHAUSTED. */
export const MAX_QUEUED_DRAWS = 4096;
/**
 * Draw transactions one process runs at once. One, as approvals' votes: with a second slot, a draw
 * arriving while the first transaction runs started a batch of its own at once, so batches stayed
 * small and each paid the whole transaction (six round trips, BEGIN to COMMIT) for few draws. With
 * one, the draws arriving meanwhile all go in the next batch (docs/benchmarks.md, settlement).
 */
export const MAX_DRAW_TX_IN_FLIGHT = 1;
/**
 * How long a draw arriving while a transaction slot is free waits for others to join its batch.
 * 0: none; under load the batches form while the slots are busy, and a lone draw pays no delay.
 */
export const DRAW_LINGER_MS = 0;

export type DrawCommitLimits = GroupCommitLimits;

export const DRAW_COMMIT_DEFAULTS: DrawCommitLimits = { maxBatch: MAX_DRAWS_PER_TX, maxQueued: MAX_QUEUED_DRAWS, maxTxInFlight: MAX_DRAW_TX_IN_FLIGHT, lingerMs: DRAW_LINGER_MS };

/** One signed draw, its signature already verified, with the service clock when it arrived (the line's expiry is judged at that time). */
export interface DrawRequest {
  request: RequestKey;
  walletAddress: string;
  sessionId: string;
  amountMinor: bigint;
  reason: string;
  nowMs: number;
  /** The caller's W3C trace context (JSON), stored with its event; undefined when events are off. */
  trace: string | undefined;
}

/** What a booked draw answers, stores for retries, and announces (the api layer maps the plan to the contract; no event when events are off). */
export interface Booked<R> {
  response: R;
  stored: unknown;
  event?: OutboxEvent;
}

export interface DrawResponses<R> {
  booked(draw: DrawRequest, plan: DrawPlan, transferId: string): Booked<R>;
  /** A retry's answer, from the response stored when it was booked. */
  replayed(stored: unknown): R;
  newId(): string;
}

export type DrawOutcome<R> = { ok: true; response: R } | { ok: false; error: GantryError };


/** A locked line as the batch changes it. */
interface Working {
  line: CreditLineRow;
  balances: LineBalances;
  changed: boolean;
}

export class DrawCommitter<R> {
  private readonly group: GroupCommitter<DrawRequest, DrawOutcome<R>>;

  constructor(
    private readonly store: SettlementStore,
    private readonly responses: DrawResponses<R>,
    limits: DrawCommitLimits = DRAW_COMMIT_DEFAULTS,
  ) {
    this.group = new GroupCommitter<DrawRequest, DrawOutcome<R>>(
      {
        commit: (draws) => this.store.transaction((tx) => this.decideAndWrite(tx, draws)),
        commitAlone: (draw) => this.commitAlone(draw),
        // A batch of one that lost its nonce to another transaction goes again alone, and sees that claim as a prior.
        retryAlone: (err) => err instanceof NonceTaken,
        keyOf: (draw) => requestId(draw.request.owner, draw.request.key),
        queueFull: (limit) => `this replica holds ${limit} draws waiting to commit; retry shortly (the draw was not booked)`,
      },
      limits,
    );
  }

  /**
   * Books one draw in the next group transaction; resolves once it is committed, or with its
   * refusal (RESOURCE_EXHAUSTED when the replica holds too many draws). Rejects only when its own
   * transaction failed with something other than a contract error (a database error: the kit
   * answers INTERNAL and logs it).
   */
  async submit(draw: DrawRequest): Promise<DrawOutcome<R>> {
    try {
      return await this.group.submit(draw);
    } catch (err) {
      if (err instanceof GantryError) return { ok: false, error: err };
      throw err;
    }
  }

  /** One draw in its own transaction; once more if its nonce was claimed meanwhile (the next attempt sees that claim as a prior). */
  private async commitAlone(d: DrawRequest): Promise<DrawOutcome<R>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.store.transaction((tx) => this.decideAndWrite(tx, [d])))[0]!;
      } catch (err) {
        if (!(err instanceof NonceTaken)) throw err;
        if (attempt === 2) throw nonceRace(d.request);
      }
    }
  }

  /** Reads priors, locks, decides with the domain rules and writes `draws` in `tx`; one outcome per draw, in order. */
  private async decideAndWrite(tx: LedgerTx, draws: DrawRequest[]): Promise<DrawOutcome<R>[]> {
    const priors = await tx.priors(draws.map((d) => d.request));
    const priorOf = (d: DrawRequest) => priors.get(requestId(d.request.owner, d.request.key));
    const work = await this.lockWorking(tx, [...new Set(draws.filter((d) => !priorOf(d)).map((d) => d.sessionId))]);
    const booked: Parameters<LedgerTx['bookDraws']>[0]['draws'][number][] = [];
    const outcomes = draws.map((d): DrawOutcome<R> => {
      const prior = priorOf(d);
      if (prior) return replay(d.request, prior, this.responses);
      const w = work.get(d.sessionId);
      const now = new Date(d.nowMs);
      let plan: DrawPlan;
      try {
        if (!w) throw notFound(`session ${d.sessionId} does not exist`);
        plan = planDraw(w.line, w.balances, d.walletAddress, d.amountMinor, now);
      } catch (err) {
        if (!(err instanceof GantryError)) throw err;
        return { ok: false, error: err };
      }
      const transferId = this.responses.newId();
      const b = this.responses.booked(d, plan, transferId);
      booked.push({ transfer: { id: transferId, ...plan.transfer }, sessionId: d.sessionId, memo: d.reason, now, request: d.request, response: b.stored, event: b.event && { event: b.event, trace: d.trace ?? '{}' } });
      applyDraw(w!, d.amountMinor);
      return { ok: true, response: b.response };
    });
    const lines = [...work.values()].filter((w) => w.changed).map((w) => ({ sessionId: w.line.sessionId, drawnMinor: w.line.drawnMinor, drawCount: w.line.drawCount }));
    if (booked.length > 0) await tx.bookDraws({ draws: booked, lines });
    return outcomes;
  }

  /** Locks the lines (session id order) and reads their wallet, credit and escrow balances after the locks. */
  private async lockWorking(tx: LedgerTx, sessionIds: string[]): Promise<Map<string, Working>> {
    if (sessionIds.length === 0) return new Map();
    const lines = await tx.lockLines(sessionIds.sort());
    const accounts = [...lines.values()].flatMap((l) => [walletAccount(l.walletAddress), creditAccount(l.sessionId), escrowAccount(l.sessionId)]);
    const balances = await tx.balances([...new Set(accounts)]);
    const of = (id: string) => balances.get(id) ?? 0n;
    return new Map(
      [...lines.values()].map((line) => [
        line.sessionId,
        { line: { ...line }, balances: { walletMinor: of(walletAccount(line.walletAddress)), creditMinor: of(creditAccount(line.sessionId)), escrowMinor: of(escrowAccount(line.sessionId)) }, changed: false },
      ]),
    );
  }
}

/** The working line and balances after a booked draw, so the batch's next draw on it sees this one. */
function applyDraw(w: Working, amountMinor: bigint): void {
  w.line.drawnMinor += amountMinor;
  w.line.drawCount += 1;
  w.balances.creditMinor -= amountMinor;
  w.balances.escrowMinor += amountMinor;
  w.changed = true;
}

/** A draw whose nonce is already held: the same request again (a retry) gets the stored answer; anything else is a reuse. */
function replay<R>(request: RequestKey, prior: { operation: string; digest: Buffer; response: unknown }, responses: DrawResponses<R>): DrawOutcome<R> {
  const sameBody = prior.operation === request.operation && prior.digest.equals(request.digest);
  if (!sameBody || prior.response === null) return { ok: false, error: alreadyExists(`nonce ${request.key} was already used for a different request; use a new one`) };
  return { ok: true, response: responses.replayed(prior.response) };
}

/** A nonce claimed by another transaction each time this draw was about to claim it (two attempts). */
const nonceRace = (request: RequestKey) => new GantryError(Status.ABORTED, `nonce ${request.key} was being used by another request at the same time; retry the same request`);

