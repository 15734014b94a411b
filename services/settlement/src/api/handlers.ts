import { GantryError, Status, failedPrecondition, invalidArgument, notFound, type Handlers, type OpenFeatureClient, type Outbox } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import { checkDraw, checkSettle, remainingCredit, type CreditLineRow } from '../domain/credit-line.js';
import {
  DEFAULT_EXPIRES_IN_MS,
  FUNDING_ACCOUNT,
  HOUSE_ACCOUNT,
  HOUSE_ADDRESS,
  MAX_EXPIRES_IN_MS,
  MAX_REASON_CHARS,
  MIN_EXPIRES_IN_MS,
  creditAccount,
  escrowAccount,
  lineState,
  settlementPlan,
  walletAccount,
  type Outcome,
} from '../domain/ledger.js';
import { DRAWS_DISABLED_FLAG } from '../domain/flags.js';
import { requestDigest, type SignedFields } from '../domain/signing.js';
import type { LedgerTx, RequestKey, SettlementStore } from '../store/settlement-store.js';
import { checkAmount, checkMemo, checkSessionId, checkSignature, checkTransferId, checkWallet } from './validation.js';

export interface SettlementDeps {
  store: SettlementStore;
  /** Builds domain events (written through the store's transactions). */
  events: Pick<Outbox, 'event'>;
  /** The clock (milliseconds since the epoch); tests move it. */
  now: () => number;
  /** New ids for sessions, transfers and settlements. */
  newId: () => string;
  /** Feature flags (kill switches), evaluated in memory. */
  flags: Pick<OpenFeatureClient, 'getBooleanValue'>;
}

const OUTCOMES: Record<Outcome, settlementv1.SettlementOutcome> = {
  WINNINGS: settlementv1.SettlementOutcome.SETTLEMENT_OUTCOME_WINNINGS,
  LOSSES: settlementv1.SettlementOutcome.SETTLEMENT_OUTCOME_LOSSES,
  BREAKEVEN: settlementv1.SettlementOutcome.SETTLEMENT_OUTCOME_BREAKEVEN,
};

const STATES = {
  OPEN: settlementv1.CreditLineState.CREDIT_LINE_STATE_OPEN,
  SETTLED: settlementv1.CreditLineState.CREDIT_LINE_STATE_SETTLED,
  EXPIRED: settlementv1.CreditLineState.CREDIT_LINE_STATE_EXPIRED,
} as const;

function toCreditLine(line: CreditLineRow, escrowMinor: bigint, now: Date): settlementv1.CreditLine {
  return {
    sessionId: line.sessionId,
    walletAddress: line.walletAddress,
    state: STATES[lineState(line, now)],
    creditLimitMinor: line.creditLimitMinor,
    drawnMinor: line.drawnMinor,
    remainingCreditMinor: remainingCredit(line),
    l2BalanceMinor: escrowMinor,
    drawCount: line.drawCount,
    createdAt: line.createdAt,
    expiresAt: line.expiresAt,
    settledAt: line.settledAt ?? undefined,
    outcome: line.outcome ? OUTCOMES[line.outcome] : settlementv1.SettlementOutcome.SETTLEMENT_OUTCOME_UNSPECIFIED,
    netPnlMinor: line.netPnlMinor ?? 0n,
  };
}

/** A generated message type's JSON mapping: how a booked response is stored for retries. */
interface JsonCodec<R> {
  fromJSON(object: unknown): R;
  toJSON(message: R): unknown;
}

/** A wallet request's idempotency key: its nonce, scoped to the wallet, and its signed body. */
const walletRequest = (fields: SignedFields, nonce: string): RequestKey => ({ owner: fields.walletAddress, key: nonce, operation: fields.operation, digest: requestDigest(fields) });

/** Lines live 1 minute to 7 days; unset means 24 hours. */
function expiresInMs(d: { seconds: bigint; nanos: number } | undefined): bigint {
  if (!d) return DEFAULT_EXPIRES_IN_MS;
  const ms = d.seconds * 1000n + BigInt(Math.trunc(d.nanos / 1e6));
  if (ms < MIN_EXPIRES_IN_MS || ms > MAX_EXPIRES_IN_MS) throw invalidArgument('expires_in', `must be between 1 minute and 7 days, got ${ms} ms`);
  return ms;
}

