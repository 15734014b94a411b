// The log's trust model over real gRPC (mTLS, JWT, workload certificates), on PGlite and on
// PostgreSQL: the audit trail of an event family is written only by the workload that owns the
// family, a token holder can neither forge audit entries nor squat a relay's idempotency key, and
// every entry records its author, which the chain, the Merkle leaf and the signed checkpoint
// commit to.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import { certificateIdentity, streamOf, unary, type RelayedEvent, type WorkloadGrant } from '@gantry/kit';
import { requirePostgresInCi } from '@gantry/test-support/databases';
import type { logv1 } from '@gantry/proto';
import { entryFieldsOf, entryHash, entryLeafHash, verifierKeyString, verifyCheckpoint, verifyEntryInclusion } from '../src/client/index.js';
import { ed25519PublicKeyRaw } from '../src/domain/checkpoint.js';
import { auditPartition, logSink } from '../src/index.js';
import { assertStatus, engines, partitionSize, payloads, readAll, readStream, startLogPlatform, uniquePartition, workloadLogClient, type LogClient, type LogPlatform } from './support.js';

requirePostgresInCi('the log author and audit authority tests');

const LOG_SCOPES = ['log.append', 'log.read'];
/** The grants `gantry serve` derives: each emitting service owns its family, the monolith both. */
const WORKLOADS = new Map<string, WorkloadGrant>([
  ['settlement', { scopes: LOG_SCOPES, families: ['settlement'] }],
  ['approvals', { scopes: LOG_SCOPES, families: ['approvals'] }],
  ['all', { scopes: LOG_SCOPES, families: ['settlement', 'approvals'] }],
]);
const SETTLEMENT_ID = 'spiffe://gantry.local/settlement';
const TIMEOUT_MS = 30_000;

/** Relayed events as the outbox relay hands them to its sinks. */
const events = (ids: string[]): RelayedEvent[] => ids.map((id, seq) => ({ seq: BigInt(seq), id, type: 'settlement.credit.drawn', payload: Buffer.from(`event ${id}`), traceContext: {} }));

