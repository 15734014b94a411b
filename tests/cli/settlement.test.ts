import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runGantry, startGantry, type GantryServer } from '../support/gantry-process.js';

/** `gantry settlement <args> --json` against the server: the parsed output, after asserting success. */
type Json = Record<string, unknown>;

describe('gantry settlement: a wallet from keygen to settled, against gantry serve --target=settlement', () => {
  let server: GantryServer;
  let workDir: string;
  let walletFile: string;
  let operatorFile: string;
  let operatorKey: string;
  let address: string;
  let sessionId: string;

  const settlement = (args: string[]) => runGantry(['settlement', ...args, '--address', `127.0.0.1:${server.port}`], server.env);
  async function json(args: string[]): Promise<Json> {
    const res = await settlement([...args, '--json']);
    assert.equal(res.code, 0, `gantry settlement ${args.join(' ')} failed:\n${res.stderr}`);
    return JSON.parse(res.stdout) as Json;
  }

  before(async () => {
    server = await startGantry('settlement');
    workDir = mkdtempSync(join(tmpdir(), 'gantry-settlement-cli-'));
    walletFile = join(workDir, 'wallet.json');
    operatorFile = join(workDir, 'operator.json');
  });
  after(async () => {
    await server?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  test('keygen writes a 0600 key file and prints its address; a second keygen to the same file is refused', async () => {
    const res = await runGantry(['settlement', 'keygen', '--out', walletFile, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout) as Json;
    assert.match(out.address as string, /^0x[0-9a-f]{40}$/);
    assert.equal(statSync(walletFile).mode & 0o777, 0o600);
    address = out.address as string;
    const again = await runGantry(['settlement', 'keygen', '--out', walletFile]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already exists.*--force/);
  });

  test('deposit funds the house and the wallet; the same --transfer-id again books once', async () => {
    assert.deepEqual(await json(['deposit', 'house', '10000', '--transfer-id', 'house-funding-1']), {
      walletAddress: 'house', transferId: 'house-funding-1', amountMinor: '10000', l1BalanceMinor: '10000', l1AvailableMinor: '10000',
    });
    const first = await json(['deposit', address, '1000', '--transfer-id', 'wallet-funding-1', '--memo', 'first deposit']);
    assert.deepEqual(first, { walletAddress: address, transferId: 'wallet-funding-1', amountMinor: '1000', l1BalanceMinor: '1000', l1AvailableMinor: '1000' });
    assert.deepEqual(await json(['deposit', address, '1000', '--transfer-id', 'wallet-funding-1', '--memo', 'first deposit']), first);
  });

  test('approve reserves the limit and returns the session', async () => {
    const out = await json(['approve', '--wallet-key', walletFile, '500', '--expires-in', '2h']);
    sessionId = out.sessionId as string;
    assert.match(sessionId, /^[0-9a-f-]{36}$/);
    assert.equal(out.l1AvailableMinor, '500');
    const line = out.creditLine as Json;
    assert.equal(line.state, 'OPEN');
    assert.equal(line.creditLimitMinor, '500');
    assert.equal(line.remainingCreditMinor, '500');
    assert.equal(Date.parse(line.expiresAt as string) - Date.parse(line.createdAt as string), 2 * 3_600_000);
  });

  test('two draws move credit into L2 with exact balances', async () => {
    const common = { walletAddress: address, sessionId };
    const first = await json(['draw', '--wallet-key', walletFile, sessionId, '200', '--reason', 'low_balance']);
    assert.deepEqual({ ...first, transferId: undefined }, {
      ...common, transferId: undefined, amountDrawnMinor: '200', l1BalanceBeforeMinor: '1000', l1BalanceAfterMinor: '800', l2BalanceMinor: '200', remainingCreditMinor: '300', drawCount: 1,
    });
    const second = await json(['draw', '--wallet-key', walletFile, sessionId, '100']);
    assert.deepEqual({ ...second, transferId: undefined }, {
      ...common, transferId: undefined, amountDrawnMinor: '100', l1BalanceBeforeMinor: '800', l1BalanceAfterMinor: '700', l2BalanceMinor: '300', remainingCreditMinor: '200', drawCount: 2,
    });
    assert.notEqual(first.transferId, second.transferId);
  });

  test('a draw over the remaining credit exits non-zero, says why, and books nothing', async () => {
    const res = await settlement(['draw', '--wallet-key', walletFile, sessionId, '201']);
    assert.notEqual(res.code, 0);
    assert.equal(res.stdout, '');
    assert.match(res.stderr, /^gantry: FAILED_PRECONDITION: draw of 201 exceeds the remaining credit of 200 \(limit 500, drawn 300\)/);
    const status = await json(['status', address]);
    assert.deepEqual({ ...(status.creditLine as Json), createdAt: undefined, expiresAt: undefined }, {
      sessionId, state: 'OPEN', creditLimitMinor: '500', drawnMinor: '300', remainingCreditMinor: '200', l2BalanceMinor: '300', drawCount: 2,
      createdAt: undefined, expiresAt: undefined, settledAt: null, outcome: null, netPnlMinor: null,
    });
    assert.equal(status.l1BalanceMinor, '700');
    assert.equal(status.l1ReservedMinor, '200');
  });

  test("the L2 operator's key is registered by an admin, listed, and a second name for it is refused", async () => {
    const res = await runGantry(['settlement', 'keygen', '--out', operatorFile, '--json']);
    assert.equal(res.code, 0, res.stderr);
    operatorKey = (JSON.parse(res.stdout) as Json).publicKey as string;
    const registered = await json(['operator-key', 'register', operatorKey, '--name', 'casino-cli']);
    assert.deepEqual({ ...registered, registeredAt: undefined }, {
      publicKey: operatorKey, name: 'casino-cli', state: 'ACTIVE', registeredAt: undefined, registeredBy: registered.registeredBy, revokedAt: null, revokedBy: null, revokeReason: null,
    });
    const listed = await json(['operator-key', 'list']);
    assert.deepEqual(listed, { keys: [registered], truncated: false });
    const again = await settlement(['operator-key', 'register', operatorKey, '--name', 'another-name']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /ALREADY_EXISTS: operator key [0-9a-f]{64} is already registered as "casino-cli"/);
  });

  test('a settlement without the operator key is refused before calling the server', async () => {
    const res = await settlement(['settle', '--wallet-key', walletFile, sessionId, '350']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /--operator-key <file>/);
  });

  test('settle returns the final balance plus the voided locked bets, attested by the operator; the house pays the winnings', async () => {
    const out = await json(['settle', '--wallet-key', walletFile, '--operator-key', operatorFile, sessionId, '350', '--locked', '20']);
    assert.match(out.settlementId as string, /\S/);
    assert.ok(!Number.isNaN(Date.parse(out.settledAt as string)));
    assert.deepEqual({ ...out, settlementId: undefined, settledAt: undefined }, {
      walletAddress: address, sessionId, settlementId: undefined, settledAt: undefined,
      outcome: 'WINNINGS', netPnlMinor: '70', totalDrawnMinor: '300', finalL2BalanceMinor: '350', lockedInBetsMinor: '20', returnedToL1Minor: '370', drawCount: 2,
      l1BalanceBeforeMinor: '700', l1BalanceAfterMinor: '1070',
    });
  });

  test('status (by key file) shows the settled wallet: everything back in L1, no open line, lifetime totals', async () => {
    assert.deepEqual(await json(['status', '--wallet-key', walletFile]), {
      walletAddress: address, l1BalanceMinor: '1070', l1AvailableMinor: '1070', l1ReservedMinor: '0', hasActiveCredit: false, creditLine: null,
      totalCreditExtendedMinor: '500', totalDraws: '2', totalSettlements: '1',
    });
    const human = await settlement(['status', '--wallet-key', walletFile]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /L1 balance +1070 \(available 1070, reserved 0\)/);
  });

  test('a second settlement of the same session is refused', async () => {
    const res = await settlement(['settle', '--wallet-key', walletFile, '--operator-key', operatorFile, sessionId, '0']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /session .* is not an unsettled credit line of wallet 0x[0-9a-f]{40} \(it has none\); it may be settled already/);
  });

  test('a revoked operator key is listed with who revoked it and why, and no longer attests', async () => {
    const revoked = await json(['operator-key', 'revoke', operatorKey, '--reason', 'rotated']);
    assert.deepEqual([revoked.state, revoked.revokeReason], ['REVOKED', 'rotated']);
    assert.match(revoked.revokedAt as string, /^\d{4}-/);
    const approved = await json(['approve', '--wallet-key', walletFile, '100']);
    const res = await settlement(['settle', '--wallet-key', walletFile, '--operator-key', operatorFile, approved.sessionId as string, '0']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /PERMISSION_DENIED: operator key [0-9a-f]{64} \("casino-cli"\) was revoked at/);
  });
});

describe('gantry settlement refuses bad input before calling the server, and says what to do', () => {
  test('an amount that is not a whole number of minor units', async () => {
    for (const amount of ['10.50', '1e3']) {
      const res = await runGantry(['settlement', 'deposit', 'house', amount, '--address', '127.0.0.1:1']);
      assert.equal(res.code, 2);
      assert.match(res.stderr, new RegExp(`<amount> must be a whole number of minor units \\(e\\.g\\. 1050 for 10\\.50\\), got "${amount.replace('.', '\\.')}"`));
    }
  });

  test('a missing wallet key file names the keygen command', async () => {
    const res = await runGantry(['settlement', 'draw', '--wallet-key', '/nonexistent/wallet.json', '5f0c6a52-3c1e-4d43-9a3e-2b7f9d1c0a11', '10']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /wallet key file \/nonexistent\/wallet\.json does not exist: create one with 'gantry settlement keygen/);
  });
});
