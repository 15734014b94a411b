import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { unary } from '@gantry/kit';
import { startLogPlatform, uniquePartition } from './support.js';

test('a draining server ends a follow Tail at once with UNAVAILABLE and the seq to resume from', async () => {
  const platform = await startLogPlatform('PGlite', { limits: { shutdownGraceMs: 10_000 } });
  const partition = uniquePartition('drain');
  try {
    await unary(platform.client.append, platform.client, { partition, data: Buffer.from('first'), idempotencyKey: '' }, platform.md);
    const call = platform.client.tail({ partition, last: 1, follow: true }, platform.md);
    const received: bigint[] = [];
    const ended = new Promise<{ err: ServiceError; resumeSeq: string | undefined }>((resolve) => {
      call.on('data', (msg: { entries: { seq: bigint }[] }) => received.push(...msg.entries.map((e) => e.seq)));
      call.on('error', (err: ServiceError) => resolve({ err, resumeSeq: err.metadata?.get('gantry-resume-seq')[0]?.toString() }));
    });
    // The follower is caught up and waiting for new entries when the drain starts.
    while (received.length === 0) await new Promise((r) => setTimeout(r, 20));

    const startedMs = Date.now();
    await platform.runtime.server.shutdown();
    const drainMs = Date.now() - startedMs;
    const { err, resumeSeq } = await ended;

    assert.ok(drainMs < 3000, `shutdown took ${drainMs} ms; a follower must not hold it for the 10 s grace period`);
    assert.equal(err.code, 14 /* UNAVAILABLE */);
    assert.match(err.details, /resume the tail with start_seq 1/);
    assert.equal(resumeSeq, '1');
    assert.deepEqual(received, [0n]);
  } finally {
    await platform.close();
  }
});
