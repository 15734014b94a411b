// Every streaming pattern of the approvals service over real gRPC on PGlite and PostgreSQL: watches
// (bookmarks, resume, one request, retained history), expiry by the sweeper, a validator's to-do
// stream, batches on a client stream, the bidirectional validator session, and a stalled watcher.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { FLOW_CONTROL_WINDOW_BYTES } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { assertStatus, eventually } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { RESUME_VERSION_TRAILER } from '../src/api/streams.js';
import {
  ABSTAIN,
  ADDED,
  APPROVE,
  APPROVED,
  BOOKMARK,
  Collector,
  CREATED,
  EXPIRED,
  FINALIZED,
  PENDING,
  REJECT,
  REMOVED,
  VOTED,
  newRequest,
  pending,
  rpc,
  sha256,
  startApprovalsPlatform,
  tablesSnapshot,
  watch,
  type ApprovalsPlatform,
} from './support.js';

requirePostgresInCi('the approvals stream tests');

const { APPROVAL_TYPE_CONTRACT_DEPLOYMENT: DEPLOYMENT, APPROVAL_TYPE_ACCESS_GRANT: ACCESS } = approvalsv1.ApprovalType;
const { APPROVAL_PRIORITY_HIGH: HIGH, APPROVAL_PRIORITY_CRITICAL: CRITICAL } = approvalsv1.ApprovalPriority;

let unique = 0;
/** Validator names no other test uses, so the to-do lists of the shared platform do not mix. */
const validators = (n: number) => Array.from({ length: n }, (_, i) => `s${++unique}-${i}`);

/** Sends `votes` on one BatchSubmitResponses call as `subject`. */
function batch(p: ApprovalsPlatform, subject: string, votes: Partial<approvalsv1.BatchSubmitResponsesRequest>[]): Promise<approvalsv1.BatchSubmitResponsesResponse> {
  return new Promise((resolve, reject) => {
    const call = p.client.batchSubmitResponses(p.as(subject), { deadline: Date.now() + 60_000 }, (err, res) => (err ? reject(err) : resolve(res)));
    for (const v of votes) call.write({ approvalId: '', decision: APPROVE, reason: '', ...v });
    call.end();
  });
}

const ids = (msgs: { approval?: approvalsv1.Approval | undefined }[]) => msgs.map((m) => m.approval?.approvalId);

