// `npm run bench -- log --growth`: does an append or a proof get slower as one partition grows?
// Append latency (unary, one client, one entry per call) and inclusion and consistency proof
// latency in ONE partition at 10^4 and at 10^6 entries, on PostgreSQL through the full stack.
// Seeded through the service itself (AppendBatch of 1,000 entries, 4 calls in flight), so the
// chain and the tree are the service's own; the checks of checks.ts run at every size, and a
// consistency proof between the two sizes' signed checkpoints must verify.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { bearerMetadata, clientCredentials, clientOptions, unary } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { ratioLine } from '../../kit/bench/baseline.js';
import { check, pinProcess, pinning, progress, repoRoot, startChild, writeResult } from '../../kit/bench/lib.js';
import { benchDatabase, percentile } from '../../kit/bench/load.js';
import { verifyCheckpointConsistency } from '../src/client/index.js';
import { checkPartition, proveEntry, signedHead, type LogClient } from './checks.js';

const SIZES = [10_000, 1_000_000] as const;
const PARTITION = 'growth';
const SEED_BATCH = 1000;
const SEED_IN_FLIGHT = 4;
/** Calls per measured operation at each size. */
const SAMPLES = 300;
/** The 10^6 figures should stay within this factor of the 10^4 ones. */
const GOAL_MAX_RATIO = 1.5;
const payload = Buffer.alloc(128, 'gantry-log-growth ');

interface Latency {
  p50Ms: number;
  p99Ms: number;
}

async function timed(n: number, call: (i: number) => Promise<unknown>): Promise<Latency> {
  const ms = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await call(i);
    ms[i] = performance.now() - t0;
  }
  ms.sort();
  return { p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) };
}

/** Appends AppendBatch calls of SEED_BATCH entries until the partition holds `target` entries. */
async function seed(client: LogClient, md: ReturnType<typeof bearerMetadata>, from: number, target: number, step: (m: string) => void): Promise<number> {
  const batch = Array.from({ length: SEED_BATCH }, () => payload);
  let size = from;
  let reported = from;
  const t0 = performance.now();
  const worker = async () => {
    while (size < target) {
      const n = Math.min(SEED_BATCH, target - size);
      size += n;
      await unary(client.appendBatch, client, { partition: PARTITION, data: batch.slice(0, n), idempotencyKeys: [] }, md, 120_000);
      if (size - reported >= target / 10) {
        reported = size;
        step(`  seeded ${size.toLocaleString('en-US')} of ${target.toLocaleString('en-US')} entries`);
      }
    }
  };
  await Promise.all(Array.from({ length: SEED_IN_FLIGHT }, worker));
  return (target - from) / ((performance.now() - t0) / 1000);
}

