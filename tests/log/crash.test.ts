// kill -9 of `gantry serve --target=log` in the middle of a write load: after a restart on the same
// database every acknowledged entry is there with the seq and hash it was acknowledged with, the
// chain verifies, and there is no gap. Appends in flight at the kill may or may not have landed.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unary } from '@gantry/kit';
import type { ServiceError } from '@grpc/grpc-js';
import { freshPgliteDir, freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { entryFieldsOf, entryHash } from '../../services/log/src/client/index.js';
import { logClient, metadataFor, readAll, uniquePartition, type LogClient } from '../../services/log/test/support.js';
import { startGantry, type GantryServer } from '../support/gantry-process.js';

const CLIENTS = 8;
/** Entries acknowledged before the kill; enough that the kill lands mid-load, with commits in flight. */
const ACKED_BEFORE_KILL = 400;
const CALL_DEADLINE_MS = 10_000;

requirePostgresInCi('the log crash tests');

interface Acked {
  seq: bigint;
  hash: Buffer;
  data: Buffer;
}

/**
 * Runs CLIENTS concurrent appenders (Append and AppendBatch) on `partition` until the server dies.
 * Resolves with what was acknowledged and every payload that was sent.
 */
function writeLoad(clients: LogClient[], dataDir: string, partition: string, onAck: (total: number) => void) {
  const acked: Acked[] = [];
  const sent = new Set<string>();
  const errors: ServiceError[] = [];
  const worker = async (client: LogClient, n: number) => {
    const md = metadataFor(dataDir, `crash-writer-${n}`, ['log.append']);
    for (let i = 0; ; i++) {
      try {
        if (i % 3 === 2) {
          const data = Array.from({ length: 1 + ((i + n) % 9) }, (_, j) => Buffer.from(`c${n}-${i}-${j}`));
          data.forEach((d) => sent.add(d.toString()));
          const { receipts } = await unary(client.appendBatch, client, { partition, data, idempotencyKeys: [] }, md, CALL_DEADLINE_MS);
          receipts.forEach((r, j) => acked.push({ seq: r.seq, hash: r.hash, data: data[j]! }));
        } else {
          const data = Buffer.from(`c${n}-${i}`);
          sent.add(data.toString());
          const r = await unary(client.append, client, { partition, data, idempotencyKey: '' }, md, CALL_DEADLINE_MS);
          acked.push({ seq: r.seq, hash: r.hash, data });
        }
        onAck(acked.length);
      } catch (err) {
        errors.push(err as ServiceError);
        return;
      }
    }
  };
  const done = Promise.all(clients.map((c, n) => worker(c, n)));
  return { acked, sent, errors, done };
}

interface Engine {
  name: string;
  skip: string | false;
  /** Env for both server runs, and cleanup. */
  prepare(): Promise<{ env: NodeJS.ProcessEnv; cleanup(): Promise<void> }>;
}

const crashEngines: Engine[] = [
  {
    name: 'PostgreSQL',
    skip: postgresSkip(),
    async prepare() {
      const database = await freshPostgresDatabase('t_log');
      const dataDir = mkdtempSync(join(tmpdir(), 'gantry-crash-'));
      return {
        env: { GANTRY_DATABASE_URL: database.url, GANTRY_DATA_DIR: dataDir },
        async cleanup() {
          await database.drop();
          rmSync(dataDir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'PGlite',
    skip: false,
    async prepare() {
      const dataDir = mkdtempSync(join(tmpdir(), 'gantry-crash-'));
      await freshPgliteDir(join(dataDir, 'db'));
      return {
        env: { GANTRY_DATA_DIR: dataDir },
        async cleanup() {
          rmSync(dataDir, { recursive: true, force: true });
        },
      };
    },
  },
];

for (const engine of crashEngines) {
  describe(`kill -9 of the log server during a write load, on ${engine.name}`, { skip: engine.skip }, () => {
    const cleanups: (() => Promise<unknown>)[] = [];
    after(async () => {
      for (const fn of cleanups.reverse()) await fn().catch(() => {});
    });

    test('every acknowledged entry survives with its seq and hash, the chain verifies, and there is no gap', async (t) => {
      const { env, cleanup } = await engine.prepare();
      cleanups.push(cleanup);
      const dataDir = env.GANTRY_DATA_DIR!;
      const partition = uniquePartition('crash');

      const first: GantryServer = await startGantry('log', env);
      cleanups.push(() => first.stop());
      const clients = Array.from({ length: CLIENTS }, () => logClient(`127.0.0.1:${first.port}`, dataDir));
      cleanups.push(async () => clients.forEach((c) => c.close()));

      let killedAt = 0;
      const killed = new Promise<void>((resolve) => first.child.once('exit', () => resolve()));
      const load = writeLoad(clients, dataDir, partition, (total) => {
        if (total >= ACKED_BEFORE_KILL && killedAt === 0) {
          killedAt = total;
          first.child.kill('SIGKILL');
        }
      });
      const safety = setTimeout(() => {
        if (killedAt === 0) {
          killedAt = -1;
          first.child.kill('SIGKILL');
        }
      }, 30_000);
      await load.done;
      clearTimeout(safety);
      await killed;
      assert.ok(killedAt > 0, `the load acknowledged ${load.acked.length} entries in 30 s, fewer than ${ACKED_BEFORE_KILL}`);
      assert.equal(first.child.signalCode, 'SIGKILL');
      assert.equal(load.errors.length, CLIENTS, 'every writer stopped on an error once the server died');
      const ackedSeqs = load.acked.map((x) => x.seq);
      assert.equal(new Set(ackedSeqs).size, ackedSeqs.length, 'no seq acknowledged twice');

      const second = await startGantry('log', env);
      cleanups.push(() => second.stop());
      const client = logClient(`127.0.0.1:${second.port}`, dataDir);
      cleanups.push(async () => client.close());
      const md = metadataFor(dataDir, 'crash-checker', ['log.append', 'log.read']);

      const v = await unary(client.verify, client, { partition }, md, 60_000);
      assert.equal(v.valid, true, `Verify after the crash: ${v.reason} at seq ${v.firstBadSeq}`);
      const { entries } = await readAll(client, md, partition);
      assert.equal(v.count, BigInt(entries.length));
      entries.forEach((e, i) => assert.equal(e.seq, BigInt(i), 'Read returns seqs 0..n-1 without a gap'));
      for (const x of load.acked) {
        const e = entries[Number(x.seq)];
        assert.ok(e, `acknowledged seq ${x.seq} is missing after the restart (${entries.length} entries survived)`);
        assert.deepEqual(e.hash, x.hash, `seq ${x.seq} survived with another hash`);
        assert.deepEqual(e.data, x.data);
      }
      for (const e of entries) {
        assert.ok(load.sent.has(e.data.toString()), `seq ${e.seq} holds a payload no client sent`);
        assert.deepEqual(entryHash(entryFieldsOf(e)), e.hash);
      }
      const unacknowledgedSurvivors = entries.length - load.acked.length;
      t.diagnostic(`${load.acked.length} acknowledged before the kill (kill after ${killedAt}); ${entries.length} entries after restart (${unacknowledgedSurvivors} in flight at the kill landed)`);

      // The restarted server continues the same chain.
      const next = await unary(client.append, client, { partition, data: Buffer.from('after the restart'), idempotencyKey: '' }, md);
      assert.equal(next.seq, BigInt(entries.length));
      assert.deepEqual(next.prevHash, entries[entries.length - 1]!.hash);
      assert.equal((await unary(client.verify, client, { partition }, md, 60_000)).valid, true);
    });
  });
}
