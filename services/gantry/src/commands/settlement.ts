import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { unary } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import {
  HOUSE_ADDRESS,
  MAX_AMOUNT_MINOR,
  MAX_EXPIRES_IN_MS,
  MIN_EXPIRES_IN_MS,
  SettlementWallet,
  WALLET_ADDRESS_PATTERN,
  generateWallet,
  loadWalletKey,
  saveWalletKey,
} from '@gantry/settlement/client';
import { printJson, withConnection, withServiceClient, type Connection, type ConnectionOptions } from '../connection.js';
import { enumName } from './enum-name.js';

const client = (c: Connection) => new settlementv1.SettlementServiceClient(c.address, c.credentials, c.options);
type SettlementClient = ReturnType<typeof client>;

const WALLET_KEY_HELP = 'wallet key file from `gantry settlement keygen` (env GANTRY_WALLET_KEY)';

/** An amount argument: a whole number of minor units, nothing else (no decimals, signs or exponents). */
function parseMinor(name: string, text: string, opts: { allowZero?: boolean } = {}): bigint {
  if (!/^\d+$/.test(text)) throw new Error(`${name} must be a whole number of minor units (e.g. 1050 for 10.50), got "${text}"`);
  const amount = BigInt(text);
  if (amount === 0n && !opts.allowZero) throw new Error(`${name} must be greater than zero (minor units), got ${text}`);
  if (amount > MAX_AMOUNT_MINOR) throw new Error(`${name} must be at most ${MAX_AMOUNT_MINOR} minor units, got ${text}`);
  return amount;
}

const UNIT_MS: Record<string, bigint> = { ms: 1n, s: 1000n, m: 60_000n, h: 3_600_000n, d: 86_400_000n };

/** A lifetime such as 90m, 24h or 7d, in milliseconds. */
function parseDurationMs(name: string, text: string): bigint {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!m) throw new Error(`${name} must be a whole number with a unit (ms, s, m, h or d), e.g. 90m, 24h or 7d; got "${text}"`);
  const ms = BigInt(m[1]!) * UNIT_MS[m[2]!]!;
  if (ms < MIN_EXPIRES_IN_MS || ms > MAX_EXPIRES_IN_MS) throw new Error(`${name} must be between 1 minute and 7 days, got ${text}`);
  return ms;
}

/** A wallet address argument, or "house" where the house bankroll may be named. */
function parseWallet(text: string, opts: { allowHouse?: boolean } = {}): string {
  if (opts.allowHouse && text === HOUSE_ADDRESS) return text;
  const address = text.toLowerCase();
  if (!WALLET_ADDRESS_PATTERN.test(address)) {
    throw new Error(`"${text}" is not a wallet address: expected "0x" and 40 hex digits, as 'gantry settlement keygen' prints${opts.allowHouse ? `, or "${HOUSE_ADDRESS}" for the house bankroll` : ''}`);
  }
  return address;
}

const stateName = enumName(settlementv1.creditLineStateToJSON, 'CREDIT_LINE_STATE_');
const outcomeName = enumName(settlementv1.settlementOutcomeToJSON, 'SETTLEMENT_OUTCOME_');

function creditLineJson(l: settlementv1.CreditLine) {
  return {
    sessionId: l.sessionId,
    state: stateName(l.state),
    creditLimitMinor: l.creditLimitMinor,
    drawnMinor: l.drawnMinor,
    remainingCreditMinor: l.remainingCreditMinor,
    l2BalanceMinor: l.l2BalanceMinor,
    drawCount: l.drawCount,
    createdAt: l.createdAt?.toISOString(),
    expiresAt: l.expiresAt?.toISOString(),
    settledAt: l.settledAt?.toISOString() ?? null,
    outcome: l.settledAt ? outcomeName(l.outcome) : null,
    netPnlMinor: l.settledAt ? l.netPnlMinor : null,
  };
}

const withClient = <T>(opts: ConnectionOptions, scopes: string[], fn: (c: Connection, s: SettlementClient) => Promise<T>) => withServiceClient(opts, scopes, client, fn);

const out = (line: string) => process.stdout.write(line + '\n');

