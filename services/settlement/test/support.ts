// Helpers for the settlement tests: the settlement target in this process on either engine with a
// clock the test moves, clients with tokens per role, a registered L2 operator key, signed (and
// attested) request builders and a ledger snapshot to prove that a refused request booked nothing.
import { randomBytes } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { bearerMetadata, clientCredentials, clientOptions, FlagsClient, Outbox, unary, type Runtime } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import { tokenFor } from '@gantry/test-support/clients';
import type { EngineName } from '@gantry/test-support/databases';
import { startServicePlatform } from '@gantry/test-support/harness';
import { SettlementOperator, SettlementWallet, generateWallet, type SessionAtClose, type WalletKeys } from '../src/client/index.js';
import { createSettlementService, SETTLEMENT_EVENT_SOURCE, SETTLEMENT_EVENT_TYPES, SETTLEMENT_SCHEMA, SettlementStore, type SettlementConfigInput } from '../src/index.js';

export type SettlementClient = InstanceType<typeof settlementv1.SettlementServiceClient>;

export interface SettlementPlatform {
  runtime: Runtime;
  client: SettlementClient;
  /** Tokens: settlement.admin, settlement.credit, settlement.read. */
  admin: Metadata;
  credit: Metadata;
  read: Metadata;
  store: SettlementStore;
  /** The server's clock, in ms; tests move it. */
  clock: { nowMs: number };
  /** The process's FlagsService, with a flags.write token (kill switches). */
  flags: FlagsClient;
  /** An L2 operator key registered (as "casino-l2") when the platform started: it attests settlements. */
  operator: SettlementOperator;
  close(): Promise<void>;
}

/**
 * Starts the settlement target (mTLS, JWT, rate limits) on `engine` with a clock the test controls,
 * its settings (`settlement.*`) as given, and one registered operator key.
 */
export async function startSettlementPlatform(engine: EngineName, settlement: SettlementConfigInput = {}): Promise<SettlementPlatform> {
  const clock = { nowMs: Date.now() };
  // The race and property tests send bursts well above a production rate limit.
  const overrides = { rateLimit: { points: 100_000, windowSec: 1 }, settlement };
  const platform = await startServicePlatform(engine, [createSettlementService({ now: () => clock.nowMs })], { dbLabel: 't_settle', poolSize: 8, overrides });
  const { runtime, dataDir, tls } = platform;
  const client = new settlementv1.SettlementServiceClient(platform.address, clientCredentials(tls), clientOptions(tls));
  const md = (subject: string, scope: string) => bearerMetadata(tokenFor(dataDir, subject, [scope]));
  const flagsToken = md('sre', 'flags.write');
  const flags = new FlagsClient(platform.address, clientCredentials(tls), clientOptions(tls), () => flagsToken);
  const admin = md('treasury', 'settlement.admin');
  const operator = SettlementOperator.generate();
  await unary(client.registerOperatorKey, client, { publicKey: operator.publicKey, name: 'casino-l2' }, admin);
  return {
    runtime,
    client,
    admin,
    credit: md('casino-l2', 'settlement.credit'),
    read: md('auditor', 'settlement.read'),
    store: new SettlementStore(runtime.db, new Outbox(SETTLEMENT_SCHEMA, SETTLEMENT_EVENT_SOURCE, true, SETTLEMENT_EVENT_TYPES)),
    clock,
    flags,
    operator,
    async close() {
      client.close();
      flags.close();
      await platform.close();
    },
  };
}

export const newNonce = () => randomBytes(12).toString('base64url');

/**
 * A wallet for tests: the client library's SettlementWallet on the platform's clock, with a
 * nonce or timestamp of the test's choosing when it wants to replay or skew one.
 */
export class TestWallet {
  readonly keys: WalletKeys = generateWallet();
  constructor(private readonly p: SettlementPlatform) {}

  get address(): string {
    return this.keys.address;
  }

  private signer(opts: { nonce?: string; timestampMs?: number }): SettlementWallet {
    return new SettlementWallet(this.keys, { now: () => opts.timestampMs ?? this.p.clock.nowMs, nonce: () => opts.nonce ?? newNonce() });
  }

  approveRequest(creditLimitMinor: bigint, opts: { nonce?: string; timestampMs?: number; expiresInSec?: number } = {}): settlementv1.ApproveCreditLineRequest {
    return this.signer(opts).approve(creditLimitMinor, BigInt((opts.expiresInSec ?? 3600) * 1000));
  }