export async function runGrowth(): Promise<void> {
  const t0Run = performance.now();
  const step = (message: string) => progress(`${((performance.now() - t0Run) / 1000).toFixed(1).padStart(6)} s  ${message}`);
  step('starting PostgreSQL (scripts/test-env/postgres.sh start) and creating a database for this run');
  const db = await benchDatabase('log_growth');
  const server = await startChild<{ port: number; dataDir: string; token: string }>(join(repoRoot, 'services/log/bench/log-server.ts'), ['stack', db.url]);
  const stop = async () => {
    await server.stop();
    await db.drop().catch((err: unknown) => step(`could not drop the benchmark database: ${(err as Error).message}`));
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  pinProcess(server.child.pid!, 0);
  pinProcess(process.pid, 1);
  const { dataDir, token, port } = server.ready;
  const tls = { caFile: join(dataDir, 'pki/ca.crt'), certFile: join(dataDir, 'pki/client.crt'), keyFile: join(dataDir, 'pki/client.key'), serverName: 'localhost' };
  const client = new logv1.LogServiceClient(`127.0.0.1:${port}`, clientCredentials(tls), clientOptions(tls));
  const md = bearerMetadata(token);
  step(`log --growth: one partition at ${SIZES.map((s) => s.toLocaleString('en-US')).join(' and ')} entries${pinning ? '; server on CPU 0, this client on CPU 1' : ''}`);

  const figures: Record<string, { seedEntriesPerSec: number; append: Latency; inclusionProof: Latency; consistencyProof: Latency }> = {};
  const heads: Awaited<ReturnType<typeof signedHead>>[] = [];
  /** The partition's size once every call so far is acknowledged. */
  let size = 0;
  try {
    for (const target of SIZES) {
      step(`seeding to ${target.toLocaleString('en-US')} entries (AppendBatch of ${SEED_BATCH}, ${SEED_IN_FLIGHT} in flight)`);
      const seedEntriesPerSec = await seed(client, md, size, target, step);
      size = target;
      // Seeding leaves work behind (autovacuum of the new rows, a checkpoint's writes) that would
      // land in the measurement at one size and not the other: do it now, at every size.
      step('VACUUM ANALYZE and CHECKPOINT after seeding');
      await db.query('VACUUM ANALYZE log.entries');
      await db.query('CHECKPOINT');
      step(`measuring at ${target.toLocaleString('en-US')}: ${SAMPLES} unary appends, ${SAMPLES} inclusion proofs, ${SAMPLES} consistency proofs`);
      const append = await timed(SAMPLES, () => unary(client.append, client, { partition: PARTITION, data: payload, idempotencyKey: '' }, md));
      size += SAMPLES;
      const head = await signedHead(client, md, PARTITION);
      check(Number(head.size) === size, `partition ${PARTITION} holds ${head.size} entries, expected ${size}`);
      const spread = (i: number) => BigInt(Math.floor(((i + 0.5) / SAMPLES) * size));
      const inclusionProof = await timed(SAMPLES, (i) => unary(client.getInclusionProof, client, { partition: PARTITION, seq: spread(i), treeSize: head.size }, md));
      const consistencyProof = await timed(SAMPLES, (i) => unary(client.getConsistencyProof, client, { partition: PARTITION, oldSize: spread(i) + 1n, newSize: head.size }, md));
      figures[String(target)] = { seedEntriesPerSec: Math.round(seedEntriesPerSec), append, inclusionProof, consistencyProof };
      await checkPartition(client, md, PARTITION, { acknowledged: size, uncertain: 0 });
      for (let i = 0; i < 10; i++) check(await proveEntry(client, md, PARTITION, spread(i * 30), head), `the inclusion proof of seq ${spread(i * 30)} does not verify at size ${size}`);
      heads.push(head);
    }
    const [older, newer] = heads as [Awaited<ReturnType<typeof signedHead>>, Awaited<ReturnType<typeof signedHead>>];
    const proof = await unary(client.getConsistencyProof, client, { partition: PARTITION, oldSize: older.size, newSize: newer.size }, md);
    check(verifyCheckpointConsistency(older, newer, proof), `the consistency proof from ${older.size} to ${newer.size} entries does not verify`);
  } finally {
    client.close();
    await stop();
  }

  const [small, large] = SIZES.map((s) => figures[String(s)]!) as [(typeof figures)[string], (typeof figures)[string]];
  const out = writeResult('log-growth', { benchmark: 'log-growth', quick: false, pinning, sizes: SIZES, samples: SAMPLES, payloadBytes: payload.length, figures });
  const row = (label: string, l: Latency) => `    ${label.padEnd(18)} p50 ${l.p50Ms.toFixed(2).padStart(7)} ms   p99 ${l.p99Ms.toFixed(2).padStart(7)} ms`;
  const lines = [
    '',
    `log --growth: one partition, ${payload.length}-byte entries, ${SAMPLES} sequential calls per figure, full stack on PostgreSQL.`,
    ...SIZES.flatMap((s) => {
      const f = figures[String(s)]!;
      return [`  at ${s.toLocaleString('en-US')} entries (seeded at ${f.seedEntriesPerSec.toLocaleString('en-US')} entries/s):`, row('Append (unary)', f.append), row('inclusion proof', f.inclusionProof), row('consistency proof', f.consistencyProof)];
    }),
    '',
    `  goals: figures at ${SIZES[1].toLocaleString('en-US')} within ${GOAL_MAX_RATIO}x of those at ${SIZES[0].toLocaleString('en-US')} (p50):`,
    ratioLine('Append p50', large.append.p50Ms, small.append.p50Ms, 'ms', { max: GOAL_MAX_RATIO }),
    ratioLine('inclusion proof p50', large.inclusionProof.p50Ms, small.inclusionProof.p50Ms, 'ms', { max: GOAL_MAX_RATIO }),
    ratioLine('consistency proof p50', large.consistencyProof.p50Ms, small.consistencyProof.p50Ms, 'ms', { max: GOAL_MAX_RATIO }),
    `  figures: ${out}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
}