type WalletKeyOptions = ConnectionOptions & { walletKey: string };

/** The wallet of a --wallet-key file. */
const walletOf = (file: string) => new SettlementWallet(loadWalletKey(file));

/** --wallet-key, required: the key file whose wallet signs the subcommand's request. */
const withWalletKey = (sub: Command) => sub.requiredOption('--wallet-key <file>', WALLET_KEY_HELP, process.env.GANTRY_WALLET_KEY);

/** `gantry settlement ...`: wallet keys, funding, and the credit-line flow over the network. */
export function settlementCommand(): Command {
  const cmd = new Command('settlement')
    .description('wallet keys, L1 deposits and withdrawals, and credit lines (approve, draw, settle) on the settlement service')
    .addHelpText(
      'after',
      `
Amounts are whole numbers of minor units (1050 is 10.50); decimals are refused.
A session, from nothing to settled:
  gantry settlement keygen --out wallet.json
  gantry settlement deposit house 1000000                 # the house bankroll pays winnings
  gantry settlement deposit 0x<address> 1000
  gantry settlement approve --wallet-key wallet.json 500
  gantry settlement draw --wallet-key wallet.json <session> 200
  gantry settlement settle --wallet-key wallet.json <session> 260
  gantry settlement status --wallet-key wallet.json`,
    );
  keygenCommand(cmd);
  transferCommand(cmd, 'deposit');
  transferCommand(cmd, 'withdraw');
  approveCommand(cmd);
  drawCommand(cmd);
  settleCommand(cmd);
  statusCommand(cmd);
  return cmd;
}

/** `gantry settlement keygen`: a new wallet key file; no server involved. */
function keygenCommand(parent: Command): Command {
  return parent
    .command('keygen')
    .description('create a wallet: a new Ed25519 key in a JSON file (mode 0600) and the address it owns')
    .option('--out <file>', 'where to write the key file', 'wallet.json')
    .option('--force', 'replace an existing file (its key, and any funds only it controls, are lost)', false)
    .option('--json', 'machine-readable output, one JSON document per line', false)
    .action((opts: { out: string; force: boolean; json: boolean }) => {
      const keys = generateWallet();
      saveWalletKey(opts.out, keys, { force: opts.force });
      if (opts.json) return printJson({ address: keys.address, publicKey: keys.publicKey.toString('hex'), file: resolve(opts.out) });
      out(`wallet ${keys.address}`);
      out(`key written to ${opts.out} (mode 0600); keep it private and backed up: it alone controls the wallet's funds`);
      out(`next: fund it with 'gantry settlement deposit ${keys.address} <amount>'`);
    });
}

/** `gantry settlement deposit` and `withdraw`: L1 money into and out of the ledger. */
function transferCommand(parent: Command, kind: 'deposit' | 'withdraw'): Command {
  const deposit = kind === 'deposit';
  return withConnection(
    parent
      .command(`${kind} <wallet> <amount>`)
      .description(
        deposit
          ? `credit a wallet's L1 balance (or the house bankroll: wallet "${HOUSE_ADDRESS}") from outside the ledger; needs scope settlement.admin`
          : `pay out a wallet's available L1 balance (or the house's) to outside the ledger; needs scope settlement.admin`,
      )
      .option('--transfer-id <id>', 'idempotency key; repeating a call with the same id books it once (default: a new UUID, printed)')
      .option('--memo <text>', 'free-text memo, up to 256 characters', ''),
  ).action(async (walletText: string, amountText: string, opts: ConnectionOptions & { transferId?: string; memo: string }) => {
    const walletAddress = parseWallet(walletText, { allowHouse: true });
    const amountMinor = parseMinor('<amount>', amountText);
    const transferId = opts.transferId ?? randomUUID();
    await withClient(opts, ['settlement.admin'], async (c, s) => {
      const req = { walletAddress, amountMinor, transferId, memo: opts.memo };
      const r = deposit ? await unary(s.deposit, s, req, c.metadata()) : await unary(s.withdraw, s, req, c.metadata());
      if (c.json) return printJson({ walletAddress, transferId: r.transferId, amountMinor, l1BalanceMinor: r.l1BalanceMinor, l1AvailableMinor: r.l1AvailableMinor });
      out(`${deposit ? 'deposited' : 'withdrew'} ${amountMinor} ${deposit ? 'to' : 'from'} ${walletAddress}: L1 balance ${r.l1BalanceMinor} (available ${r.l1AvailableMinor})`);
      out(`transfer id ${r.transferId} (to retry safely, repeat the command with --transfer-id ${r.transferId})`);
    });
  });
}