for (const engine of engines()) {
  describe(`log authors and audit authority on ${engine.name}`, { skip: engine.skip }, () => {
    let p: LogPlatform;
    let asSettlement: LogClient;
    let asApprovals: LogClient;
    let asMonolith: LogClient;
    before(async () => {
      p = await startLogPlatform(engine.name, {}, WORKLOADS);
      asSettlement = await workloadLogClient(p.address, p.dataDir, 'settlement');
      asApprovals = await workloadLogClient(p.address, p.dataDir, 'approvals');
      asMonolith = await workloadLogClient(p.address, p.dataDir, 'all');
    });
    after(async () => {
      for (const c of [asSettlement, asApprovals, asMonolith]) c?.close();
      await p?.close();
    });

    /** Calls as a workload: its certificate, no token. */
    const none = () => new Metadata();
    const append = (partition: string, data: Buffer, md: Metadata, idempotencyKey = '', client: LogClient = p.client) =>
      unary(client.append, client, { partition, data, idempotencyKey }, md, TIMEOUT_MS);
    const appendBatch = (partition: string, data: Buffer[], md: Metadata, idempotencyKeys: string[] = [], client: LogClient = p.client) =>
      unary(client.appendBatch, client, { partition, data, idempotencyKeys }, md, TIMEOUT_MS);
    const sizeOf = (partition: string) => partitionSize(p.client, p.md, partition);
    const mallory = () => p.metadata('mallory', ['log.append', 'log.read']);

    test('a token with log.append is refused audit.settlement on Append and AppendBatch, keyed or not (PERMISSION_DENIED), and nothing is written, not even the partition', async () => {
      for (const partition of ['audit.settlement', 'audit.approvals', 'Audit.settlement']) {
        const forged = Buffer.from('{"type":"settlement.credit.drawn","forged":true}');
        const denied = /audit|append to a partition outside/;
        await assertStatus(append(partition, forged, mallory()), status.PERMISSION_DENIED, denied);
        await assertStatus(append(partition, forged, mallory(), 'evt-0001'), status.PERMISSION_DENIED, denied);
        await assertStatus(appendBatch(partition, [forged, forged], mallory()), status.PERMISSION_DENIED, denied);
        await assertStatus(appendBatch(partition, [forged], mallory(), ['evt-0001']), status.PERMISSION_DENIED, denied);
        assert.equal(await sizeOf(partition), undefined, `${partition} was not even created`);
      }
      const err = await assertStatus(append('audit.settlement', Buffer.from('x'), mallory()), status.PERMISSION_DENIED);
      assert.match(err.details, /only the settlement service appends to it, by its workload certificate .* mallory calls with a token, so append to a partition outside "audit\."/);
    });

    test('a workload appends to the audit partitions of its families only; the monolith\'s workload to both', async () => {
      const ok = await append('audit.settlement', Buffer.from('by settlement'), none(), '', asSettlement);
      assert.equal(ok.author, SETTLEMENT_ID);
      const err = await assertStatus(append('audit.settlement', Buffer.from('by approvals'), none(), '', asApprovals), status.PERMISSION_DENIED);
      assert.match(err.details, /workload approvals owns approvals; only a workload granted family settlement/);
      await assertStatus(appendBatch('audit.approvals', [Buffer.from('by settlement')], none(), [], asSettlement), status.PERMISSION_DENIED);
      const both = await Promise.all(['audit.settlement', 'audit.approvals'].map((partition) => append(partition, Buffer.from('by the monolith'), none(), '', asMonolith)));
      assert.deepEqual(both.map((r) => r.author), ['spiffe://gantry.local/all', 'spiffe://gantry.local/all']);
      assert.equal(await sizeOf('audit.settlement'), 2n);
    });

    test('squatting an event id\'s key does not block the relay: refused in the audit partition, and the relay\'s real append (and its re-send) goes through', async () => {
      const ids = ['evt-squat-1', 'evt-squat-2'];
      const before = (await sizeOf('audit.settlement')) ?? 0n;
      // The attack: take the event id as a key in the audit partition before the relay sends it.
      await assertStatus(append('audit.settlement', Buffer.from('squatted'), mallory(), ids[0]), status.PERMISSION_DENIED);
      // The relay's sink as the events module builds it: calls as its workload, keyed by event id.
      const sink = logSink(asSettlement, auditPartition('settlement'), certificateIdentity, TIMEOUT_MS);
      await sink.send(events(ids));
      await sink.send(events(ids));
      // The monolith's workload re-sending the same events (a move between deployments) finds them too.
      await logSink(asMonolith, auditPartition('settlement'), certificateIdentity, TIMEOUT_MS).send(events(ids));
      assert.equal(await sizeOf('audit.settlement'), before + 2n, 'each event once');
      const { entries } = await readAll(p.client, p.md, 'audit.settlement', before);
      assert.deepEqual(entries.map((e) => [e.data.toString(), e.author]), ids.map((id) => [`event ${id}`, SETTLEMENT_ID]));
    });

    test('in an ordinary partition keys are per author: a key another author took first neither blocks nor answers my append', async () => {
      const partition = uniquePartition('squat');
      const squatted = await append(partition, Buffer.from('forged'), mallory(), 'evt-1');
      const real = await append(partition, Buffer.from('real'), none(), 'evt-1', asSettlement);
      assert.deepEqual([real.duplicate, real.seq, real.author], [false, 1n, SETTLEMENT_ID], 'appended, not ALREADY_EXISTS and not mallory\'s receipt');
      const resent = await append(partition, Buffer.from('real'), none(), 'evt-1', asSettlement);
      assert.deepEqual([resent.duplicate, resent.seq, resent.author], [true, 1n, SETTLEMENT_ID], 'a re-send finds its own entry');
      const alice = p.metadata('alice', ['log.append']);
      const batch = await appendBatch(partition, [Buffer.from('alice 1'), Buffer.from('alice 2')], alice, ['evt-1', 'evt-2']);
      assert.deepEqual(batch.receipts.map((r) => [r.seq, r.duplicate, r.author]), [[2n, false, 'alice'], [3n, false, 'alice']]);
      await assertStatus(append(partition, Buffer.from('other data'), alice, 'evt-1'), status.ALREADY_EXISTS, /"evt-1" was used for seq 2/);
      const again = await append(partition, Buffer.from('forged'), mallory(), 'evt-1');
      assert.deepEqual([again.duplicate, again.seq], [true, squatted.seq]);
      assert.equal(await sizeOf(partition), 4n);
    });

    test('every entry records its author, returned by receipts, Read, Tail and GetLastEntry, and proven by the chain, the leaf and the signed checkpoint', async () => {
      const partition = uniquePartition('authors');
      const alice = p.metadata('alice', LOG_SCOPES);
      await append(partition, Buffer.from('one'), alice);
      await appendBatch(partition, payloads(2, 'bob'), p.metadata('bob', ['log.append']));
      // Concurrent unkeyed appends by several authors share group-commit transactions: each keeps its own author.
      const racing = await Promise.all(Array.from({ length: 12 }, (_, i) =>
        i % 3 === 0 ? append(partition, Buffer.from(`w${i}`), none(), '', asSettlement) : append(partition, Buffer.from(`u${i}`), p.metadata(`user-${i % 3}`, ['log.append'])),
      ));
      const { entries } = await readAll(p.client, p.md, partition);
      assert.equal(entries.length, 15);
      assert.deepEqual(entries.slice(0, 3).map((e) => e.author), ['alice', 'bob', 'bob']);
      for (const e of entries.slice(3)) {
        const text = e.data.toString();
        assert.equal(e.author, text.startsWith('w') ? SETTLEMENT_ID : `user-${Number(text.slice(1)) % 3}`, `seq ${e.seq}`);
        assert.equal(racing.find((r) => r.seq === e.seq)?.author, e.author, 'the receipt names the same author');
      }
      const tailed = (await readStream(streamOf(p.client.tail({ partition, last: 15, follow: false }, p.md, { deadline: Date.now() + TIMEOUT_MS })))).entries;
      assert.deepEqual(tailed.map((e) => e.author), entries.map((e) => e.author));
      assert.equal((await unary(p.client.getLastEntry, p.client, { partition }, p.md)).entry?.author, entries[14]!.author);
      const v = await unary(p.client.verify, p.client, { partition }, p.md);
      assert.deepEqual([v.valid, v.count], [true, 15n], v.reason);

      const key = createPrivateKey(readFileSync(join(p.dataDir, 'log', 'checkpoint-key.pem')));
      const head = verifyCheckpoint((await unary(p.client.getCheckpoint, p.client, { partition }, p.md)).checkpoint, verifierKeyString('gantry.local/log', ed25519PublicKeyRaw(key)), { partition });
      for (const e of entries) {
        const proof = await unary(p.client.getInclusionProof, p.client, { partition, seq: e.seq, treeSize: head.size }, p.md);
        assert.deepEqual(proof.leafHash, entryLeafHash(entryFieldsOf(e)), `the server's leaf of seq ${e.seq} covers the author`);
        assert.equal(verifyEntryInclusion(e, proof, head), true, `seq ${e.seq} by ${e.author} is in the signed tree`);
        // A server claiming another author (hash recomputed to match) or none is caught by the proof.
        for (const author of ['mallory', '']) {
          const claimed: logv1.Entry = { ...e, author };
          assert.equal(verifyEntryInclusion({ ...claimed, hash: entryHash(entryFieldsOf(claimed)) }, proof, head), false, `seq ${e.seq} re-attributed to ${author || 'nobody'}`);
        }
      }
    });

    test('a caller whose subject cannot be recorded as an author is refused (PERMISSION_DENIED), and nothing is written', async () => {
      const partition = uniquePartition('unrecordable');
      for (const subject of ['x'.repeat(1025), 'two\nlines']) {
        const md = p.metadata(subject, ['log.append']);
        await assertStatus(append(partition, Buffer.from('x'), md), status.PERMISSION_DENIED, /the log records who appends every entry, and .*: append with a credential whose subject is 1 to 1024 bytes/);
        await assertStatus(appendBatch(partition, [Buffer.from('x')], md, ['k']), status.PERMISSION_DENIED);
      }
      assert.equal(await sizeOf(partition), undefined);
    });
  });
}
