// The approvals service over real gRPC (mTLS, JWT, rate limits) on PGlite and PostgreSQL: the
// quorum rules end to end, every refusal with its precise code and nothing written, idempotent
// submission, listing, and 50 validators racing on one request.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { approvalsv1 } from '@gantry/proto';
import { assertStatus } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { ABSTAIN, APPROVE, APPROVED, EXPIRED, PENDING, REJECT, REJECTED, newRequest, outboxEvents, rpc, sha256, startApprovalsPlatform, tablesSnapshot, type ApprovalsPlatform } from './support.js';

requirePostgresInCi('the approvals service tests');

const { APPROVAL_TYPE_CONTRACT_DEPLOYMENT: DEPLOYMENT, APPROVAL_TYPE_UNSPECIFIED } = approvalsv1.ApprovalType;

for (const engine of engines()) {
  describe(`approvals service over gRPC on ${engine.name}`, { skip: engine.skip }, () => {
    let p: ApprovalsPlatform;
    before(async () => {
      // The sweeper is held off here (the expiry tests run their own): lazy expiry is what is tested.
      p = await startApprovalsPlatform(engine.name, { options: { sweepIntervalMs: 3_600_000 } });
    });
    after(async () => p?.close());

    /** Runs `attempt`, expects `code`, and proves the tables are unchanged. */
    async function refusedWithNothingWritten(attempt: () => Promise<unknown>, code: number, pattern: RegExp): Promise<void> {
      const snapshot = await tablesSnapshot(p);
      await assertStatus(attempt(), code, pattern);
      assert.equal(await tablesSnapshot(p), snapshot, 'a refused call changed the tables');
    }

    test('a submitted request is PENDING at a new version with its validators, hash and an empty tally; Get returns the same', async () => {
      const alice = rpc(p, 'alice');
      const req = newRequest({ n: 3, m: 2, labels: { desk: 'fx' } });
      const head = await p.store.headVersion();
      const a = await alice.submit(req);
      assert.equal(a.state, PENDING);
      assert.equal(a.requester, 'alice');
      assert.deepEqual(a.validators, ['v0', 'v1', 'v2']);
      assert.equal(a.requiredApprovals, 2);
      assert.deepEqual(a.contentHash, req.contentHash);
      assert.deepEqual(a.tally, { approvals: 0, rejections: 0, abstentions: 0, outstanding: 3 });
      assert.equal(a.version, head + 1n, 'a creation is one change: the next version');
      assert.deepEqual(a.labels, { desk: 'fx' });
      assert.deepEqual(await alice.get(a.approvalId), a);
    });

    test('M approvals approve: the deciding vote finalizes it at its own version, and a vote after that is FAILED_PRECONDITION and writes nothing', async () => {
      const a = await rpc(p).submit(newRequest({ n: 3, m: 2 }));
      const first = await rpc(p, 'v0').vote(a.approvalId, APPROVE, 'looks right');
      assert.equal(first.approval!.state, PENDING);
      assert.equal(first.approval!.version > a.version, true);
      const second = await rpc(p, 'v1').vote(a.approvalId, APPROVE);
      assert.equal(second.approval!.state, APPROVED);
      assert.ok(second.approval!.finalizedAt);
      assert.equal(second.approval!.version, first.approval!.version + 1n);
      assert.deepEqual(second.approval!.tally, { approvals: 2, rejections: 0, abstentions: 0, outstanding: 1 });
      assert.deepEqual(second.approval!.votes.map((v) => [v.validator, v.reason]), [['v0', 'looks right'], ['v1', '']]);
      await refusedWithNothingWritten(() => rpc(p, 'v2').vote(a.approvalId, REJECT), status.FAILED_PRECONDITION, /already APPROVED/);
      assert.equal((await rpc(p).get(a.approvalId)).state, APPROVED, 'terminal states never change');
    });

    test('created, each vote cast and the decision are domain events in the outbox, written with their change; a repeated vote announces nothing', async () => {
      const a = await rpc(p).submit(newRequest({ n: 3, m: 2, labels: { team: 'payments' } }));
      await rpc(p, 'v0').vote(a.approvalId, REJECT, 'too big');
      await rpc(p, 'v0').vote(a.approvalId, REJECT, 'too big');
      await rpc(p, 'v1').vote(a.approvalId, APPROVE);
      const decided = await rpc(p, 'v2').vote(a.approvalId, APPROVE);
      const events = await outboxEvents(p, a.approvalId);
      assert.deepEqual(events.map((e) => e.type), ['approvals.approval.created', 'approvals.vote.cast', 'approvals.vote.cast', 'approvals.vote.cast', 'approvals.approval.finalized']);
      assert.ok(events.every((e) => e.source === 'gantry.approvals' && e.subject === a.approvalId));
      assert.deepEqual(events[0]!.data, {
        $case: 'approvalCreated',
        value: { approvalId: a.approvalId, type: a.type, priority: a.priority, requester: 'alice', title: a.title, contentHash: a.contentHash, validators: a.validators, requiredApprovals: 2, expiresAt: a.expiresAt, labels: { team: 'payments' } },
      });
      assert.deepEqual(events[1]!.data, { $case: 'approvalVoteCast', value: { approvalId: a.approvalId, validator: 'v0', decision: REJECT, reason: 'too big', tally: { approvals: 0, rejections: 1, abstentions: 0, outstanding: 2 } } });
      assert.deepEqual(events[4]!.data, { $case: 'approvalFinalized', value: { approvalId: a.approvalId, state: APPROVED, tally: { approvals: 2, rejections: 1, abstentions: 0, outstanding: 0 }, finalizedAt: decided.approval!.finalizedAt } });
    });

    test('an expiry, noticed lazily or by the sweeper, is one approvals.approval.expired event', async () => {
      const ttl = { $case: 'ttl' as const, value: { seconds: 60n, nanos: 0 } };
      const [a, b] = [await rpc(p).submit(newRequest({ expiry: ttl })), await rpc(p).submit(newRequest({ expiry: ttl }))];
      await rpc(p, 'v0').vote(b.approvalId, ABSTAIN);
      p.clock.nowMs += 61_000;
      await rpc(p).get(a.approvalId);
      await p.store.expireDue(new Date(p.clock.nowMs), 100);
      await p.store.expireDue(new Date(p.clock.nowMs), 100);
      for (const r of [a, b]) {
        const expired = (await outboxEvents(p, r.approvalId)).filter((e) => e.type === 'approvals.approval.expired');
        assert.equal(expired.length, 1, `one expiry event for ${r.approvalId}`);
        assert.deepEqual(expired[0]!.data?.$case === 'approvalExpired' && expired[0]!.data.value.expiredAt, r.expiresAt);
      }
      const bExpired = (await outboxEvents(p, b.approvalId)).at(-1)!;
      assert.deepEqual(bExpired.data?.$case === 'approvalExpired' && bExpired.data.value.tally, { approvals: 0, rejections: 0, abstentions: 1, outstanding: 2 });
    });

    test('it is REJECTED as soon as M approvals are out of reach (an abstention is a cast vote)', async () => {
      const a = await rpc(p).submit(newRequest({ n: 4, m: 3 }));
      assert.equal((await rpc(p, 'v0').vote(a.approvalId, APPROVE)).approval!.state, PENDING);
      assert.equal((await rpc(p, 'v1').vote(a.approvalId, ABSTAIN)).approval!.state, PENDING);
      const decided = await rpc(p, 'v2').vote(a.approvalId, REJECT);
      assert.equal(decided.approval!.state, REJECTED, '1 approval + 1 outstanding < 3');
      assert.deepEqual(decided.approval!.tally, { approvals: 1, rejections: 1, abstentions: 1, outstanding: 1 });
    });

    test('the same vote again is an idempotent duplicate; a different one is ALREADY_EXISTS; outsiders and the requester are PERMISSION_DENIED; none writes anything', async () => {
      const a = await rpc(p, 'alice').submit(newRequest({ n: 3, m: 3, validators: ['alice', 'v1', 'v2'] }));
      const cast = await rpc(p, 'v1').vote(a.approvalId, APPROVE);
      const snapshot = await tablesSnapshot(p);
      const again = await rpc(p, 'v1').vote(a.approvalId, APPROVE);
      assert.equal(again.duplicate, true);
      assert.equal(again.approval!.version, cast.approval!.version);
      assert.equal(await tablesSnapshot(p), snapshot);
      await refusedWithNothingWritten(() => rpc(p, 'v1').vote(a.approvalId, REJECT), status.ALREADY_EXISTS, /already voted APPROVE/);
      await refusedWithNothingWritten(() => rpc(p, 'mallory').vote(a.approvalId, APPROVE), status.PERMISSION_DENIED, /not in the validator set/);
      await refusedWithNothingWritten(() => rpc(p, 'alice').vote(a.approvalId, APPROVE), status.PERMISSION_DENIED, /requested .* cannot vote/);
      await refusedWithNothingWritten(() => rpc(p, 'v2', ['approvals.read']).vote(a.approvalId, APPROVE), status.PERMISSION_DENIED, /needs scope approvals.vote/);
    });

    test('bad submissions are INVALID_ARGUMENT naming the field, and write nothing', async () => {
      const alice = rpc(p);
      const content = Buffer.from('payload');
      const cases: [string, Partial<approvalsv1.SubmitApprovalRequestRequest> & { n?: number; m?: number }, RegExp][] = [
        ['M = 0', { m: 0 }, /required_approvals: must be at least 1/],
        ['M > N', { n: 2, m: 3 }, /required_approvals: is 3 but there are only 2 validators/],
        ['duplicate validators', { validators: ['v0', 'v1', 'v0'], m: 1 }, /validators\[2\]: "v0" appears twice/],
        ['an empty validator', { validators: ['v0', ''], m: 1 }, /validators\[1\]: is required/],
        ['no validators', { validators: [], m: 1 }, /validators: must name at least one/],
        ['101 validators', { n: 101, m: 1 }, /validators: names 101 validators; the maximum is 100/],
        ['a hash mismatch', { content, contentHash: sha256(Buffer.from('other')) }, /content_hash: does not match SHA-256\(content\)/],
        ['a short hash', { content, contentHash: Buffer.alloc(16) }, /content_hash: must be the 32-byte SHA-256/],
        ['empty content', { content: Buffer.alloc(0), contentHash: sha256(Buffer.alloc(0)) }, /content: must not be empty/],
        ['content over 1 MiB', { content: Buffer.alloc(1024 * 1024 + 1), contentHash: sha256(Buffer.alloc(1024 * 1024 + 1)) }, /content: is 1048577 bytes; the maximum is 1048576/],
        ['an expiry in the past', { expiry: { $case: 'expiresAt', value: new Date(p.clock.nowMs - 1000) } }, /expires_at: is 1 s in the past/],
        ['an expiry over 30 days ahead', { expiry: { $case: 'ttl', value: { seconds: BigInt(31 * 24 * 3600), nanos: 0 } } }, /ttl: is more than 30 days ahead/],
        ['no expiry', { expiry: undefined }, /expiry: is required/],
        ['an unspecified type', { type: APPROVAL_TYPE_UNSPECIFIED }, /type: must be a known approval type/],
        ['an unspecified priority', { priority: approvalsv1.ApprovalPriority.APPROVAL_PRIORITY_UNSPECIFIED }, /priority: must be NORMAL, HIGH or CRITICAL/],
        ['33 labels', { labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }, /labels: has 33 entries/],
        ['a long title', { title: 'x'.repeat(257) }, /title: is 257 characters/],
      ];
      for (const [what, over, pattern] of cases) {
        await refusedWithNothingWritten(() => alice.submit(newRequest(over)), status.INVALID_ARGUMENT, pattern).catch((err: Error) => assert.fail(`${what}: ${err.message}`));
      }
    });

    test('unknown ids are NOT_FOUND and empty ids INVALID_ARGUMENT, for Get and for votes; a vote needs a decision', async () => {
      await assertStatus(rpc(p).get('no-such-approval'), status.NOT_FOUND, /approval no-such-approval does not exist/);
      await refusedWithNothingWritten(() => rpc(p, 'v0').vote('no-such-approval'), status.NOT_FOUND, /does not exist/);
      await assertStatus(rpc(p).get(''), status.INVALID_ARGUMENT, /approval_id: is required/);
      const a = await rpc(p).submit(newRequest());
      await refusedWithNothingWritten(() => rpc(p, 'v0').vote(a.approvalId, approvalsv1.VoteDecision.VOTE_DECISION_UNSPECIFIED), status.INVALID_ARGUMENT, /decision: must be APPROVE, REJECT or ABSTAIN/);
      await refusedWithNothingWritten(() => rpc(p, 'v0').vote(a.approvalId, APPROVE, 'r'.repeat(1025)), status.INVALID_ARGUMENT, /reason: is 1025 characters/);
    });

    test('submitting on behalf of another requester needs approvals.admin', async () => {
      await refusedWithNothingWritten(() => rpc(p, 'alice').submit(newRequest({ requester: 'bob' })), status.PERMISSION_DENIED, /needs scope approvals.admin/);
      const a = await rpc(p, 'ops', ['approvals.submit', 'approvals.admin']).submit(newRequest({ requester: 'bob' }));
      assert.equal(a.requester, 'bob');
    });

    test('a retry with the same request_id and body returns the original request; a different body is ALREADY_EXISTS and writes nothing', async () => {
      const req = newRequest({ requestId: `idem-${Date.now()}` });
      const first = await rpc(p).submit(req);
      const snapshot = await tablesSnapshot(p);
      assert.deepEqual(await rpc(p).submit(req), first);
      assert.equal(await tablesSnapshot(p), snapshot);
      await refusedWithNothingWritten(() => rpc(p).submit({ ...req, title: 'something else' }), status.ALREADY_EXISTS, /request_id .* was already used/);
      // Keys belong to their requester: another requester may use the same one.
      assert.notEqual((await rpc(p, 'bob').submit(req)).approvalId, first.approvalId);
    });

    test('concurrent retries with one request_id create one request', async () => {
      const req = newRequest({ requestId: `race-${Date.now()}` });
      const results = await Promise.all(Array.from({ length: 8 }, () => rpc(p, 'carol').submit(req)));
      assert.equal(new Set(results.map((a) => a.approvalId)).size, 1);
    });

    test('a PENDING request read after its deadline is expired then (at a new version), and votes on it are FAILED_PRECONDITION', async () => {
      const a = await rpc(p).submit(newRequest({ expiry: { $case: 'ttl', value: { seconds: 60n, nanos: 0 } } }));
      const b = await rpc(p).submit(newRequest({ expiry: { $case: 'ttl', value: { seconds: 60n, nanos: 0 } } }));
      p.clock.nowMs += 61_000;
      const read = await rpc(p).get(a.approvalId);
      assert.equal(read.state, EXPIRED);
      assert.deepEqual(read.finalizedAt, read.expiresAt, 'it expired at its deadline, not when it was noticed');
      assert.ok(read.version > b.version);
      // A vote is what notices b's deadline: it records the expiry, and is refused.
      await assertStatus(rpc(p, 'v0').vote(b.approvalId, APPROVE), status.FAILED_PRECONDITION, /expired at/);
      const after = await rpc(p).get(b.approvalId);
      assert.equal(after.state, EXPIRED);
      assert.equal(after.votes.length, 0);
      await assertStatus(rpc(p, 'v1').vote(b.approvalId, APPROVE), status.FAILED_PRECONDITION, /already EXPIRED/);
    });

    test('ListApprovals: newest first, filtered, paginated at the version of its first page; other filters with a token and oversized pages are INVALID_ARGUMENT', async () => {
      const requester = `lister-${Date.now()}`;
      const me = rpc(p, requester);
      const created: approvalsv1.Approval[] = [];
      for (let i = 0; i < 7; i++) created.push(await me.submit(newRequest({ type: i % 2 === 0 ? DEPLOYMENT : approvalsv1.ApprovalType.APPROVAL_TYPE_OTHER, validators: ['x', `y${i}`], m: 1 })));
      await rpc(p, 'x').vote(created[0]!.approvalId, APPROVE);

      const first = await me.list({ requester, pageSize: 3 });
      assert.deepEqual(first.approvals.map((a) => a.approvalId), created.slice(4).reverse().map((a) => a.approvalId));
      const version = first.version;
      await me.submit(newRequest({ validators: ['x'], m: 1 }));
      const second = await me.list({ requester, pageSize: 3, pageToken: first.nextPageToken });
      const third = await me.list({ requester, pageSize: 3, pageToken: second.nextPageToken });
      assert.deepEqual([...second.approvals, ...third.approvals].map((a) => a.approvalId), created.slice(0, 4).reverse().map((a) => a.approvalId));
      assert.equal(third.nextPageToken, '');
      assert.equal(second.version, version, 'every page reports the version of the first');
      assert.equal(third.approvals.at(-1)!.state, APPROVED);

      const deployments = await me.list({ requester, types: [DEPLOYMENT] });
      assert.deepEqual(deployments.approvals.map((a) => a.approvalId).sort(), created.filter((_, i) => i % 2 === 0).map((a) => a.approvalId).sort());
      const approved = await me.list({ requester, states: [APPROVED] });
      assert.deepEqual(approved.approvals.map((a) => a.approvalId), [created[0]!.approvalId]);
      const forY3 = await me.list({ validator: 'y3' });
      assert.deepEqual(forY3.approvals.map((a) => a.approvalId), [created[3]!.approvalId]);

      await assertStatus(me.list({ requester, pageSize: 3, pageToken: first.nextPageToken, types: [DEPLOYMENT] }), status.INVALID_ARGUMENT, /page_token: belongs to a listing with other filters/);
      await assertStatus(me.list({ pageToken: 'garbage' }), status.INVALID_ARGUMENT, /page_token: is not a token this service issued/);
      await assertStatus(me.list({ pageSize: 501 }), status.INVALID_ARGUMENT, /page_size: must be between 0 and 500/);
    });

    test('a page holds at most 3 MiB of content: large requests shorten it, and the token continues it', async () => {
      const requester = `big-${Date.now()}`;
      const big = Buffer.alloc(1024 * 1024, 7);
      for (let i = 0; i < 5; i++) await rpc(p, requester).submit(newRequest({ content: big, contentHash: sha256(big) }));
      const first = await rpc(p, requester).list({ requester, pageSize: 10 });
      assert.equal(first.approvals.length, 3);
      const rest = await rpc(p, requester).list({ requester, pageSize: 10, pageToken: first.nextPageToken });
      assert.equal(rest.approvals.length, 2);
      assert.equal(rest.nextPageToken, '');
    });

    test('50 validators voting at once on one request produce exactly one finalization', async () => {
      const n = 50;
      const m = 40;
      const a = await rpc(p).submit(newRequest({ n, m }));
      const outcomes = await Promise.allSettled(Array.from({ length: n }, (_, i) => rpc(p, `v${i}`).vote(a.approvalId, APPROVE)));
      const ok = outcomes.filter((o) => o.status === 'fulfilled');
      const refused = outcomes.filter((o) => o.status === 'rejected');
      assert.equal(ok.length, m, 'exactly M votes count');
      assert.ok(refused.every((o) => (o.reason as { code: number }).code === status.FAILED_PRECONDITION), 'the rest arrive after finalization');
      assert.equal(ok.filter((o) => o.value.approval!.state === APPROVED).length, 1, 'one vote, and only one, decides it');
      const { rows } = await p.runtime.db.query<{ type: string; n: string | number }>(`SELECT type, count(*) AS n FROM approvals.events WHERE approval_id = $1 GROUP BY type ORDER BY type`, [a.approvalId]);
      assert.deepEqual(rows.map((r) => [r.type, Number(r.n)]), [['CREATED', 1], ['FINALIZED', 1], ['VOTED', m - 1]]);
      const final = await rpc(p).get(a.approvalId);
      assert.equal(final.state, APPROVED);
      assert.equal(final.votes.length, m);
      // One version per change, gapless: nothing else changed meanwhile.
      const history = await p.runtime.db.query<{ v: string }>(`SELECT version::text AS v FROM approvals.events WHERE approval_id = $1 ORDER BY version`, [a.approvalId]);
      assert.deepEqual(history.rows.map((r) => BigInt(r.v)), Array.from({ length: m + 1 }, (_, i) => a.version + BigInt(i)));
      assert.equal(final.version, a.version + BigInt(m));
    });
  });
}
