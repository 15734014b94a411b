// A benchmark server for `npm run bench -- log`, run as its own process (pinned to one core by the
// benchmark). Two kinds, each on PostgreSQL (URL argument) or on PGlite (no URL):
//   stack  the log service as production runs it: startRuntime with the logService factory and
//          the full kit stack (mTLS, JWT, rate limit set far above the load, tracing into a
//          counting exporter), group commit, hash chain and Merkle tree.
//   naive  the baseline: a bare grpc-js server (no TLS, no JWT) whose Append handler does one
//          autocommit INSERT into a plain table per call ("a durable append" done the obvious
//          way); AppendBatch does one autocommit multi-row INSERT.
// Prints one JSON line {port, dataDir, token} when ready; exits on SIGTERM.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { Database } from '@gantry/kit';
import { one } from '../../kit/src/storage/rows.js';
import { logv1 } from '@gantry/proto';
// Each kind imports only what it runs (dynamic imports below): the naive server skips loading the
// kit's runtime, telemetry and auth, which costs seconds of start-up CPU on these machines.

const [kind, url] = process.argv.slice(2);
const dataDir = mkdtempSync(join(tmpdir(), 'gantry-bench-log-'));
/** The service's default pool size; the naive server gets the same number of connections. */
const POOL_SIZE = 10;
/** Leaves nothing behind in /tmp (the PGlite database can be large). */
const exit = () => {
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(0);
};

if (kind === 'stack') {
  const [{ configSources, loadConfig, silentLogger, startRuntime }, { logService }, { tokenFor }, { benchSpanProcessor }] = await Promise.all([
    import('@gantry/kit'),
    import('../src/index.js'),
    import('@gantry/test-support/clients'),
    import('../../kit/bench/tracing.js'),
  ]);
  const config = loadConfig({
    env: { GANTRY_AUTH_DEV_ISSUER: 'true' }, // the benchmark's clients mint dev tokens
    modules: configSources([logService]),
    overrides: {
      dataDir,
      listen: { host: '127.0.0.1', port: 0, healthPort: 0 },
      telemetry: { logLevel: 'silent' },
      rateLimit: { points: 1_000_000, windowSec: 1 },
      ...(url ? { database: { url, poolSize: POOL_SIZE } } : {}),
    },
  });
  const runtime = await startRuntime({
    config,
    modules: [logService],
    log: silentLogger(),
    spanProcessors: [benchSpanProcessor()],
  });
  // An hour, so a full run never outlives its token.
  const token = tokenFor(dataDir, 'bench', ['log.append', 'log.read'], { ttlSec: 3600 });
  process.stdout.write(JSON.stringify({ port: runtime.port, dataDir, token }) + '\n');
  process.on('SIGTERM', () => void runtime.stop(1000).finally(() => exit()));
} else if (kind === 'naive') {
  // The kit's own database adapters (the same code the service runs on), without the rest of the kit.
  const db: Database = url
    ? await (await import('../../kit/src/storage/postgres.js')).openPostgres({ url, poolSize: POOL_SIZE, statementTimeoutMs: 30_000 })
    : await (await import('../../kit/src/storage/pglite.js')).openPglite(join(dataDir, 'db'));
  await db.exec(`CREATE TABLE IF NOT EXISTS naive_log (
    id bigserial PRIMARY KEY, partition text NOT NULL, data bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
  // As the kit's adapters return them: int8 bigint, timestamptz Date.
  type NaiveRow = { id: bigint; created_at: Date };
  // The baseline records no author, as it chains and proves nothing either.
  const naiveReceipt = (r: NaiveRow) => ({ seq: r.id, timestamp: r.created_at, prevHash: Buffer.alloc(0), hash: Buffer.alloc(0), author: '', duplicate: false });
  const fail = <T>(cb: sendUnaryData<T>, err: unknown) => cb({ code: status.UNAVAILABLE, details: (err as Error).message }, null);
  const server = new Server();
  server.addService(logv1.LogServiceService, {
    append: (call: ServerUnaryCall<logv1.AppendRequest, logv1.AppendResponse>, cb: sendUnaryData<logv1.AppendResponse>) => {
      db.query<NaiveRow>('INSERT INTO naive_log (partition, data) VALUES ($1, $2) RETURNING id, created_at', [call.request.partition, call.request.data]).then(
        ({ rows }) => cb(null, naiveReceipt(one(rows, 'appended row'))),
        (err: unknown) => fail(cb, err),
      );
    },
    appendBatch: (call: ServerUnaryCall<logv1.AppendBatchRequest, logv1.AppendBatchResponse>, cb: sendUnaryData<logv1.AppendBatchResponse>) => {
      const { partition, data } = call.request;
      const values = data.map((_, i) => `($1, $${i + 2})`).join(', ');
      db.query<NaiveRow>(`INSERT INTO naive_log (partition, data) VALUES ${values} RETURNING id, created_at`, [partition, ...data]).then(
        ({ rows }) => cb(null, { receipts: rows.map(naiveReceipt) }),
        (err: unknown) => fail(cb, err),
      );
    },
  } as never);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  process.stdout.write(JSON.stringify({ port, dataDir }) + '\n');
  process.on('SIGTERM', () => server.tryShutdown(() => void db.close().finally(() => exit())));
} else {
  process.stderr.write('usage: log-server.ts stack|naive [postgres-url]   (no URL: PGlite under a temp dir)\n');
  process.exit(2);
}
