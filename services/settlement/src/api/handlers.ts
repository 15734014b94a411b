// The SettlementService handlers: each validates its request, reads and locks what the rules need
// through the store, asks the domain (../domain) what to book, and maps the result to the contract.
// Draws go through the draw committer (../store/draw-committer.ts), which books many per transaction
// with the same rules.
import { activeTraceContext, failedPrecondition, notFound, type HandlerContext, type Handlers, type OpenFeatureClient, type Outbox } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import type { AttestedSettlement } from '../domain/attestation.js';
import { checkApprove, checkAttestedState, checkHouseCovers, checkSettle, checkSettlementBounds, openLine, remainingCredit, reserveTransfer, type CreditLineRow } from '../domain/credit-line.js';
import { DRAWS_DISABLED_FLAG } from '../domain/flags.js';
import { planFunds, type FundsKind } from '../domain/funds.js';
import {
  FUNDING_ACCOUNT,
  HOUSE_ACCOUNT,
  HOUSE_ADDRESS,
  MAX_REASON_CHARS,
  creditAccount,
  escrowAccount,
  fundsAccount,
  lineState,
  settlementPlan,
  walletAccount,
  type Outcome,
  type SettlementPlan,
} from '../domain/ledger.js';
import { MAX_LISTED_OPERATOR_KEYS, checkAttestingKey, checkRegister, checkRevoke, type OperatorKeyRow } from '../domain/operator-keys.js';
import { requestDigest, type SignedFields } from '../domain/signing.js';
import { DRAW_COMMIT_DEFAULTS, DrawCommitter, type DrawCommitLimits, type DrawResponses } from '../store/draw-committer.js';
import type { LedgerTx, RequestKey, SettlementStore } from '../store/settlement-store.js';
import { checkAmount, checkAttestation, checkExpiresIn, checkMemo, checkOperatorKeyName, checkPublicKey, checkSessionId, checkSignature, checkTransferId, checkWallet } from './validation.js';
import { drawMetrics } from '../metrics.js';