/** `gantry settlement approve`: opens a credit line, signed by the wallet. */
function approveCommand(parent: Command): Command {
  return withConnection(
    withWalletKey(
      parent
        .command('approve <limit>')
        .description("open a credit line: reserve <limit> of the wallet's available L1 balance for a new game session; needs scope settlement.credit"),
    ).option('--expires-in <duration>', 'lifetime of the line: 1m to 7d, e.g. 90m, 24h, 7d', '24h'),
  ).action(async (limitText: string, opts: WalletKeyOptions & { expiresIn: string }) => {
    const limitMinor = parseMinor('<limit>', limitText);
    const expiresInMs = parseDurationMs('--expires-in', opts.expiresIn);
    const wallet = walletOf(opts.walletKey);
    await withClient(opts, ['settlement.credit'], async (c, s) => {
      const r = await unary(s.approveCreditLine, s, wallet.approve(limitMinor, expiresInMs), c.metadata());
      const line = r.creditLine!;
      if (c.json) return printJson({ walletAddress: wallet.address, sessionId: r.sessionId, l1AvailableMinor: r.l1AvailableMinor, creditLine: creditLineJson(line) });
      out(`session ${r.sessionId}: credit line of ${line.creditLimitMinor} for ${wallet.address}, expires ${line.expiresAt?.toISOString()}`);
      out(`L1 available after the reservation: ${r.l1AvailableMinor}`);
      out(`next: 'gantry settlement draw --wallet-key ${opts.walletKey} ${r.sessionId} <amount>'`);
    });
  });
}

/** `gantry settlement draw`: credit into the session's L2 escrow, signed by the wallet. */
function drawCommand(parent: Command): Command {
  return withConnection(
    withWalletKey(
      parent
        .command('draw <session> <amount>')
        .description("move <amount> of the session's credit into its L2 escrow; needs scope settlement.credit"),
    ).option('--reason <text>', 'why the L2 side draws (e.g. low_balance), up to 256 characters', ''),
  ).action(async (sessionId: string, amountText: string, opts: WalletKeyOptions & { reason: string }) => {
    const amountMinor = parseMinor('<amount>', amountText);
    const wallet = walletOf(opts.walletKey);
    await withClient(opts, ['settlement.credit'], async (c, s) => {
      const r = await unary(s.creditDraw, s, wallet.draw(sessionId, amountMinor, opts.reason), c.metadata());
      if (c.json) {
        return printJson({
          walletAddress: wallet.address, sessionId, transferId: r.transferId, amountDrawnMinor: r.amountDrawnMinor,
          l1BalanceBeforeMinor: r.l1BalanceBeforeMinor, l1BalanceAfterMinor: r.l1BalanceAfterMinor, l2BalanceMinor: r.l2BalanceMinor,
          remainingCreditMinor: r.remainingCreditMinor, drawCount: r.drawCount,
        });
      }
      out(`drew ${r.amountDrawnMinor} into session ${sessionId} (draw ${r.drawCount}): L2 balance ${r.l2BalanceMinor}, credit remaining ${r.remainingCreditMinor}, L1 ${r.l1BalanceBeforeMinor} -> ${r.l1BalanceAfterMinor}`);
    });
  });
}

