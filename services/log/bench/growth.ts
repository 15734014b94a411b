// `npm run bench -- log --growth`: does an append or a proof get slower as one partition grows?
// Append latency (unary, one client, one entry per call) and inclusion and consistency proof
// latency in ONE partition at 10^4 and at 10^6 entries, on PostgreSQL through the full stack.
// Seeded through the service itself (AppendBatch of 1,000 entries, 4 calls in flight), so the
// chain and the tree are the service's own; the checks of checks.ts run on every partition, and a
// consistency proof between the partition's signed checkpoints at both sizes must verify.
//
// On a shared machine the load of the minute moves latencies more than a partition's size does,
// so the goal compares the 10^6 partition with a 10^4 partition measured beside it, call for call
// interleaved (same table, same minute); the same partition measured at 10^4 before it grew is
// printed too.
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
/** A partition kept at the small size, measured beside the grown one. */
const SMALL_PARTITION = 'growth-small';
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

interface Figures {
  append: Latency;
  inclusionProof: Latency;
  consistencyProof: Latency;
}

function latency(ms: Float64Array): Latency {
  ms.sort();
  return { p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) };
}

/** Runs `call(partition, i)` SAMPLES times per partition, call i of every partition back to back. */
async function interleaved(partitions: readonly string[], call: (partition: string, i: number) => Promise<unknown>): Promise<Latency[]> {
  const ms = partitions.map(() => new Float64Array(SAMPLES));
  for (let i = 0; i < SAMPLES; i++) {
    for (const [p, partition] of partitions.entries()) {
      const t0 = performance.now();
      await call(partition, i);
      ms[p]![i] = performance.now() - t0;
    }
  }
  return ms.map(latency);
}