  drawRequest(sessionId: string, amountMinor: bigint, opts: { nonce?: string; timestampMs?: number; reason?: string } = {}): settlementv1.CreditDrawRequest {
    return this.signer(opts).draw(sessionId, amountMinor, opts.reason ?? 'low_balance');
  }

  /**
   * A settle request signed by the wallet and attested by the platform's operator (or `operator`;
   * null sends none) for the session as the database holds it now (or `state`).
   */
  async settleRequest(
    sessionId: string,
    finalL2BalanceMinor: bigint,
    lockedInBetsMinor = 0n,
    opts: { nonce?: string; timestampMs?: number; operator?: SettlementOperator | null; state?: SessionAtClose } = {},
  ): Promise<settlementv1.CreditSettleRequest> {
    const req = this.signer(opts).settle(sessionId, finalL2BalanceMinor, lockedInBetsMinor);
    const operator = opts.operator === undefined ? this.p.operator : opts.operator;
    return operator ? operator.cosign(req, opts.state ?? (await sessionState(this.p, sessionId))) : req;
  }
}

/** A line's drawn amount and draw count as the database holds them (nothing drawn when there is no such line). */
export async function sessionState(p: SettlementPlatform, sessionId: string): Promise<SessionAtClose> {
  const { rows } = await p.runtime.db.query<{ drawn_minor: bigint; draw_count: number }>('SELECT drawn_minor, draw_count FROM settlement.credit_lines WHERE session_id = $1', [sessionId]);
  const row = rows[0];
  return row ? { drawnMinor: row.drawn_minor, drawCount: row.draw_count } : { drawnMinor: 0n, drawCount: 0 };
}

/** The RPCs as promises. */
export function rpc(p: SettlementPlatform) {
  const c = p.client;
  return {
    deposit: (walletAddress: string, amountMinor: bigint, transferId = `dep-${newNonce()}`) => unary(c.deposit, c, { walletAddress, amountMinor, transferId, memo: 'test' }, p.admin),
    withdraw: (walletAddress: string, amountMinor: bigint, transferId = `wd-${newNonce()}`) => unary(c.withdraw, c, { walletAddress, amountMinor, transferId, memo: 'test' }, p.admin),
    approve: (req: settlementv1.ApproveCreditLineRequest) => unary(c.approveCreditLine, c, req, p.credit),
    draw: (req: settlementv1.CreditDrawRequest) => unary(c.creditDraw, c, req, p.credit),
    settle: (req: settlementv1.CreditSettleRequest) => unary(c.creditSettle, c, req, p.credit),
    status: (walletAddress: string) => unary(c.getCreditStatus, c, { walletAddress }, p.read),
    registerKey: (publicKey: Buffer, name: string) => unary(c.registerOperatorKey, c, { publicKey, name }, p.admin),
    revokeKey: (publicKey: Buffer, reason: string) => unary(c.revokeOperatorKey, c, { publicKey, reason }, p.admin),
    listKeys: () => unary(c.listOperatorKeys, c, {}, p.read),
  };
}

/** Every account balance, the transfer count, the credit lines, the outbox's events and the operator keys: equal snapshots mean nothing was booked, announced or registered. */
export async function ledgerSnapshot(p: SettlementPlatform): Promise<string> {
  const accounts = await p.runtime.db.query('SELECT id, debits_posted::text AS d, credits_posted::text AS c FROM settlement.accounts ORDER BY id');
  const transfers = await p.runtime.db.query('SELECT count(*)::text AS n FROM settlement.transfers');
  const lines = await p.runtime.db.query('SELECT session_id, drawn_minor::text AS drawn, draw_count, settled_at FROM settlement.credit_lines ORDER BY session_id');
  const events = await p.runtime.db.query('SELECT event_id FROM settlement.outbox ORDER BY seq');
  const keys = await p.runtime.db.query(`SELECT encode(public_key, 'hex') AS k, revoked_at FROM settlement.operator_keys ORDER BY public_key`);
  return JSON.stringify({ accounts: accounts.rows, transfers: transfers.rows, lines: lines.rows, events: events.rows, keys: keys.rows });
}

/** The available balance (credits - debits) of one account, 0 when it does not exist. */
export async function accountBalance(p: SettlementPlatform, id: string): Promise<bigint> {
  return (await p.store.balances([id])).get(id) ?? 0n;
}

export { openFreshDatabase } from '@gantry/test-support/databases';