for (const engine of engines()) {
  describe(`approvals streams over gRPC on ${engine.name}`, { skip: engine.skip }, () => {
    let p: ApprovalsPlatform;
    before(async () => {
      p = await startApprovalsPlatform(engine.name);
    });
    after(async () => p?.close());

    test('a watch from 0 starts with a BOOKMARK at the current version, then sends every change in version order', async () => {
      const head = await p.store.headVersion();
      const w = watch(p, {});
      const [bookmark] = await w.count(1);
      assert.equal(bookmark!.type, BOOKMARK);
      assert.equal(bookmark!.version, head);
      assert.equal(bookmark!.approval, undefined);
      const vs = validators(3);
      const a = await rpc(p).submit(newRequest({ validators: vs, m: 2 }));
      await rpc(p, vs[0]!).vote(a.approvalId, APPROVE);
      await rpc(p, vs[1]!).vote(a.approvalId, APPROVE);
      const events = (await w.count(4)).slice(1).filter((e) => e.type !== BOOKMARK);
      w.cancel();
      assert.deepEqual(events.map((e) => e.type), [CREATED, VOTED, FINALIZED]);
      assert.deepEqual(events.map((e) => e.version), [a.version, a.version + 1n, a.version + 2n]);
      assert.deepEqual(events.map((e) => e.approval!.version), events.map((e) => e.version), 'each event carries the request as of that version');
      assert.deepEqual(events.map((e) => e.approval!.votes.length), [0, 1, 2]);
      assert.equal(events[2]!.approval!.state, APPROVED);
      assert.deepEqual(events[0]!.approval!.content, a.content);
    });

    test('a watch resumed from a version receives exactly the changes after it, read back from the history', async () => {
      const vs = validators(3);
      const a = await rpc(p).submit(newRequest({ validators: vs, m: 3 }));
      await rpc(p, vs[0]!).vote(a.approvalId, APPROVE);
      await rpc(p, vs[1]!).vote(a.approvalId, REJECT);
      const w = watch(p, { fromVersion: a.version });
      const events = await w.count(2);
      assert.deepEqual(events.map((e) => [e.type, e.version]), [[VOTED, a.version + 1n], [FINALIZED, a.version + 2n]]);
      assert.equal(events[1]!.approval!.state, approvalsv1.ApprovalState.APPROVAL_STATE_REJECTED);
      // Then it follows live changes.
      const b = await rpc(p).submit(newRequest({ validators: vs }));
      const [live] = (await w.count(3)).slice(2);
      w.cancel();
      assert.deepEqual([live!.type, live!.approval!.approvalId], [CREATED, b.approvalId]);
    });

    test('a watch on one request sends only its changes, and bookmarks while it is quiet and others change', async () => {
      const vs = validators(2);
      const a = await rpc(p).submit(newRequest({ validators: vs, m: 2 }));
      const w = watch(p, { approvalId: a.approvalId, fromVersion: a.version });
      const other = await rpc(p).submit(newRequest({ validators: vs }));
      assert.ok(await eventually(() => w.messages.some((m) => m.type === BOOKMARK && m.version >= other.version), 5000), 'no bookmark past the other request');
      await rpc(p, vs[0]!).vote(a.approvalId, ABSTAIN);
      assert.ok(await eventually(() => w.messages.some((m) => m.type !== BOOKMARK), 5000));
      w.cancel();
      const changes = w.messages.filter((m) => m.type !== BOOKMARK);
      assert.deepEqual(changes.map((m) => [m.type, m.approval!.approvalId]), [[FINALIZED, a.approvalId]], 'an abstention with M = N decides it');
      const versions = w.messages.map((m) => m.version);
      assert.deepEqual(versions, [...versions].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)), 'bookmarks and events in version order');
    });

    test('a watch is OUT_OF_RANGE from before the retained history or past the current version, and NOT_FOUND for an unknown request', async () => {
      const vs = validators(1);
      for (let i = 0; i < 3; i++) await rpc(p).submit(newRequest({ validators: vs, m: 1 }));
      await p.store.pruneHistory({ olderThan: null, maxVersions: 2 }, 10_000);
      const head = await p.store.headVersion();
      const old = watch(p, { fromVersion: 1n });
      const { err } = await old.ended;
      assert.equal(err?.code, status.OUT_OF_RANGE);
      assert.match(err!.details, /older than the retained history .* list with ListApprovals and watch from its version/);
      const ahead = await watch(p, { fromVersion: head + 5n }).ended;
      assert.equal(ahead.err?.code, status.OUT_OF_RANGE);
      const unknown = await watch(p, { approvalId: 'nope' }).ended;
      assert.equal(unknown.err?.code, status.NOT_FOUND);
      // The retained tail still serves.
      const ok = watch(p, { fromVersion: head - 2n });
      assert.equal((await ok.count(2)).length, 2);
      ok.cancel();
    });

    test('the sweeper expires a request at its deadline: watchers get FINALIZED EXPIRED at a new version, to-do lists drop it, votes are refused', async () => {
      const vs = validators(2);
      const a = await rpc(p).submit(newRequest({ validators: vs, expiry: { $case: 'ttl', value: { seconds: 60n, nanos: 0 } } }));
      const w = watch(p, { approvalId: a.approvalId, fromVersion: a.version });
      const todo = pending(p, vs[0]!);
      assert.deepEqual(ids(await todo.count(1)), [a.approvalId]);
      p.clock.nowMs += 61_000;
      assert.ok(await eventually(() => w.messages.some((m) => m.type === FINALIZED), 5000), 'the sweeper did not expire it');
      const expired = w.messages.find((m) => m.type === FINALIZED)!;
      assert.equal(expired.approval!.state, EXPIRED);
      assert.deepEqual(expired.approval!.finalizedAt, expired.approval!.expiresAt);
      assert.equal(expired.version > a.version, true);
      const [removed] = (await todo.count(2)).slice(1);
      assert.deepEqual([removed!.change, removed!.approval!.approvalId], [REMOVED, a.approvalId]);
      w.cancel();
      todo.cancel();
      await assertStatus(rpc(p, vs[1]!).vote(a.approvalId, APPROVE), status.FAILED_PRECONDITION, /already EXPIRED/);
    });

    test("StreamPendingApprovals lists what the validator must decide (highest priority first), then ADDED for new ones and REMOVED when it votes or the request is decided", async () => {
      const [me, other, third] = validators(3) as [string, string, string];
      const normal = await rpc(p).submit(newRequest({ validators: [me, other], m: 2 }));
      const critical = await rpc(p).submit(newRequest({ validators: [me, other], m: 1, priority: CRITICAL }));
      const voted = await rpc(p).submit(newRequest({ validators: [me, other], m: 2 }));
      await rpc(p, me).vote(voted.approvalId, APPROVE);
      await rpc(p).submit(newRequest({ validators: [other], m: 1 }));
      await rpc(p, me).submit(newRequest({ validators: [me, other], m: 1 }));

      const todo = pending(p, me);
      const initial = await todo.count(2);
      assert.deepEqual(initial.map((m) => [m.change, m.approval!.approvalId]), [[ADDED, critical.approvalId], [ADDED, normal.approvalId]]);
      const fresh = await rpc(p).submit(newRequest({ validators: [third, me], m: 1 }));
      await rpc(p, me).vote(normal.approvalId, REJECT);
      await rpc(p, other).vote(critical.approvalId, APPROVE);
      const next = (await todo.count(5)).slice(2);
      todo.cancel();
      assert.deepEqual(next.map((m) => [m.change, m.approval!.approvalId]), [[ADDED, fresh.approvalId], [REMOVED, normal.approvalId], [REMOVED, critical.approvalId]]);
      assert.equal(next[2]!.approval!.state, APPROVED);
    });

    test('the pending filter narrows by type and minimum priority; a bad filter is INVALID_ARGUMENT', async () => {
      const [me] = validators(1) as [string];
      await rpc(p).submit(newRequest({ validators: [me], m: 1, type: DEPLOYMENT, priority: HIGH }));
      const wanted = await rpc(p).submit(newRequest({ validators: [me], m: 1, type: ACCESS, priority: CRITICAL }));
      await rpc(p).submit(newRequest({ validators: [me], m: 1, type: ACCESS }));
      const todo = pending(p, me, { types: [ACCESS], minPriority: HIGH });
      assert.deepEqual(ids(await todo.count(1)), [wanted.approvalId]);
      const later = await rpc(p).submit(newRequest({ validators: [me], m: 1, type: ACCESS, priority: HIGH }));
      await rpc(p).submit(newRequest({ validators: [me], m: 1, type: DEPLOYMENT, priority: CRITICAL }));
      const last = await rpc(p).submit(newRequest({ validators: [me], m: 1, type: ACCESS, priority: CRITICAL }));
      assert.deepEqual(ids((await todo.count(3)).slice(1)), [later.approvalId, last.approvalId]);
      todo.cancel();
      const bad = await pending(p, me, { types: [approvalsv1.ApprovalType.APPROVAL_TYPE_UNSPECIFIED], minPriority: 0 }).ended;
      assert.equal(bad.err?.code, status.INVALID_ARGUMENT);
    });

    test('BatchSubmitResponses answers once with one result per vote, in order, each with its own code', async () => {
      const [me, other] = validators(2) as [string, string];
      const a = await rpc(p).submit(newRequest({ validators: [me, other], m: 2 }));
      const b = await rpc(p).submit(newRequest({ validators: [me], m: 1 }));
      const notMine = await rpc(p).submit(newRequest({ validators: [other], m: 1 }));
      const res = await batch(p, me, [
        { approvalId: a.approvalId, decision: APPROVE },
        { approvalId: a.approvalId, decision: APPROVE },
        { approvalId: b.approvalId, decision: REJECT },
        { approvalId: a.approvalId, decision: REJECT },
        { approvalId: notMine.approvalId },
        { approvalId: 'missing' },
        { approvalId: b.approvalId, decision: approvalsv1.VoteDecision.VOTE_DECISION_UNSPECIFIED },
      ]);
      assert.deepEqual(
        res.results.map((r) => [r.approvalId, r.code, r.state, r.duplicate]),
        [
          [a.approvalId, status.OK, PENDING, false],
          [a.approvalId, status.OK, PENDING, true],
          [b.approvalId, status.OK, approvalsv1.ApprovalState.APPROVAL_STATE_REJECTED, false],
          [a.approvalId, status.ALREADY_EXISTS, PENDING, false],
          [notMine.approvalId, status.PERMISSION_DENIED, PENDING, false],
          ['missing', status.NOT_FOUND, approvalsv1.ApprovalState.APPROVAL_STATE_UNSPECIFIED, false],
          [b.approvalId, status.INVALID_ARGUMENT, approvalsv1.ApprovalState.APPROVAL_STATE_UNSPECIFIED, false],
        ],
      );
      assert.deepEqual([res.accepted, res.failed], [3, 4]);
    });

    test('a batch of more than 1,000 votes is INVALID_ARGUMENT and records none of them', async () => {
      const [me] = validators(1) as [string];
      const a = await rpc(p).submit(newRequest({ validators: [me, 'x'], m: 2 }));
      const snapshot = await tablesSnapshot(p);
      await assertStatus(batch(p, me, Array.from({ length: 1001 }, () => ({ approvalId: a.approvalId }))), status.INVALID_ARGUMENT, /at most 1000 votes/);
      assert.equal(await tablesSnapshot(p), snapshot);
    });

    test('a bidirectional session pushes the to-do list after subscribe, answers each vote with a VoteResult, and ends OK when the client half-closes', async () => {
      const [me, other] = validators(2) as [string, string];
      const a = await rpc(p).submit(newRequest({ validators: [me, other], m: 1 }));
      const call = p.client.bidirectionalApprovalStream(p.as(me), { deadline: Date.now() + 60_000 });
      const session = new Collector<approvalsv1.BidirectionalApprovalStreamResponse>(call);
      call.write({ message: { $case: 'subscribe', value: { filter: undefined } } });
      const [first] = await session.count(1);
      const pushed = first!.message?.$case === 'pending' ? first!.message.value : undefined;
      assert.deepEqual([pushed?.change, pushed?.approval?.approvalId], [ADDED, a.approvalId]);
      const b = await rpc(p).submit(newRequest({ validators: [me, other], m: 2 }));
      await session.count(2);
      call.write({ message: { $case: 'vote', value: { approvalId: a.approvalId, decision: APPROVE, reason: 'ok' } } });
      call.write({ message: { $case: 'vote', value: { approvalId: 'missing', decision: APPROVE, reason: '' } } });
      await session.count(5);
      call.end();
      const { err } = await session.ended;
      assert.equal(err, undefined, 'the session ends OK after the client half-closes');
      const results = session.messages.flatMap((m) => (m.message?.$case === 'voteResult' ? [m.message.value] : []));
      assert.deepEqual(results.map((r) => [r.approvalId, r.code, r.state]), [[a.approvalId, status.OK, APPROVED], ['missing', status.NOT_FOUND, approvalsv1.ApprovalState.APPROVAL_STATE_UNSPECIFIED]]);
      const pushes = session.messages.flatMap((m) => (m.message?.$case === 'pending' ? [[m.message.value.change, m.message.value.approval!.approvalId]] : []));
      assert.deepEqual(pushes, [[ADDED, a.approvalId], [ADDED, b.approvalId], [REMOVED, a.approvalId]]);
    });

    test('a second subscribe on a bidirectional session is INVALID_ARGUMENT', async () => {
      const [me] = validators(1) as [string];
      const call = p.client.bidirectionalApprovalStream(p.as(me), { deadline: Date.now() + 30_000 });
      const session = new Collector<approvalsv1.BidirectionalApprovalStreamResponse>(call);
      call.write({ message: { $case: 'subscribe', value: { filter: undefined } } });
      call.write({ message: { $case: 'subscribe', value: { filter: undefined } } });
      const { err } = await session.ended;
      assert.equal(err?.code, status.INVALID_ARGUMENT);
      assert.match(err!.details, /subscribe: must be the first message/);
    });
  });

  describe(`a stalled watcher on ${engine.name}`, { skip: engine.skip }, () => {
    let p: ApprovalsPlatform;
    const QUEUE_EVENTS = 4;
    before(async () => {
      p = await startApprovalsPlatform(engine.name, { options: { streamQueueEvents: QUEUE_EVENTS } });
    });
    after(async () => p?.close());

    test('is cut off with RESOURCE_EXHAUSTED and the version to resume from, holding a bounded queue, and resuming from it misses nothing', async () => {
      await rpc(p).submit(newRequest({ validators: ['x'], m: 1 }));
      const from = await p.store.headVersion();
      const w = watch(p, { fromVersion: from });
      // The client stops reading: grpc-js stops taking data once its flow-control window is full
      // (FLOW_CONTROL_WINDOW_BYTES), HTTP/2 flow control stops the server's writes, and the
      // server's queue for this watcher fills. Twice the window's worth of 64 KiB contents.
      w.call.pause();
      const content = Buffer.alloc(64 * 1024, 1);
      const total = Math.ceil((2 * FLOW_CONTROL_WINDOW_BYTES) / content.length);
      const created: bigint[] = [];
      for (let i = 0; i < total; i++) created.push((await rpc(p).submit(newRequest({ content, contentHash: sha256(content), validators: ['x'], m: 1 }))).version);
      await new Promise((r) => setTimeout(r, 500));
      w.call.resume();
      const { err, trailers } = await w.ended;
      assert.equal((err as ServiceError | undefined)?.code, status.RESOURCE_EXHAUSTED, 'the stalled watch was not cut off');
      assert.match(err!.details, /fell behind by more than 4 changes .*; watch again from version/);
      const received = w.messages.filter((m) => m.type !== BOOKMARK).map((m) => m.version);
      assert.ok(received.length < total, `the server buffered all ${total} changes for a stalled client instead of cutting it off`);
      const resume = BigInt(String(trailers?.get(RESUME_VERSION_TRAILER)[0]));
      assert.equal(resume, w.messages.at(-1)?.version ?? from, 'the trailer names the last version delivered');
      const again = watch(p, { fromVersion: resume });
      assert.ok(await eventually(() => again.messages.filter((m) => m.type !== BOOKMARK).length >= total - received.length, 10_000), 'the resumed watch did not catch up');
      again.cancel();
      const rest = again.messages.filter((m) => m.type !== BOOKMARK).map((m) => m.version);
      assert.deepEqual([...received, ...rest], created, 'every change exactly once, in order');
    });
  });
}