/** `gantry settlement settle`: closes the session with its final L2 balance, signed by the wallet. */
function settleCommand(parent: Command): Command {
  return withConnection(
    withWalletKey(
      parent
        .command('settle <session> <final>')
        .description('close the session with its final L2 balance <final>: the funds return to L1 and the house pays winnings or keeps losses; needs scope settlement.credit'),
    ).option('--locked <amount>', 'staked in bets not yet resolved, not part of <final>; they are voided and refunded', '0'),
  ).action(async (sessionId: string, finalText: string, opts: WalletKeyOptions & { locked: string }) => {
    const finalMinor = parseMinor('<final>', finalText, { allowZero: true });
    const lockedMinor = parseMinor('--locked', opts.locked, { allowZero: true });
    const wallet = walletOf(opts.walletKey);
    await withClient(opts, ['settlement.credit'], async (c, s) => {
      const r = await unary(s.creditSettle, s, wallet.settle(sessionId, finalMinor, lockedMinor), c.metadata());
      const outcome = outcomeName(r.outcome);
      if (c.json) {
        return printJson({
          walletAddress: wallet.address, sessionId, settlementId: r.settlementId, outcome, netPnlMinor: r.netPnlMinor, totalDrawnMinor: r.totalDrawnMinor,
          finalL2BalanceMinor: r.finalL2BalanceMinor, lockedInBetsMinor: r.lockedInBetsMinor, returnedToL1Minor: r.returnedToL1Minor, drawCount: r.drawCount,
          l1BalanceBeforeMinor: r.l1BalanceBeforeMinor, l1BalanceAfterMinor: r.l1BalanceAfterMinor, settledAt: r.settledAt?.toISOString(),
        });
      }
      out(`settled session ${sessionId}: ${outcome}, net ${r.netPnlMinor > 0n ? '+' : ''}${r.netPnlMinor} (drew ${r.totalDrawnMinor} in ${r.drawCount} draws, returned ${r.returnedToL1Minor})`);
      out(`L1 balance ${r.l1BalanceBeforeMinor} -> ${r.l1BalanceAfterMinor}; settlement id ${r.settlementId}`);
    });
  });
}

/** `gantry settlement status`: a wallet's balances and credit line, named by address or key file. */
function statusCommand(parent: Command): Command {
  return withConnection(
    parent
      .command('status [wallet]')
      .description("a wallet's L1 balances, its open credit line and lifetime totals; needs scope settlement.read")
      .option('--wallet-key <file>', 'take the wallet address from this key file instead of the argument'),
  ).action(async (walletText: string | undefined, opts: ConnectionOptions & { walletKey?: string }) => {
    if (walletText !== undefined && opts.walletKey !== undefined) throw new Error('name the wallet once: either the <wallet> argument or --wallet-key, not both');
    if (walletText === undefined && opts.walletKey === undefined) throw new Error('name a wallet: a wallet address argument, or --wallet-key <file>');
    const walletAddress = walletText !== undefined ? parseWallet(walletText) : loadWalletKey(opts.walletKey!).address;
    await withClient(opts, ['settlement.read'], async (c, s) => {
      const r = await unary(s.getCreditStatus, s, { walletAddress }, c.metadata());
      const line = r.creditLine;
      if (c.json) {
        return printJson({
          walletAddress: r.walletAddress, l1BalanceMinor: r.l1BalanceMinor, l1AvailableMinor: r.l1AvailableMinor, l1ReservedMinor: r.l1ReservedMinor,
          hasActiveCredit: r.hasActiveCredit, creditLine: line ? creditLineJson(line) : null,
          totalCreditExtendedMinor: r.totalCreditExtendedMinor, totalDraws: r.totalDraws, totalSettlements: r.totalSettlements,
        });
      }
      out(`wallet ${r.walletAddress}`);
      out(`  L1 balance    ${r.l1BalanceMinor} (available ${r.l1AvailableMinor}, reserved ${r.l1ReservedMinor})`);
      if (line) {
        out(`  credit line   session ${line.sessionId}, ${stateName(line.state)}, expires ${line.expiresAt?.toISOString()}`);
        out(`                limit ${line.creditLimitMinor}, drawn ${line.drawnMinor} in ${line.drawCount} draws, remaining ${line.remainingCreditMinor}, L2 balance ${line.l2BalanceMinor}`);
      } else {
        out('  credit line   none (open one with \'gantry settlement approve\')');
      }
      out(`  lifetime      credit extended ${r.totalCreditExtendedMinor}, ${r.totalDraws} draws, ${r.totalSettlements} settlements`);
    });
  });
}
