// Votes committed in groups (store/vote-committer.ts), over real gRPC on PGlite and PostgreSQL: a
// burst of concurrent votes on several requests shares transactions, yet every caller gets its own
// outcome, versions stay gapless and commit-ordered, and each decided request is finalized once; a
// vote refused by the rules or by the database fails none of the others; a full queue refuses.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import type { approvalsv1 } from '@gantry/proto';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { APPROVE, APPROVED, PENDING, REJECT, REJECTED, newRequest, rpc, startApprovalsPlatform, type ApprovalsPlatform } from './support.js';

requirePostgresInCi('the approvals group-commit tests');

interface Cast {
  subject: string;
  approvalId: string;
  decision?: approvalsv1.VoteDecision;
  reason?: string;
}
type Outcome = PromiseSettledResult<approvalsv1.SubmitValidatorResponseResponse>;

/** Long enough for a burst of votes to reach the server's vote queue. */
const ARRIVAL_MS = 500;

/**
 * Sends every vote at once while the test holds the row locks of `hold` (on PGlite, its one
 * connection), so the first vote transactions wait and the rest of the burst queues behind them:
 * released, the queue goes into one transaction. Without the hold, a fast engine can commit each
 * vote before the next arrives, and nothing would be grouped.
 */
async function burst(p: ApprovalsPlatform, casts: Cast[], hold: string[]): Promise<Outcome[]> {
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  let held = () => {};
  const holding = new Promise<void>((resolve) => (held = resolve));
  const holder = p.runtime.db.transaction(async (tx) => {
    await tx.query(`SELECT 1 FROM approvals.requests WHERE approval_id = ANY($1::text[]) ORDER BY approval_id FOR UPDATE`, [hold]);
    held();
    await released;
  });
  await holding;
  const outcomes = Promise.allSettled(casts.map((c) => rpc(p, c.subject).vote(c.approvalId, c.decision ?? APPROVE, c.reason ?? '')));
  await new Promise((r) => setTimeout(r, ARRIVAL_MS));
  release();
  await holder;
  return outcomes;
}

const accepted = (outcomes: Outcome[]) => outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
const codeOf = (o: Outcome | undefined) => (o?.status === 'rejected' ? (o.reason as ServiceError).code : status.OK);

