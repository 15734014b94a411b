// kill -9 of `gantry serve --target=approvals` ten times under its write load (submissions and
// votes), on PostgreSQL (issue 20).
// Each restart is on the same port, data dir and database; a call whose answer the kill swallowed
// is sent again unchanged (support.ts, untilAnswered), as the API's idempotency allows.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { unary } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { twoOfThreeRequest } from '../platform/support.js';
import { KILLS, killCycles, killedTarget, LOAD_TIMEOUT_MS, spread, untilAnswered, WORKERS } from './support.js';

requirePostgresInCi('the approvals kill -9 fault test');

describe('kill -9 of approvals under load, ten times, on PostgreSQL', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test('approvals: every acknowledged submission and vote is recorded once, and each state follows from its votes', async (t) => {
    const { proc, clients } = await killedTarget('approvals', { GANTRY_EVENTS_ENABLED: 'false' }, cleanups);
    const c = clients.approvals;
    const counters = { retries: 0 };
    const send = <T>(call: () => Promise<T>) => untilAnswered(proc, call, counters);
    const { APPROVE, REJECT } = { APPROVE: approvalsv1.VoteDecision.VOTE_DECISION_APPROVE, REJECT: approvalsv1.VoteDecision.VOTE_DECISION_REJECT };
    const { APPROVED, REJECTED } = { APPROVED: approvalsv1.ApprovalState.APPROVAL_STATE_APPROVED, REJECTED: approvalsv1.ApprovalState.APPROVAL_STATE_REJECTED };
    // 2 of 3: two approvals; two rejections (approval out of reach); approve, reject, approve.
    const patterns = [
      { votes: [['val-a', APPROVE], ['val-b', APPROVE]], state: APPROVED },
      { votes: [['val-a', REJECT], ['val-b', REJECT]], state: REJECTED },
      { votes: [['val-a', APPROVE], ['val-b', REJECT], ['val-c', APPROVE]], state: APPROVED },
    ] as const;
    const submitter = clients.as('ops', ['approvals.submit', 'approvals.read']);
    const voters = new Map(['val-a', 'val-b', 'val-c'].map((v) => [v, clients.as(v, ['approvals.vote', 'approvals.read'])]));
    const done: { approvalId: string; pattern: (typeof patterns)[number]; votes: number }[] = [];
    let acked = 0;
    let duplicates = 0;
    const worker = async (n: number, stopping: () => boolean) => {
      for (let i = 0; !stopping(); i++) {
        const pattern = patterns[(n + i) % patterns.length]!;
        const req = twoOfThreeRequest({ requestId: `kill-${n}-${i}`, title: 'kill test', content: Buffer.from(`kill test ${n}-${i}`) });
        const { approval } = await send(() => unary(c.submitApprovalRequest, c, req, submitter));
        acked++;
        const record = { approvalId: approval!.approvalId, pattern, votes: 0 };
        done.push(record);
        for (const [validator, decision] of pattern.votes) {
          const r = await send(() => unary(c.submitValidatorResponse, c, { approvalId: record.approvalId, decision, reason: `${validator} ${i}` }, voters.get(validator)!));
          if (r.duplicate) duplicates++;
          record.votes++;
          acked++;
        }
      }
    };
    const { downMs } = await killCycles(proc, { cycles: KILLS, acksPerCycle: 60, acked: () => acked, timeoutMs: LOAD_TIMEOUT_MS }, (stopping) => Array.from({ length: WORKERS }, (_, n) => worker(n, stopping)));
    assert.equal(proc.kills, KILLS);

    const reader = clients.as('auditor', ['approvals.read']);
    assert.equal(new Set(done.map((d) => d.approvalId)).size, done.length, 'each submission (retried with its request_id) made one approval');
    for (const d of done) {
      const { approval } = await unary(c.getApprovalStatus, c, { approvalId: d.approvalId }, reader);
      const expected = d.pattern.votes.slice(0, d.votes);
      assert.deepEqual(
        approval!.votes.map((v) => [v.validator, v.decision]),
        expected.map(([v, decision]) => [v, decision]),
        `${d.approvalId}: the votes recorded are the acknowledged ones, once each`,
      );
      const complete = d.votes === d.pattern.votes.length;
      assert.equal(approval!.state, complete ? d.pattern.state : approvalsv1.ApprovalState.APPROVAL_STATE_PENDING, `${d.approvalId}: state after ${d.votes} votes`);
      const approvals = expected.filter(([, x]) => x === APPROVE).length;
      assert.equal(approval!.tally!.approvals, approvals);
      assert.equal(approval!.tally!.rejections, expected.length - approvals);
    }
    t.diagnostic(`${KILLS} kills; ${acked} calls acknowledged (${done.length} approvals, ${acked - done.length} votes; ${duplicates} votes answered as duplicates of one the kill had cut); ${counters.retries} retries; restart ${spread(downMs)}`);
  });
});
