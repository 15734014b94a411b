// Two `gantry serve --target=log` processes sharing one PostgreSQL database, the same dev PKI, JWT
// key and checkpoint key: followers on one see what the other appends, and appenders on both
// produce one gapless, valid chain.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { unary } from '@gantry/kit';
import type { logv1 } from '@gantry/proto';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { entryFieldsOf, entryHash } from '../../services/log/src/client/index.js';
import { logClient, metadataFor, payloads, readAll, uniquePartition, type LogClient } from '../../services/log/test/support.js';
import { startGantry, type GantryServer } from '../support/gantry-process.js';

const FOLLOW_LATENCY_MS = 1000;
const APPENDERS_PER_REPLICA = 4;
const APPENDS_PER_APPENDER = 50;

requirePostgresInCi('the log replica tests');

describe('two log replicas sharing one PostgreSQL database', { skip: postgresSkip() }, () => {
  let database: Awaited<ReturnType<typeof freshPostgresDatabase>>;
  let a: GantryServer;
  let b: GantryServer;
  /** The data dir both share: the dev CA, the JWT key and the checkpoint key. */
  let dataDir: string;
  const clients: LogClient[] = [];
  const clientOf = (server: GantryServer) => {
    const client = logClient(`127.0.0.1:${server.port}`, dataDir);
    clients.push(client);
    return client;
  };

  before(async () => {
    database = await freshPostgresDatabase('t_log');
    a = await startGantry('log', { GANTRY_DATABASE_URL: database.url });
    dataDir = a.dataDir;
    b = await startGantry('log', { GANTRY_DATABASE_URL: database.url, GANTRY_DATA_DIR: dataDir });
  });
  after(async () => {
    for (const c of clients) c.close();
    // b first: a's stop() removes the shared data dir.
    await b?.stop();
    await a?.stop();
    await database?.drop();
  });

  test('both replicas sign checkpoints with the same key and see the same partition', async () => {
    const [ca, cb] = [clientOf(a), clientOf(b)];
    const md = metadataFor(dataDir, 'replicas', ['log.append', 'log.read']);
    const partition = uniquePartition('shared');
    await unary(ca.append, ca, { partition, data: Buffer.from('through a'), idempotencyKey: '' }, md);
    await unary(cb.append, cb, { partition, data: Buffer.from('through b'), idempotencyKey: '' }, md);
    const [fromA, fromB] = await Promise.all([unary(ca.getCheckpoint, ca, { partition }, md), unary(cb.getCheckpoint, cb, { partition }, md)]);
    assert.equal(fromA.size, 2n);
    assert.equal(fromA.verifierKey, fromB.verifierKey);
    assert.equal(fromA.checkpoint, fromB.checkpoint, 'Ed25519 is deterministic: the same head signs to the same note');
  });

  test('a follow Tail on replica A receives, in order and within 1 s, entries appended through replica B', async (t) => {
    const [ca, cb] = [clientOf(a), clientOf(b)];
    const md = metadataFor(dataDir, 'follower', ['log.append', 'log.read']);
    const partition = uniquePartition('follow');
    await unary(cb.append, cb, { partition, data: Buffer.from('seq 0'), idempotencyKey: '' }, md);

    const stream = ca.tail({ partition, startSeq: 1n, last: 0, follow: true }, md, { deadline: Date.now() + 60_000 });
    const received: { entry: logv1.Entry; at: number }[] = [];
    const sent: { seq: bigint; data: Buffer; ackAt: number }[] = [];
    const total = 30 + 10;
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (msg: logv1.TailResponse) => {
        const at = Date.now();
        for (const entry of msg.entries) received.push({ entry, at });
        if (received.length >= total) resolve();
      });
      stream.on('error', reject);
    });
    try {
      // Let the Tail reach the server before the first append.
      await new Promise((r) => setTimeout(r, 200));
      for (const [i, data] of payloads(30, 'via-b').entries()) {
        const r = await unary(cb.append, cb, { partition, data, idempotencyKey: '' }, md);
        sent.push({ seq: r.seq, data, ackAt: Date.now() });
        if (i % 3 === 0) await new Promise((r) => setTimeout(r, 50)); // idle gaps: the follower must wake, not just keep reading
      }
      const batch = payloads(10, 'batch-via-b');
      const rb = await unary(cb.appendBatch, cb, { partition, data: batch, idempotencyKeys: [] }, md);
      const ackAt = Date.now();
      rb.receipts.forEach((r, i) => sent.push({ seq: r.seq, data: batch[i]!, ackAt }));
      await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`${received.length} of ${total} entries reached the follower on A`)), 10_000))]);
    } finally {
      stream.cancel();
    }

    assert.deepEqual(received.map((r) => Number(r.entry.seq)), Array.from({ length: total }, (_, i) => i + 1), 'in order, no gaps, no repeats');
    let worstMs = -Infinity;
    for (const s of sent) {
      const got = received.find((r) => r.entry.seq === s.seq)!;
      assert.deepEqual(got.entry.data, s.data);
      assert.deepEqual(entryHash(entryFieldsOf(got.entry)), got.entry.hash);
      worstMs = Math.max(worstMs, got.at - s.ackAt);
      assert.ok(got.at - s.ackAt <= FOLLOW_LATENCY_MS, `seq ${s.seq} reached A ${got.at - s.ackAt} ms after B acknowledged it`);
    }
    t.diagnostic(`worst delivery through the other replica: ${worstMs} ms after the acknowledgement`);
  });

  test('8 appenders, 4 through each replica, produce one gapless valid chain holding every acknowledged entry', async (t) => {
    const partition = uniquePartition('concurrent');
    const acked: { seq: bigint; hash: Buffer; data: Buffer }[] = [];
    const appender = async (server: GantryServer, n: number) => {
      const client = clientOf(server);
      const md = metadataFor(dataDir, `appender-${n}`, ['log.append']);
      for (let i = 0; i < APPENDS_PER_APPENDER; i++) {
        if (i % 4 === 3) {
          const data = payloads(1 + (i % 7), `w${n}-${i}`);
          const { receipts } = await unary(client.appendBatch, client, { partition, data, idempotencyKeys: [] }, md);
          receipts.forEach((r, j) => {
            assert.equal(r.seq, receipts[0]!.seq + BigInt(j), 'a batch is one consecutive run');
            acked.push({ seq: r.seq, hash: r.hash, data: data[j]! });
          });
        } else {
          const data = Buffer.from(`w${n}-${i}`);
          const r = await unary(client.append, client, { partition, data, idempotencyKey: '' }, md);
          acked.push({ seq: r.seq, hash: r.hash, data });
        }
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: 2 * APPENDERS_PER_REPLICA }, (_, n) => appender(n % 2 === 0 ? a : b, n)));
    const elapsedMs = Date.now() - started;

    const seqs = acked.map((x) => x.seq).sort((x, y) => (x < y ? -1 : 1));
    assert.equal(new Set(seqs).size, seqs.length, 'no seq acknowledged twice');
    assert.deepEqual(seqs, Array.from({ length: acked.length }, (_, i) => BigInt(i)), 'acknowledged seqs are exactly 0..n-1');

    const ca = clientOf(a);
    const cb = clientOf(b);
    const md = metadataFor(dataDir, 'checker', ['log.read']);
    for (const [name, client] of [['A', ca], ['B', cb]] as const) {
      const v = await unary(client.verify, client, { partition }, md);
      assert.equal(v.valid, true, `Verify on ${name}: ${v.reason} at ${v.firstBadSeq}`);
      assert.equal(v.count, BigInt(acked.length));
    }
    const { entries } = await readAll(ca, md, partition);
    assert.equal(entries.length, acked.length);
    for (const x of acked) {
      const e = entries[Number(x.seq)]!;
      assert.equal(e.seq, x.seq);
      assert.deepEqual(e.hash, x.hash, `seq ${x.seq}: the stored hash is the acknowledged one`);
      assert.deepEqual(e.data, x.data);
    }
    const fromB = await readAll(cb, md, partition);
    assert.deepEqual(fromB.entries.map((e) => e.hash), entries.map((e) => e.hash), 'both replicas serve the same chain');
    t.diagnostic(`${acked.length} entries from ${2 * APPENDERS_PER_REPLICA} appenders in ${elapsedMs} ms`);
  });
});