export interface SettlementDeps {
  store: SettlementStore;
  /** Builds domain events (written through the store's transactions); `enabled` false: events are off and none is built. */
  events: Pick<Outbox, 'event' | 'enabled'>;
  /** The clock (milliseconds since the epoch); tests move it. */
  now: () => number;
  /** New ids for sessions, transfers and settlements. */
  newId: () => string;
  /** Feature flags (kill switches), evaluated in memory. */
  flags: Pick<OpenFeatureClient, 'getBooleanValue'>;
  /** The per-session payout cap (config `settlement.maxSessionWinningsMinor`). */
  maxSessionWinningsMinor: bigint;
  /** Group commit of draws (config `settlement.draws`); the defaults when not given. */
  drawLimits?: DrawCommitLimits;
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

/** A balance the store did not return: an account that does not exist yet holds nothing. */
const balanceOf = (balances: ReadonlyMap<string, bigint>, account: string) => balances.get(account) ?? 0n;

/**
 * One idempotent booking: claims the request's key in a transaction; a retry of a booked request
 * returns its stored response, otherwise `book` runs (and stores its response).
 */
function once<R>(deps: SettlementDeps, request: RequestKey, now: Date, codec: JsonCodec<R>, book: (tx: LedgerTx) => Promise<R>): Promise<R> {
  return deps.store.transaction(async (tx) => {
    const prior = await tx.claim(request, now);
    return prior ? codec.fromJSON(prior) : book(tx);
  });
}

/** When a wallet request is booked: the server clock, and the request's idempotency key. */
interface At {
  now: Date;
  request: RequestKey;
}

/** A wallet request's signature, checked before anything is read: when it is booked, and under which key. */
function signedAt(deps: SettlementDeps, fields: SignedFields, signature: settlementv1.Signature | undefined): At {
  const nowMs = deps.now();
  const { nonce } = checkSignature(signature, fields, nowMs);
  return { now: new Date(nowMs), request: walletRequest(fields, nonce) };
}

/** A wallet request: the signature checked before anything is read, then booked once per nonce. */
function signed<R>(deps: SettlementDeps, request: { fields: SignedFields; signature: settlementv1.Signature | undefined; codec: JsonCodec<R> }, book: (tx: LedgerTx, at: At) => Promise<R>): Promise<R> {
  const at = signedAt(deps, request.fields, request.signature);
  return once(deps, at.request, at.now, request.codec, (tx) => book(tx, at));
}

/** Deposit and Withdraw: one transfer between the funding account and a wallet (or the house). */
async function adminTransfer(deps: SettlementDeps, kind: FundsKind, req: settlementv1.DepositRequest): Promise<settlementv1.DepositResponse> {
  const address = checkWallet('wallet_address', req.walletAddress, { allowHouse: true });
  const amountMinor = checkAmount('amount_minor', req.amountMinor);
  const transferId = checkTransferId(req.transferId);
  const memo = checkMemo('memo', req.memo);
  const account = fundsAccount(address);
  const request: RequestKey = {
    owner: 'admin',
    key: transferId,
    operation: kind,
    digest: Buffer.from(JSON.stringify([kind, address, amountMinor.toString(), memo])),
  };
  const now = new Date(deps.now());
  return once(deps, request, now, settlementv1.DepositResponse, async (tx) => {
    if (kind === 'deposit') await tx.openAccounts([account]);
    const balances = await tx.lockBalances([FUNDING_ACCOUNT, account]);
    if (!balances.has(account)) throw notFound(`wallet ${address} has never held funds; deposit to it first`);
    const plan = planFunds(kind, account, amountMinor, balanceOf(balances, account));
    const line = address === HOUSE_ADDRESS ? undefined : await tx.unsettledLine(address);
    const reserved = line ? balanceOf(await tx.balances([creditAccount(line.sessionId)]), creditAccount(line.sessionId)) : 0n;
    const response: settlementv1.DepositResponse = { transferId, l1BalanceMinor: plan.availableAfterMinor + reserved, l1AvailableMinor: plan.availableAfterMinor };
    // Stored under "admin:<id>": the caller's ids and the server's generated UUIDs never collide.
    await tx.book([{ id: `admin:${transferId}`, ...plan.transfer }], { memo, now }, request, settlementv1.DepositResponse.toJSON(response));
    return response;
  });
}

async function approveCreditLine(deps: SettlementDeps, req: settlementv1.ApproveCreditLineRequest): Promise<settlementv1.ApproveCreditLineResponse> {
  const fields = {
    operation: 'ApproveCreditLine' as const,
    walletAddress: checkWallet('wallet_address', req.walletAddress),
    creditLimitMinor: checkAmount('credit_limit_minor', req.creditLimitMinor),
    expiresInMs: checkExpiresIn(req.expiresIn),
  };
  const codec = settlementv1.ApproveCreditLineResponse;
  return signed(deps, { fields, signature: req.signature, codec }, async (tx, { now, request }) => {
    const wallet = walletAccount(fields.walletAddress);
    const balances = await tx.lockBalances([wallet]);
    if (!balances.has(wallet)) throw notFound(`wallet ${fields.walletAddress} has never held funds; deposit to it first`);
    const available = balanceOf(balances, wallet);
    checkApprove(fields.creditLimitMinor, available, await tx.unsettledLine(fields.walletAddress));
    const line = openLine(deps.newId(), fields.walletAddress, fields.creditLimitMinor, now, fields.expiresInMs);
    const { sessionId } = line;
    await tx.insertLine(line);
    await tx.openAccounts([creditAccount(sessionId), escrowAccount(sessionId)]);
    const response: settlementv1.ApproveCreditLineResponse = { sessionId, creditLine: toCreditLine(line, 0n, now), l1AvailableMinor: available - fields.creditLimitMinor };
    await tx.book([{ id: deps.newId(), ...reserveTransfer(line) }], { sessionId, now }, request, codec.toJSON(response));
    const approved = { sessionId, walletAddress: fields.walletAddress, creditLimitMinor: fields.creditLimitMinor, expiresAt: line.expiresAt };
    await tx.emit([deps.events.event(sessionId, now, { $case: 'creditLineApproved', value: approved })], now);
    return response;
  });
}

async function creditDraw(deps: SettlementDeps, draws: DrawCommitter<settlementv1.CreditDrawResponse>, req: settlementv1.CreditDrawRequest): Promise<settlementv1.CreditDrawResponse> {
  const fields = {
    operation: 'CreditDraw' as const,
    walletAddress: checkWallet('wallet_address', req.walletAddress),
    sessionId: checkSessionId(req.sessionId),
    amountMinor: checkAmount('amount_minor', req.amountMinor),
    reason: checkMemo('reason', req.reason, MAX_REASON_CHARS),
  };
  if (await deps.flags.getBooleanValue(DRAWS_DISABLED_FLAG, false, { targetingKey: fields.walletAddress, sessionId: fields.sessionId })) {
    throw failedPrecondition(`credit draws are switched off by the feature flag ${DRAWS_DISABLED_FLAG}; retry once an operator turns it off (gantry flags get ${DRAWS_DISABLED_FLAG})`);
  }
  const { now, request } = signedAt(deps, fields, req.signature);
  // The trace context is stored only with the draw's event: with events off there is none to store.
  const trace = deps.events.enabled ? JSON.stringify(activeTraceContext()) : undefined;
  const outcome = await draws.submit({ ...fields, request, nowMs: now.getTime(), trace });
  if (!outcome.ok) throw outcome.error;
  return outcome.response;
}

/** How a booked draw answers (and stores that answer for retries) and what it announces. */
function drawResponses(deps: SettlementDeps): DrawResponses<settlementv1.CreditDrawResponse> {
  const codec = settlementv1.CreditDrawResponse;
  return {
    booked(d, plan, transferId) {
      const response: settlementv1.CreditDrawResponse = {
        transferId,
        amountDrawnMinor: d.amountMinor,
        l1BalanceBeforeMinor: plan.l1BeforeMinor,
        l1BalanceAfterMinor: plan.l1AfterMinor,
        l2BalanceMinor: plan.l2BalanceMinor,
        remainingCreditMinor: plan.remainingCreditMinor,
        drawCount: plan.drawCount,
      };
      const stored = codec.toJSON(response);
      // With events off the store writes none, so none is built (an id, a protobuf encoding per draw).
      if (!deps.events.enabled) return { response, stored };
      const drawn = { sessionId: d.sessionId, walletAddress: d.walletAddress, transferId, amountMinor: d.amountMinor, reason: d.reason };
      return { response, stored, event: deps.events.event(d.sessionId, new Date(d.nowMs), { $case: 'creditDrawn', value: drawn }) };
    },
    replayed: (stored) => codec.fromJSON(stored),
    newId: deps.newId,
  };
}

/**
 * What CreditSettle checks inside its transaction, having locked the line: the wallet's own
 * session, settled once, attested by a registered key that is not revoked (its row locked against
 * revocation until commit), for the session as it is, within the settlement bounds.
 */
async function checkedSettlement(deps: SettlementDeps, tx: LedgerTx, attested: AttestedSettlement & { publicKey: Buffer }): Promise<{ line: CreditLineRow; plan: SettlementPlan }> {
  const line = await tx.lockLine(attested.sessionId);
  if (!line) throw notFound(`session ${attested.sessionId} does not exist`);
  checkSettle(line, attested.walletAddress);
  checkAttestingKey(await tx.operatorKey(attested.publicKey, 'share'), attested.publicKey);
  checkAttestedState(line, attested);
  checkSettlementBounds(attested, deps.maxSessionWinningsMinor);
  const plan = settlementPlan({ ...attested, creditLimitMinor: line.creditLimitMinor, drawnMinor: line.drawnMinor });
  return { line, plan };
}

async function creditSettle(deps: SettlementDeps, req: settlementv1.CreditSettleRequest): Promise<settlementv1.CreditSettleResponse> {
  const fields = {
    operation: 'CreditSettle' as const,
    walletAddress: checkWallet('wallet_address', req.walletAddress),
    sessionId: checkSessionId(req.sessionId),
    finalL2BalanceMinor: checkAmount('final_l2_balance_minor', req.finalL2BalanceMinor, { allowZero: true }),
    lockedInBetsMinor: checkAmount('locked_in_bets_minor', req.lockedInBetsMinor, { allowZero: true }),
  };
  // Verified before anything is read, like the wallet's signature: a forged attestation costs a verify, never a lock.
  const attested = checkAttestation(req.attestation, fields);
  const codec = settlementv1.CreditSettleResponse;
  return signed(deps, { fields, signature: req.signature, codec }, async (tx, { now, request }) => {
    const { line, plan } = await checkedSettlement(deps, tx, attested);
    const wallet = walletAccount(fields.walletAddress);
    const credit = creditAccount(line.sessionId);
    const shared = await tx.lockBalances([HOUSE_ACCOUNT, wallet]);
    checkHouseCovers(plan, balanceOf(shared, HOUSE_ACCOUNT));
    const l1Before = balanceOf(shared, wallet) + balanceOf(await tx.balances([credit]), credit);
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
    await tx.recordSettlement({
      sessionId: line.sessionId,
      settledAt: now,
      outcome: plan.outcome,
      netPnlMinor: plan.netPnlMinor,
      finalL2BalanceMinor: fields.finalL2BalanceMinor,
      lockedInBetsMinor: fields.lockedInBetsMinor,
      returnedMinor: plan.returnedToL1Minor,
      attestation: attested,
    });
    await tx.book(plan.transfers.map((t) => ({ ...t, id: deps.newId() })), { sessionId: line.sessionId, now }, request, codec.toJSON(response));
    await tx.emit([settledEvent(deps, line, response, now)], now);
    return response;
  });
}

/** The settled event, from the line and the booked response. */
function settledEvent(deps: SettlementDeps, line: CreditLineRow, r: settlementv1.CreditSettleResponse, now: Date) {
  const settled = {
    sessionId: line.sessionId,
    walletAddress: line.walletAddress,
    settlementId: r.settlementId,
    outcome: r.outcome,
    netPnlMinor: r.netPnlMinor,
    totalDrawnMinor: line.drawnMinor,
    returnedToL1Minor: r.returnedToL1Minor,
    drawCount: line.drawCount,
  };
  return deps.events.event(line.sessionId, now, { $case: 'creditLineSettled', value: settled });
}

const KEY_STATES = {
  active: settlementv1.OperatorKeyState.OPERATOR_KEY_STATE_ACTIVE,
  revoked: settlementv1.OperatorKeyState.OPERATOR_KEY_STATE_REVOKED,
} as const;

function toOperatorKey(k: OperatorKeyRow): settlementv1.OperatorKey {
  return {
    publicKey: k.publicKey,
    name: k.name,
    state: k.revokedAt ? KEY_STATES.revoked : KEY_STATES.active,
    registeredAt: k.registeredAt,
    registeredBy: k.registeredBy,
    revokedAt: k.revokedAt ?? undefined,
    revokedBy: k.revokedBy ?? '',
    revokeReason: k.revokeReason ?? '',
  };
}

/** RegisterOperatorKey: the caller (settlement.admin) is recorded as the key's registrar. */
async function registerOperatorKey(deps: SettlementDeps, req: settlementv1.RegisterOperatorKeyRequest, ctx: HandlerContext): Promise<settlementv1.RegisterOperatorKeyResponse> {
  const publicKey = checkPublicKey('public_key', req.publicKey);
  const name = checkOperatorKeyName(req.name);
  const key = await deps.store.transaction(async (tx) => {
    const active = await tx.lockKeyRegistry();
    const existing = await tx.operatorKey(publicKey, 'none');
    const decision = checkRegister(existing, name, active);
    if (decision !== 'new') return decision.unchanged;
    const row: OperatorKeyRow = { publicKey, name, registeredAt: new Date(deps.now()), registeredBy: ctx.principal.subject, revokedAt: null, revokedBy: null, revokeReason: null };
    await tx.insertOperatorKey(row);
    return row;
  });
  return { key: toOperatorKey(key) };
}

/** RevokeOperatorKey: waits for settlements the key is attesting right now, then stops the rest. */
async function revokeOperatorKey(deps: SettlementDeps, req: settlementv1.RevokeOperatorKeyRequest, ctx: HandlerContext): Promise<settlementv1.RevokeOperatorKeyResponse> {
  const publicKey = checkPublicKey('public_key', req.publicKey);
  const reason = checkMemo('reason', req.reason);
  const key = await deps.store.transaction(async (tx) => {
    const existing = await tx.operatorKey(publicKey, 'update');
    const decision = checkRevoke(existing, publicKey);
    if (decision !== 'revoke') return decision.unchanged;
    return tx.revokeOperatorKey(publicKey, { at: new Date(deps.now()), by: ctx.principal.subject, reason: reason || 'no reason given' });
  });
  return { key: toOperatorKey(key) };
}

async function listOperatorKeys(deps: SettlementDeps): Promise<settlementv1.ListOperatorKeysResponse> {
  const keys = await deps.store.operatorKeys(MAX_LISTED_OPERATOR_KEYS + 1);
  return { keys: keys.slice(0, MAX_LISTED_OPERATOR_KEYS).map(toOperatorKey), truncated: keys.length > MAX_LISTED_OPERATOR_KEYS };
}

async function getCreditStatus(deps: SettlementDeps, req: settlementv1.GetCreditStatusRequest): Promise<settlementv1.GetCreditStatusResponse> {
  const address = checkWallet('wallet_address', req.walletAddress);
  const now = new Date(deps.now());
  const st = await deps.store.walletStatus(address);
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
}

export function settlementHandlers(deps: SettlementDeps): Partial<Handlers<typeof settlementv1.SettlementServiceService>> {
  const draws = new DrawCommitter(deps.store, drawResponses(deps), deps.drawLimits ?? DRAW_COMMIT_DEFAULTS);
  const countedDraw = drawMetrics();
  return {
    deposit: (req) => adminTransfer(deps, 'deposit', req),
    withdraw: (req) => adminTransfer(deps, 'withdraw', req),
    approveCreditLine: (req) => approveCreditLine(deps, req),
    creditDraw: (req) => countedDraw(() => creditDraw(deps, draws, req)),
    creditSettle: (req) => creditSettle(deps, req),
    getCreditStatus: (req) => getCreditStatus(deps, req),
    registerOperatorKey: (req, ctx) => registerOperatorKey(deps, req, ctx),
    revokeOperatorKey: (req, ctx) => revokeOperatorKey(deps, req, ctx),
    listOperatorKeys: () => listOperatorKeys(deps),
  };
}