for (const engine of engines()) {
  describe(`votes committed in groups over gRPC on ${engine.name}`, { skip: engine.skip }, () => {
    let p: ApprovalsPlatform;
    before(async () => {
      p = await startApprovalsPlatform(engine.name, { options: { sweepIntervalMs: 3_600_000 } });
    });
    after(async () => p?.close());

    /** The history after `head`: versions, the transaction of each, and FINALIZED changes per request. */
    async function historyAfter(head: bigint) {
      const { rows } = await p.runtime.db.query<{ v: string; approval_id: string; type: string; tx: string }>(
        `SELECT version::text AS v, approval_id, type, xmin::text AS tx FROM approvals.events WHERE version > $1 ORDER BY version`,
        [head.toString()],
      );
      const finalized = new Map<string, number>();
      for (const r of rows) if (r.type === 'FINALIZED') finalized.set(r.approval_id, (finalized.get(r.approval_id) ?? 0) + 1);
      return { versions: rows.map((r) => BigInt(r.v)), transactions: new Set(rows.map((r) => r.tx)).size, finalized };
    }

    test('a burst of votes on several requests shares transactions, and each caller gets its own outcome, with gapless versions and one FINALIZED per decided request', async () => {
      const race = await rpc(p).submit(newRequest({ n: 5, m: 3 }));
      const rejected = await rpc(p).submit(newRequest({ n: 4, m: 2 }));
      const open = await rpc(p, 'alice').submit(newRequest({ n: 6, m: 6, validators: ['alice', 'v1', 'v2', 'v3', 'v4', 'v5'] }));
      const earlier = await rpc(p, 'v1').vote(open.approvalId, APPROVE);
      const head = await p.store.headVersion();

      const casts: Cast[] = [
        // Five approvals race for the three a decision takes.
        ...['v0', 'v1', 'v2', 'v3', 'v4'].map((subject) => ({ subject, approvalId: race.approvalId })),
        // Three rejections of four validators needing two approvals: the third decides.
        ...['v0', 'v1', 'v2'].map((subject) => ({ subject, approvalId: rejected.approvalId, decision: REJECT })),
        { subject: 'v1', approvalId: open.approvalId }, // the vote cast before: a duplicate
        { subject: 'v1', approvalId: open.approvalId, decision: REJECT }, // a changed vote: ALREADY_EXISTS
        { subject: 'v2', approvalId: open.approvalId }, // the same new vote twice in one burst:
        { subject: 'v2', approvalId: open.approvalId }, // one is recorded, the other is its duplicate
        { subject: 'alice', approvalId: open.approvalId }, // the requester: PERMISSION_DENIED
        { subject: 'mallory', approvalId: race.approvalId }, // not a validator: PERMISSION_DENIED
        { subject: 'v0', approvalId: 'no-such-approval' }, // NOT_FOUND
      ];
      const outcomes = await burst(p, casts, [race.approvalId, rejected.approvalId, open.approvalId]);
      const of = (id: string) => outcomes.filter((_, i) => casts[i]!.approvalId === id);

      const raced = of(race.approvalId).slice(0, 5);
      assert.equal(accepted(raced).length, 3, 'exactly M approvals count');
      assert.deepEqual(accepted(raced).map((r) => r.approval!.state).sort(), [APPROVED, PENDING, PENDING].sort(), 'one vote, and only one, decides it');
      for (const o of raced.filter((o) => o.status === 'rejected')) assert.match((o.reason as ServiceError).details, /already APPROVED/);
      assert.deepEqual(raced.map(codeOf).sort(), [status.OK, status.OK, status.OK, status.FAILED_PRECONDITION, status.FAILED_PRECONDITION].sort());

      const rejections = accepted(of(rejected.approvalId));
      assert.equal(rejections.length, 3);
      assert.equal(rejections.filter((r) => r.approval!.state === REJECTED).length, 1, 'the third rejection decides it');

      const [dup, changed, first, second, requester] = of(open.approvalId);
      assert.equal(codeOf(dup), status.OK);
      assert.equal((dup as PromiseFulfilledResult<approvalsv1.SubmitValidatorResponseResponse>).value.duplicate, true);
      assert.equal(codeOf(changed), status.ALREADY_EXISTS);
      const pair = accepted([first!, second!]);
      assert.deepEqual(pair.map((r) => r.duplicate).sort(), [false, true], 'votes in one burst see each other');
      assert.equal(pair[0]!.approval!.version, pair[1]!.approval!.version);
      assert.equal(codeOf(requester), status.PERMISSION_DENIED);
      assert.equal(codeOf(outcomes[casts.length - 2]), status.PERMISSION_DENIED);
      assert.equal(codeOf(outcomes[casts.length - 1]), status.NOT_FOUND);

      // One version per recorded vote, gapless from the head before the burst, and each caller was
      // answered with the version its vote was recorded at.
      const recorded = accepted(outcomes).filter((r) => !r.duplicate);
      assert.equal(recorded.length, 3 + 3 + 1);
      const history = await historyAfter(head);
      assert.deepEqual(history.versions, Array.from({ length: recorded.length }, (_, i) => head + BigInt(i + 1)));
      assert.deepEqual(recorded.map((r) => r.approval!.version).sort((a, b) => (a < b ? -1 : 1)), history.versions);
      assert.equal(await p.store.headVersion(), head + BigInt(recorded.length));
      assert.deepEqual(Object.fromEntries(history.finalized), { [race.approvalId]: 1, [rejected.approvalId]: 1 });
      assert.ok(history.transactions < recorded.length, `the burst was committed in ${history.transactions} transactions for ${recorded.length} changes: votes were grouped`);

      const final = await Promise.all([race, rejected, open].map((a) => rpc(p).get(a.approvalId)));
      assert.deepEqual(final.map((a) => [a.state, a.votes.length]), [[APPROVED, 3], [REJECTED, 3], [PENDING, 2]]);
      // What GetApprovalStatus reads (one statement) is what the deciding call answered.
      assert.deepEqual(final[2]!.votes, pair.find((r) => !r.duplicate)!.approval!.votes);
      assert.deepEqual(final[2]!.votes[0], earlier.approval!.votes[0]);
    });

    test('a vote refused in a burst (a NUL in its reason) fails alone: the votes grouped with it are recorded, it is not', async () => {
      const requests = await Promise.all(Array.from({ length: 3 }, () => rpc(p).submit(newRequest({ n: 4, m: 4 }))));
      const head = await p.store.headVersion();
      const casts: Cast[] = requests.flatMap((r) => ['v0', 'v1', 'v2'].map((subject) => ({ subject, approvalId: r.approvalId })));
      casts.splice(4, 0, { subject: 'v3', approvalId: requests[1]!.approvalId, reason: 'fine\u0000print' });
      const outcomes = await burst(p, casts, requests.map((r) => r.approvalId));
      assert.equal(codeOf(outcomes[4]), status.INVALID_ARGUMENT);
      assert.deepEqual(outcomes.map(codeOf).filter((c, i) => i !== 4 && c !== status.OK), [], 'every other vote is recorded');
      const history = await historyAfter(head);
      assert.deepEqual(history.versions, Array.from({ length: 9 }, (_, i) => head + BigInt(i + 1)));
      const { rows } = await p.runtime.db.query(`SELECT 1 FROM approvals.votes WHERE approval_id = $1 AND validator = 'v3'`, [requests[1]!.approvalId]);
      assert.equal(rows.length, 0);
    });

    test('past the bound on votes waiting to commit, a vote is RESOURCE_EXHAUSTED with a retry pushback and writes nothing', async () => {
      const small = await startApprovalsPlatform(engine.name, { options: { sweepIntervalMs: 3_600_000, maxQueuedVotes: 1 } });
      try {
        const req = await rpc(small).submit(newRequest({ n: 20, m: 20 }));
        const casts = Array.from({ length: 20 }, (_, i) => ({ subject: `v${i}`, approvalId: req.approvalId }));
        const outcomes = await burst(small, casts, [req.approvalId]);
        const codes = outcomes.map(codeOf);
        assert.deepEqual(codes.filter((c) => c !== status.OK && c !== status.RESOURCE_EXHAUSTED), []);
        const full = outcomes.filter((o) => codeOf(o) === status.RESOURCE_EXHAUSTED) as PromiseRejectedResult[];
        assert.ok(full.length > 0, 'a burst of 20 votes over a bound of 1 is refused in part');
        assert.match((full[0]!.reason as ServiceError).details, /votes waiting to commit; retry shortly/);
        assert.equal((full[0]!.reason as ServiceError).metadata.get('grpc-retry-pushback-ms')[0], '100');
        const after = await rpc(small).get(req.approvalId);
        assert.deepEqual(after.votes.map((v) => v.validator).sort(), casts.filter((_, i) => codes[i] === status.OK).map((c) => c.subject).sort());
      } finally {
        await small.close();
      }
    });
  });
}