/** Appends AppendBatch calls of SEED_BATCH entries until the partition holds `target` entries. */
async function seed(client: LogClient, md: ReturnType<typeof bearerMetadata>, partition: string, from: number, target: number, step: (m: string) => void): Promise<number> {
  const batch = Array.from({ length: SEED_BATCH }, () => payload);
  let size = from;
  let reported = from;
  const t0 = performance.now();
  const worker = async () => {
    while (size < target) {
      const n = Math.min(SEED_BATCH, target - size);
      size += n;
      await unary(client.appendBatch, client, { partition, data: batch.slice(0, n), idempotencyKeys: [] }, md, 120_000);
      if (size - reported >= target / 10) {
        reported = size;
        step(`  ${partition}: ${size.toLocaleString('en-US')} of ${target.toLocaleString('en-US')} entries`);
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

  /** Each partition's size once every call so far is acknowledged. */
  const sizes = new Map<string, number>();
  const heads: Awaited<ReturnType<typeof signedHead>>[] = [];
  const seedRates: Record<string, number> = {};
  const seedTo = async (partition: string, target: number) => {
    step(`seeding ${partition} to ${target.toLocaleString('en-US')} entries (AppendBatch of ${SEED_BATCH}, ${SEED_IN_FLIGHT} in flight)`);
    seedRates[`${partition}@${target}`] = Math.round(await seed(client, md, partition, sizes.get(partition) ?? 0, target, step));
    sizes.set(partition, target);
  };
  /** Appends, then inclusion proofs, then consistency proofs, interleaved across `partitions`. */
  const measure = async (partitions: readonly string[]): Promise<Figures[]> => {
    // Seeding leaves work behind (autovacuum of the new rows, a checkpoint's writes) that would
    // land in one measurement and not another: do it first, every time.
    step('VACUUM ANALYZE and CHECKPOINT after seeding');
    await db.query('VACUUM ANALYZE log.entries');
    await db.query('CHECKPOINT');
    step(`measuring ${partitions.map((p) => `${p} (${sizes.get(p)!.toLocaleString('en-US')})`).join(' and ')}: ${SAMPLES} unary appends, inclusion proofs and consistency proofs each`);
    const append = await interleaved(partitions, (partition) => unary(client.append, client, { partition, data: payload, idempotencyKey: '' }, md));
    for (const p of partitions) sizes.set(p, sizes.get(p)! + SAMPLES);
    const spread = (partition: string, i: number) => BigInt(Math.floor(((i + 0.5) / SAMPLES) * sizes.get(partition)!));
    const inclusionProof = await interleaved(partitions, (partition, i) => unary(client.getInclusionProof, client, { partition, seq: spread(partition, i), treeSize: BigInt(sizes.get(partition)!) }, md));
    const consistencyProof = await interleaved(partitions, (partition, i) =>
      unary(client.getConsistencyProof, client, { partition, oldSize: spread(partition, i) + 1n, newSize: BigInt(sizes.get(partition)!) }, md),
    );
    for (const partition of partitions) {
      await checkPartition(client, md, partition, { acknowledged: sizes.get(partition)!, uncertain: 0 });
      const head = await signedHead(client, md, partition);
      for (let i = 0; i < 10; i++) check(await proveEntry(client, md, partition, spread(partition, i * 30), head), `the inclusion proof of ${partition} seq ${spread(partition, i * 30)} does not verify`);
      if (partition === PARTITION) heads.push(head);
    }
    return partitions.map((_, p) => ({ append: append[p]!, inclusionProof: inclusionProof[p]!, consistencyProof: consistencyProof[p]! }));
  };

  let before: Figures;
  let beside: Figures;
  let large: Figures;
  try {
    await seedTo(PARTITION, SIZES[0]);
    [before] = (await measure([PARTITION])) as [Figures];
    await seedTo(PARTITION, SIZES[1]);
    await seedTo(SMALL_PARTITION, SIZES[0]);
    [beside, large] = (await measure([SMALL_PARTITION, PARTITION])) as [Figures, Figures];
    const [older, newer] = heads as [Awaited<ReturnType<typeof signedHead>>, Awaited<ReturnType<typeof signedHead>>];
    const proof = await unary(client.getConsistencyProof, client, { partition: PARTITION, oldSize: older.size, newSize: newer.size }, md);
    check(verifyCheckpointConsistency(older, newer, proof), `the consistency proof of ${PARTITION} from ${older.size} to ${newer.size} entries does not verify`);
  } finally {
    client.close();
    await stop();
  }

  const out = writeResult('log-growth', { benchmark: 'log-growth', quick: false, pinning, sizes: SIZES, samples: SAMPLES, payloadBytes: payload.length, seedEntriesPerSec: seedRates, before, beside, large });
  const row = (label: string, l: Latency) => `      ${label.padEnd(18)} p50 ${l.p50Ms.toFixed(2).padStart(7)} ms   p99 ${l.p99Ms.toFixed(2).padStart(7)} ms`;
  const block = (title: string, f: Figures) => [title, row('Append (unary)', f.append), row('inclusion proof', f.inclusionProof), row('consistency proof', f.consistencyProof)];
  const [small, big] = SIZES.map((n) => n.toLocaleString('en-US')) as [string, string];
  const lines = [
    '',
    `log --growth: ${payload.length}-byte entries, ${SAMPLES} calls per figure, one client, full stack on PostgreSQL; seeded at ${Object.entries(seedRates).map(([k, v]) => `${k} ${v.toLocaleString('en-US')}/s`).join(', ')}.`,
    ...block(`    ${PARTITION} at ${small} entries (before it grew):`, before),
    ...block(`    ${PARTITION} at ${big} entries:`, large),
    ...block(`    ${SMALL_PARTITION} at ${small} entries, measured interleaved with the ${big} one:`, beside),
    '',
    `  goals: at ${big} entries within ${GOAL_MAX_RATIO}x of ${small} (p50, interleaved):`,
    ratioLine('Append p50', large.append.p50Ms, beside.append.p50Ms, 'ms', { max: GOAL_MAX_RATIO }),
    ratioLine('inclusion proof p50', large.inclusionProof.p50Ms, beside.inclusionProof.p50Ms, 'ms', { max: GOAL_MAX_RATIO }),
    ratioLine('consistency proof p50', large.consistencyProof.p50Ms, beside.consistencyProof.p50Ms, 'ms', { max: GOAL_MAX_RATIO }),
    `  the same against ${PARTITION} before it grew (sequential, so machine noise included):`,
    ratioLine('Append p50', large.append.p50Ms, before.append.p50Ms, 'ms'),
    ratioLine('inclusion proof p50', large.inclusionProof.p50Ms, before.inclusionProof.p50Ms, 'ms'),
    ratioLine('consistency proof p50', large.consistencyProof.p50Ms, before.consistencyProof.p50Ms, 'ms'),
    `  figures: ${out}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
}
