import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { parseDurationText, unary } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import {
  HOUSE_ADDRESS,
  MAX_AMOUNT_MINOR,
  MAX_EXPIRES_IN_MS,
  MIN_EXPIRES_IN_MS,
  SettlementOperator,
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
const OPERATOR_KEY_HELP = "the L2 operator's key file (from `gantry settlement keygen`, its public key registered with `gantry settlement operator-key register`) that attests the final state";

/** An amount argument: a whole number of minor units, nothing else (no decimals, signs or exponents). */
function parseMinor(name: string, text: string, opts: { allowZero?: boolean } = {}): bigint {
  if (!/^\d+$/.test(text)) throw new Error(`${name} must be a whole number of minor units (e.g. 1050 for 10.50), got "${text}"`);
  const amount = BigInt(text);
  if (amount === 0n && !opts.allowZero) throw new Error(`${name} must be greater than zero (minor units), got ${text}`);
  if (amount > MAX_AMOUNT_MINOR) throw new Error(`${name} must be at most ${MAX_AMOUNT_MINOR} minor units, got ${text}`);
  return amount;
}

/** A lifetime such as 90m, 24h or 7d, in milliseconds. */
function parseDurationMs(name: string, text: string): bigint {
  const ms = BigInt(parseDurationText(name, text));
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

/** An Ed25519 public key argument: 64 hex digits, as `gantry settlement keygen --json` prints it. */
function parsePublicKey(text: string): Buffer {
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new Error(`"${text}" is not an Ed25519 public key: expected 64 hex digits, the "publicKey" that 'gantry settlement keygen --json' prints`);
  return Buffer.from(text, 'hex');
}

const stateName = enumName(settlementv1.creditLineStateToJSON, 'CREDIT_LINE_STATE_');
const keyStateName = enumName(settlementv1.operatorKeyStateToJSON, 'OPERATOR_KEY_STATE_');
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
  gantry settlement keygen --out operator.json            # the L2 operator's key...
  gantry settlement operator-key register <public key> --name casino-1   # ...which the house registers
  gantry settlement settle --wallet-key wallet.json --operator-key operator.json <session> 260
  gantry settlement status --wallet-key wallet.json`,
    );
  keygenCommand(cmd);
  transferCommand(cmd, 'deposit');
  transferCommand(cmd, 'withdraw');
  approveCommand(cmd);
  drawCommand(cmd);
  settleCommand(cmd);
  statusCommand(cmd);
  operatorKeyCommand(cmd);
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

/**
 * The session's drawn amount and draw count for the operator to attest, read from the wallet's
 * status: the CLI plays both the wallet and its L2 operator, which in production are two parties.
 */
async function sessionAtClose(s: SettlementClient, c: Connection, walletAddress: string, sessionId: string) {
  const line = (await unary(s.getCreditStatus, s, { walletAddress }, c.metadata())).creditLine;
  if (line?.sessionId !== sessionId) {
    throw new Error(`session ${sessionId} is not an unsettled credit line of wallet ${walletAddress} (${line ? `its unsettled line is ${line.sessionId}` : 'it has none'}); it may be settled already: see 'gantry settlement status ${walletAddress}'`);
  }
  return { drawnMinor: line.drawnMinor, drawCount: line.drawCount };
}

/** `gantry settlement settle`: closes the session with its final L2 balance, signed by the wallet and attested by the operator. */
function settleCommand(parent: Command): Command {
  return withConnection(
    withWalletKey(
      parent
        .command('settle <session> <final>')
        .description('close the session with its final L2 balance <final>, signed by the wallet and attested by a registered L2 operator key: the funds return to L1 and the house pays winnings or keeps losses; needs scopes settlement.credit and settlement.read'),
    )
      .requiredOption('--operator-key <file>', OPERATOR_KEY_HELP)
      .option('--locked <amount>', 'staked in bets not yet resolved, not part of <final>, at most the amount drawn; they are voided and refunded', '0'),
  ).action(async (sessionId: string, finalText: string, opts: WalletKeyOptions & { operatorKey: string; locked: string }) => {
    const finalMinor = parseMinor('<final>', finalText, { allowZero: true });
    const lockedMinor = parseMinor('--locked', opts.locked, { allowZero: true });
    const wallet = walletOf(opts.walletKey);
    const operator = new SettlementOperator(loadWalletKey(opts.operatorKey));
    await withClient(opts, ['settlement.credit', 'settlement.read'], async (c, s) => {
      const state = await sessionAtClose(s, c, wallet.address, sessionId);
      const r = await unary(s.creditSettle, s, operator.cosign(wallet.settle(sessionId, finalMinor, lockedMinor), state), c.metadata());
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

function operatorKeyJson(k: settlementv1.OperatorKey) {
  return {
    publicKey: k.publicKey.toString('hex'),
    name: k.name,
    state: keyStateName(k.state),
    registeredAt: k.registeredAt?.toISOString(),
    registeredBy: k.registeredBy,
    revokedAt: k.revokedAt?.toISOString() ?? null,
    revokedBy: k.revokedAt ? k.revokedBy : null,
    revokeReason: k.revokedAt ? k.revokeReason : null,
  };
}

/** The key a Register/Revoke response carries; the contract always sets it. */
function keyOf(r: { key?: settlementv1.OperatorKey | undefined }): settlementv1.OperatorKey {
  if (!r.key) throw new Error('the server answered without the operator key; check that it runs this version of gantry.settlement.v1');
  return r.key;
}

const keyLine = (k: settlementv1.OperatorKey) =>
  `${k.publicKey.toString('hex')}  ${k.name}  ${keyStateName(k.state)}  registered ${k.registeredAt?.toISOString()} by ${k.registeredBy}` +
  (k.revokedAt ? `; revoked ${k.revokedAt.toISOString()} by ${k.revokedBy}: ${k.revokeReason}` : '');

/** `gantry settlement operator-key ...`: the L2 operator keys whose attestations settle sessions. */
function operatorKeyCommand(parent: Command): Command {
  const cmd = parent.command('operator-key').description("the L2 operators' keys that attest settlements: register, revoke, list");
  withConnection(
    cmd
      .command('register <public-key>')
      .description("let an L2 operator key attest settlements; <public-key> is the 64 hex digits 'gantry settlement keygen --json' prints; needs scope settlement.admin")
      .requiredOption('--name <name>', 'who holds the key, e.g. casino-eu-1'),
  ).action(async (keyText: string, opts: ConnectionOptions & { name: string }) => {
    const publicKey = parsePublicKey(keyText);
    await withClient(opts, ['settlement.admin'], async (c, s) => {
      const key = keyOf(await unary(s.registerOperatorKey, s, { publicKey, name: opts.name }, c.metadata()));
      if (c.json) return printJson(operatorKeyJson(key));
      out(`registered operator key ${keyLine(key)}`);
    });
  });
  withConnection(
    cmd
      .command('revoke <public-key>')
      .description('stop an operator key from attesting, for good (settlements it attested stay booked); needs scope settlement.admin')
      .requiredOption('--reason <text>', 'why, up to 256 characters (e.g. "key leaked in incident 42")'),
  ).action(async (keyText: string, opts: ConnectionOptions & { reason: string }) => {
    const publicKey = parsePublicKey(keyText);
    await withClient(opts, ['settlement.admin'], async (c, s) => {
      const key = keyOf(await unary(s.revokeOperatorKey, s, { publicKey, reason: opts.reason }, c.metadata()));
      if (c.json) return printJson(operatorKeyJson(key));
      out(`revoked operator key ${keyLine(key)}`);
    });
  });
  withConnection(cmd.command('list').description('every operator key, active and revoked, newest first; needs scope settlement.read')).action(async (opts: ConnectionOptions) => {
    await withClient(opts, ['settlement.read'], async (c, s) => {
      const r = await unary(s.listOperatorKeys, s, {}, c.metadata());
      if (c.json) return printJson({ keys: r.keys.map(operatorKeyJson), truncated: r.truncated });
      for (const k of r.keys) out(keyLine(k));
      if (r.keys.length === 0) out("no operator keys: register one with 'gantry settlement operator-key register <public-key> --name <name>'");
      if (r.truncated) out('(more keys exist than the 1000 shown)');
    });
  });
  return cmd;
}
