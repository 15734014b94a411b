// kill -9 of `gantry serve --target=log` ten times under an Append/AppendBatch load, on PostgreSQL
// (issue 20). tests/log/crash.test.ts kills the log once per engine without retries (what was in
// flight may or may not land); here every append is retried on its idempotency key, so the chain
// must hold exactly the acknowledged entries.
// Each restart is on the same port, data dir and database; a call whose answer the kill swallowed
// is sent again unchanged (support.ts, untilAnswered), as the API's idempotency allows.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { streamOf, unary } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { KILLS, killCycles, killedTarget, LOAD_TIMEOUT_MS, spread, untilAnswered, WORKERS } from './support.js';

requirePostgresInCi('the log kill -9 fault test');

describe('kill -9 of log under load, ten times, on PostgreSQL', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test('log: every acknowledged append (retried on its idempotency key) is in the chain once, with the seq and hash it was acknowledged with', async (t) => {
    const { proc, clients } = await killedTarget('log', {}, cleanups);
    const c = clients.log;
    const md = clients.as('kill-writer', ['log.append', 'log.read']);
    const partition = 'kill.log';
    const counters = { retries: 0 };
    const acked: { seq: bigint; hash: Buffer; data: Buffer }[] = [];
    let duplicates = 0;
    const worker = async (n: number, stopping: () => boolean) => {
      for (let i = 0; !stopping(); i++) {
        if (i % 3 === 2) {
          const data = Array.from({ length: 1 + ((i + n) % 7) }, (_, j) => Buffer.from(`kill-${n}-${i}-${j}`));
          const req = { partition, data, idempotencyKeys: data.map((d) => d.toString()) };
          const { receipts } = await untilAnswered(proc, () => unary(c.appendBatch, c, req, md), counters);
          receipts.forEach((r, j) => acked.push({ seq: r.seq, hash: r.hash, data: data[j]! }));
          duplicates += receipts.filter((r) => r.duplicate).length;
        } else {
          const data = Buffer.from(`kill-${n}-${i}`);
          const r = await untilAnswered(proc, () => unary(c.append, c, { partition, data, idempotencyKey: data.toString() }, md), counters);
          acked.push({ seq: r.seq, hash: r.hash, data });
          if (r.duplicate) duplicates++;
        }
      }
    };
    const { downMs } = await killCycles(proc, { cycles: KILLS, acksPerCycle: 60, acked: () => acked.length, timeoutMs: LOAD_TIMEOUT_MS }, (stopping) => Array.from({ length: WORKERS }, (_, n) => worker(n, stopping)));
    assert.equal(proc.kills, KILLS);

    const v = await unary(c.verify, c, { partition }, md, 60_000);
    assert.equal(v.valid, true, `Verify after ${KILLS} kills: ${v.reason} at seq ${v.firstBadSeq}`);
    const entries: logv1.Entry[] = [];
    for await (const chunk of streamOf(c.read({ partition, startSeq: 0n, limit: 0n }, md, { deadline: Date.now() + 60_000 }))) entries.push(...chunk.entries);
    entries.forEach((e, i) => assert.equal(e.seq, BigInt(i), 'seqs 0..n-1 without a gap'));
    // Every request was sent until answered, so every entry is an acknowledged one, each once.
    assert.equal(entries.length, acked.length, 'entries in the chain vs appends acknowledged');
    assert.equal(v.count, BigInt(acked.length));
    for (const x of acked) {
      const e = entries[Number(x.seq)];
      assert.ok(e, `acknowledged seq ${x.seq} is missing`);
      assert.deepEqual(e.hash, x.hash, `seq ${x.seq} survived with another hash`);
      assert.deepEqual(e.data, x.data);
    }
    t.diagnostic(`${KILLS} kills; ${acked.length} entries acknowledged (${duplicates} answered as duplicates of an append the kill had cut) and all in a valid chain; ${counters.retries} retries; restart ${spread(downMs)}`);
  });
});