export function settlementHandlers(deps: SettlementDeps): Partial<Handlers<typeof settlementv1.SettlementServiceService>> {
  const { store } = deps;
  const get = (m: Map<string, bigint>, id: string) => m.get(id) ?? 0n;

  /**
   * One idempotent booking: claims the request's key in a transaction; a retry of a booked
   * request returns its stored response, otherwise `book` runs (and stores its response).
   */
  function once<R>(request: RequestKey, now: Date, codec: JsonCodec<R>, book: (tx: LedgerTx) => Promise<R>): Promise<R> {
    return store.transaction(async (tx) => {
      const prior = await tx.claim(request, now);
      return prior ? codec.fromJSON(prior) : book(tx);
    });
  }

  /**
   * A wallet request: the signature checked before anything is read, then booked once per nonce.
   * `fastPath`, when given, may book the common case in one round trip; when it declines
   * (undefined), the checked path runs and decides.
   */
  async function signed<R>(
    fields: SignedFields,
    signature: settlementv1.Signature | undefined,
    codec: JsonCodec<R>,
    book: (tx: LedgerTx, at: { now: Date; nowMs: number; request: RequestKey }) => Promise<R>,
    fastPath?: (at: { now: Date; request: RequestKey }) => Promise<unknown>,
  ): Promise<R> {
    const nowMs = deps.now();
    const { nonce } = checkSignature(signature, fields, nowMs);
    const request = walletRequest(fields, nonce);
    const now = new Date(nowMs);
    const fast = await fastPath?.({ now, request });
    if (fast !== undefined) return codec.fromJSON(fast);
    return once(request, now, codec, (tx) => book(tx, { now, nowMs, request }));
  }

  /** Deposit and Withdraw: one transfer between the funding account and a wallet (or the house). */
  async function adminTransfer(kind: 'deposit' | 'withdraw', req: settlementv1.DepositRequest) {
    const address = checkWallet('wallet_address', req.walletAddress, { allowHouse: true });
    const amountMinor = checkAmount('amount_minor', req.amountMinor);
    const transferId = checkTransferId(req.transferId);
    const memo = checkMemo('memo', req.memo);
    const account = address === HOUSE_ADDRESS ? HOUSE_ACCOUNT : walletAccount(address);
    const request: RequestKey = {
      owner: 'admin',
      key: transferId,
      operation: kind,
      digest: Buffer.from(JSON.stringify([kind, address, amountMinor.toString(), memo])),
    };
    const now = new Date(deps.now());
    return once(request, now, settlementv1.DepositResponse, async (tx) => {
      if (kind === 'deposit') await tx.openAccounts([account]);
      const balances = await tx.lockBalances([FUNDING_ACCOUNT, account]);
      if (!balances.has(account)) throw notFound(`wallet ${address} has never held funds; deposit to it first`);
      const available = get(balances, account);
      if (kind === 'withdraw' && amountMinor > available) {
        throw new GantryError(Status.FAILED_PRECONDITION, `withdrawal of ${amountMinor} exceeds the available balance of ${available} (funds reserved by a credit line cannot be withdrawn)`);
      }
      const after = kind === 'deposit' ? available + amountMinor : available - amountMinor;
      const line = address === HOUSE_ADDRESS ? undefined : await tx.unsettledLine(address);
      const reserved = line ? get(await tx.balances([creditAccount(line.sessionId)]), creditAccount(line.sessionId)) : 0n;
      const response: settlementv1.DepositResponse = { transferId, l1BalanceMinor: after + reserved, l1AvailableMinor: after };
      const [debit, credit] = kind === 'deposit' ? [FUNDING_ACCOUNT, account] : [account, FUNDING_ACCOUNT];
      // Stored under "admin:<id>": the caller's ids and the server's generated UUIDs never collide.
      await tx.book([{ id: `admin:${transferId}`, debit, credit, amountMinor, kind }], { memo, now }, request, settlementv1.DepositResponse.toJSON(response));
      return response;
    });
  }

  return {
    async deposit(req) {
      return adminTransfer('deposit', req);
    },

    async withdraw(req) {
      return adminTransfer('withdraw', req);
    },

    async approveCreditLine(req) {
      const fields: SignedFields = {
        operation: 'ApproveCreditLine',
        walletAddress: checkWallet('wallet_address', req.walletAddress),
        creditLimitMinor: checkAmount('credit_limit_minor', req.creditLimitMinor),
        expiresInMs: expiresInMs(req.expiresIn),
      };
      return signed(fields, req.signature, settlementv1.ApproveCreditLineResponse, async (tx, { now, nowMs, request }) => {
        const wallet = walletAccount(fields.walletAddress);
        const balances = await tx.lockBalances([wallet]);
        if (!balances.has(wallet)) throw notFound(`wallet ${fields.walletAddress} has never held funds; deposit to it first`);
        const available = get(balances, wallet);
        if (fields.creditLimitMinor > available) {
          throw new GantryError(Status.FAILED_PRECONDITION, `credit limit ${fields.creditLimitMinor} exceeds the available L1 balance of ${available}`);
        }
        const existing = await tx.unsettledLine(fields.walletAddress);
        if (existing) throw new GantryError(Status.FAILED_PRECONDITION, `wallet already has an unsettled credit line (session ${existing.sessionId}); settle it first`);
        const sessionId = deps.newId();
        const line: CreditLineRow = {
          sessionId,
          walletAddress: fields.walletAddress,
          creditLimitMinor: fields.creditLimitMinor,
          drawnMinor: 0n,
          drawCount: 0,
          createdAt: now,
          expiresAt: new Date(nowMs + Number(fields.expiresInMs)),
          settledAt: null,
          outcome: null,
          netPnlMinor: null,
        };
        await tx.insertLine(line);
        await tx.openAccounts([creditAccount(sessionId), escrowAccount(sessionId)]);
        const response: settlementv1.ApproveCreditLineResponse = { sessionId, creditLine: toCreditLine(line, 0n, now), l1AvailableMinor: available - fields.creditLimitMinor };
        const reserve = { id: deps.newId(), debit: wallet, credit: creditAccount(sessionId), amountMinor: fields.creditLimitMinor, kind: 'reserve' as const };
        await tx.book([reserve], { sessionId, now }, request, settlementv1.ApproveCreditLineResponse.toJSON(response));
        const approved = { sessionId, walletAddress: fields.walletAddress, creditLimitMinor: fields.creditLimitMinor, expiresAt: line.expiresAt };
        await tx.emit([deps.events.event(sessionId, now, { $case: 'creditLineApproved', value: approved })], now);
        return response;
      });
    },

    async creditDraw(req) {
      const fields: SignedFields = {
        operation: 'CreditDraw',
        walletAddress: checkWallet('wallet_address', req.walletAddress),
        sessionId: checkSessionId(req.sessionId),
        amountMinor: checkAmount('amount_minor', req.amountMinor),
        reason: checkMemo('reason', req.reason, MAX_REASON_CHARS),
      };
      // The same event whichever path books the draw.
      const drawnEvent = (transferId: string, now: Date) =>
        deps.events.event(fields.sessionId, now, {
          $case: 'creditDrawn',
          value: { sessionId: fields.sessionId, walletAddress: fields.walletAddress, transferId, amountMinor: fields.amountMinor, reason: fields.reason },
        });
      if (await deps.flags.getBooleanValue(DRAWS_DISABLED_FLAG, false, { targetingKey: fields.walletAddress, sessionId: fields.sessionId })) {
        throw failedPrecondition(`credit draws are switched off by the feature flag ${DRAWS_DISABLED_FLAG}; retry once an operator turns it off (gantry flags get ${DRAWS_DISABLED_FLAG})`);
      }
      return signed(fields, req.signature, settlementv1.CreditDrawResponse, async (tx, { now, request }) => {
        const locked = await tx.lockLineWithBalances(fields.sessionId);
        if (!locked) throw notFound(`session ${fields.sessionId} does not exist`);
        const { line } = locked;
        checkDraw(line, fields.walletAddress, fields.amountMinor, now);
        const l1Before = locked.walletMinor + locked.creditMinor;
        const transferId = deps.newId();
        const response: settlementv1.CreditDrawResponse = {
          transferId,
          amountDrawnMinor: fields.amountMinor,
          l1BalanceBeforeMinor: l1Before,
          l1BalanceAfterMinor: l1Before - fields.amountMinor,
          l2BalanceMinor: locked.escrowMinor + fields.amountMinor,
          remainingCreditMinor: remainingCredit(line) - fields.amountMinor,
          drawCount: line.drawCount + 1,
        };
        const draw = { id: transferId, debit: creditAccount(line.sessionId), credit: escrowAccount(line.sessionId), amountMinor: fields.amountMinor, kind: 'draw' as const };
        await tx.book([draw], { sessionId: line.sessionId, memo: fields.reason, now, drawnMinor: fields.amountMinor }, request, settlementv1.CreditDrawResponse.toJSON(response));
        await tx.emit([drawnEvent(transferId, now)], now);
        return response;
      }, ({ now, request }) => {
        const transferId = deps.newId();
        return store.tryDraw({ request, sessionId: fields.sessionId, amountMinor: fields.amountMinor, reason: fields.reason, transferId, now, event: drawnEvent(transferId, now) });
      });
    },

    async creditSettle(req) {
      const fields: SignedFields = {
        operation: 'CreditSettle',
        walletAddress: checkWallet('wallet_address', req.walletAddress),
        sessionId: checkSessionId(req.sessionId),
        finalL2BalanceMinor: checkAmount('final_l2_balance_minor', req.finalL2BalanceMinor, { allowZero: true }),
        lockedInBetsMinor: checkAmount('locked_in_bets_minor', req.lockedInBetsMinor, { allowZero: true }),
      };
      return signed(fields, req.signature, settlementv1.CreditSettleResponse, async (tx, { now, request }) => {
        const line = await tx.lockLine(fields.sessionId);
        if (!line) throw notFound(`session ${fields.sessionId} does not exist`);
        checkSettle(line, fields.walletAddress);
        const plan = settlementPlan({ ...fields, creditLimitMinor: line.creditLimitMinor, drawnMinor: line.drawnMinor });
        const wallet = walletAccount(fields.walletAddress);
        const credit = creditAccount(line.sessionId);
        const shared = await tx.lockBalances([HOUSE_ACCOUNT, wallet]);
        const house = get(shared, HOUSE_ACCOUNT);
        if (plan.netPnlMinor > house) {
          throw new GantryError(Status.FAILED_PRECONDITION, `the house cannot cover winnings of ${plan.netPnlMinor} (its balance is ${house}); fund the house with Deposit to "${HOUSE_ADDRESS}"`);
        }
        const reserved = get(await tx.balances([credit]), credit);
        const l1Before = get(shared, wallet) + reserved;
        const response: settlementv1.CreditSettleResponse = {
          settlementId: deps.newId(),
          outcome: OUTCOMES[plan.outcome],
          netPnlMinor: plan.netPnlMinor,
          totalDrawnMinor: line.drawnMinor,
          finalL2BalanceMinor: fields.finalL2BalanceMinor,
          lockedInBetsMinor: fields.lockedInBetsMinor,
          returnedToL1Minor: plan.returnedToL1Minor,
          drawCount: line.drawCount,
          l1BalanceBeforeMinor: l1Before,
          l1BalanceAfterMinor: l1Before + plan.returnedToL1Minor,
          settledAt: now,
        };
        await tx.recordSettlement({ sessionId: line.sessionId, settledAt: now, outcome: plan.outcome, netPnlMinor: plan.netPnlMinor, finalL2BalanceMinor: fields.finalL2BalanceMinor, lockedInBetsMinor: fields.lockedInBetsMinor, returnedMinor: plan.returnedToL1Minor });
        const transfers = plan.transfers.map((t) => ({ ...t, id: deps.newId() }));
        await tx.book(transfers, { sessionId: line.sessionId, now }, request, settlementv1.CreditSettleResponse.toJSON(response));
        const settled = {
          sessionId: line.sessionId,
          walletAddress: fields.walletAddress,
          settlementId: response.settlementId,
          outcome: response.outcome,
          netPnlMinor: plan.netPnlMinor,
          totalDrawnMinor: line.drawnMinor,
          returnedToL1Minor: plan.returnedToL1Minor,
          drawCount: line.drawCount,
        };
        await tx.emit([deps.events.event(line.sessionId, now, { $case: 'creditLineSettled', value: settled })], now);
        return response;
      });
    },

    async getCreditStatus(req) {
      const address = checkWallet('wallet_address', req.walletAddress);
      const now = new Date(deps.now());
      const st = await store.walletStatus(address);
      if (!st) throw notFound(`wallet ${address} has never held funds`);
      const { line } = st;
      const reserved = line?.creditMinor ?? 0n;
      return {
        walletAddress: address,
        l1BalanceMinor: st.availableMinor + reserved,
        l1AvailableMinor: st.availableMinor,
        l1ReservedMinor: reserved,
        hasActiveCredit: line !== undefined && lineState(line, now) === 'OPEN',
        creditLine: line ? toCreditLine(line, line.escrowMinor, now) : undefined,
        totalCreditExtendedMinor: st.creditExtendedMinor,
        totalDraws: st.draws,
        totalSettlements: st.settlements,
      };
    },
  };
}
