// Random sequences of deposits, withdrawals, approvals, draws and settlements (attested by the
// platform's operator key) over real gRPC, checked step by step against a tiny model of the rules:
// each call succeeds exactly when the model says it should, balances match the model, and after
// every sequence the ledger audits clean (posted totals equal the transfers; all balances add up
// to zero: money is conserved).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { engines } from '@gantry/test-support/databases';
import { HOUSE_ACCOUNT } from '../src/domain/ledger.js';
import { accountBalance, rpc, startSettlementPlatform, TestWallet, type SettlementPlatform } from './support.js';

type Op =
  | { kind: 'deposit'; wallet: number; amount: bigint }
  | { kind: 'withdraw'; wallet: number; amount: bigint }
  | { kind: 'approve'; wallet: number; amount: bigint }
  | { kind: 'draw'; wallet: number; amount: bigint }
  | { kind: 'settle'; wallet: number; final: bigint; locked: bigint };

const WALLETS = 2;
const amount = fc.bigInt({ min: 1n, max: 400n });
// Weighted so most sequences get as far as draws and settlements.
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('deposit' as const), wallet: fc.nat(WALLETS - 1), amount }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('withdraw' as const), wallet: fc.nat(WALLETS - 1), amount }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('approve' as const), wallet: fc.nat(WALLETS - 1), amount }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('draw' as const), wallet: fc.nat(WALLETS - 1), amount }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('settle' as const), wallet: fc.nat(WALLETS - 1), final: fc.bigInt({ min: 0n, max: 600n }), locked: fc.bigInt({ min: 0n, max: 50n }) }) },
);

interface ModelWallet {
  available: bigint;
  line?: { sessionId: string; limit: bigint; drawn: bigint };
}

for (const engine of engines()) {
  describe(`settlement property test on ${engine.name}`, { skip: engine.skip }, () => {
    let p: SettlementPlatform;
    before(async () => {
      p = await startSettlementPlatform(engine.name);
    });
    after(async () => p?.close());

    test('random operation sequences follow the model and conserve money', async () => {
      const api = rpc(p);
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 25 }), async (ops) => {
          const wallets = Array.from({ length: WALLETS }, () => new TestWallet(p));
          const model: ModelWallet[] = wallets.map(() => ({ available: 0n }));
          let house = 10_000n;
          await api.deposit('house', house);
          // Each sequence gets a fresh house bankroll of 10,000 on top of what earlier ones left.
          house = await accountBalance(p, HOUSE_ACCOUNT);
          const funded = new Set<number>();
          for (const o of ops) {
            const w = wallets[o.wallet]!;
            const m = model[o.wallet]!;
            const outcome = await attempt(o, w, m);
            if (outcome.expectOk !== outcome.ok) assert.fail(`${o.kind} ${JSON.stringify(o, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}: model expected ${outcome.expectOk ? 'success' : 'refusal'}, got ${outcome.detail}`);
          }
          for (const [i, w] of wallets.entries()) {
            if (!funded.has(i)) continue;
            const st = await api.status(w.address);
            const m = model[i]!;
            assert.equal(st.l1AvailableMinor, m.available, `wallet ${i} available`);
            assert.equal(st.l1ReservedMinor, m.line ? m.line.limit - m.line.drawn : 0n, `wallet ${i} reserved`);
          }
          assert.equal(await accountBalance(p, HOUSE_ACCOUNT), house);
          assert.deepEqual(await p.store.audit(), []);

          async function attempt(o: Op, w: TestWallet, m: ModelWallet): Promise<{ ok: boolean; expectOk: boolean; detail: string }> {
            const run = async (expectOk: boolean, call: () => Promise<unknown>) => {
              try {
                const res = await call();
                return { ok: true, expectOk, detail: 'success', res };
              } catch (err) {
                return { ok: false, expectOk, detail: String((err as Error).message) };
              }
            };
            switch (o.kind) {
              case 'deposit': {
                const r = await run(true, () => api.deposit(w.address, o.amount));
                if (r.ok) {
                  m.available += o.amount;
                  funded.add(o.wallet);
                }
                return r;
              }
              case 'withdraw': {
                const r = await run(funded.has(o.wallet) && o.amount <= m.available, () => api.withdraw(w.address, o.amount));
                if (r.ok) m.available -= o.amount;
                return r;
              }
              case 'approve': {
                const r = await run(funded.has(o.wallet) && !m.line && o.amount <= m.available, () => api.approve(w.approveRequest(o.amount)));
                if (r.ok) {
                  m.available -= o.amount;
                  m.line = { sessionId: (r.res as { sessionId: string }).sessionId, limit: o.amount, drawn: 0n };
                }
                return r;
              }
              case 'draw': {
                if (!m.line) return { ok: false, expectOk: false, detail: 'no line (not sent)' };
                const line = m.line;
                const r = await run(line.drawn + o.amount <= line.limit, () => api.draw(w.drawRequest(line.sessionId, o.amount)));
                if (r.ok) line.drawn += o.amount;
                return r;
              }
              case 'settle': {
                if (!m.line) return { ok: false, expectOk: false, detail: 'no line (not sent)' };
                const line = m.line;
                const pnl = o.final + o.locked - line.drawn;
                // The attested settlement's bounds (the default payout cap is far above these amounts).
                const r = await run(pnl <= house && o.locked <= line.drawn, async () => api.settle(await w.settleRequest(line.sessionId, o.final, o.locked)));
                if (r.ok) {
                  m.available += line.limit - line.drawn + o.final + o.locked;
                  house -= pnl;
                  m.line = undefined;
                }
                return r;
              }
            }
          }
        }),
        { numRuns: 25 },
      );
    });
  });
}
