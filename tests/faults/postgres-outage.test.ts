// PostgreSQL lost under load (issue 20). `gantry serve --target=all` runs on PostgreSQL with a
// settlement and an approvals load and a webhook receiver subscribed to every domain event, then:
//   - cut: the connection goes through a TCP proxy the test cuts (open sockets destroyed, new
//     ones refused) for GANTRY_TEST_FAULTS_OUTAGE_MS (default 30 s), then restores;
//   - restart: a PostgreSQL server of this test's own is stopped (fast shutdown) and started again.
// Checked: readiness turns NOT_SERVING (grpc.health.v1 and /readyz) while liveness stays SERVING;
// every call fails with UNAVAILABLE well inside its deadline (time to fail measured); the pools
// recover without a restart and readiness returns; each call cut by the fault is resent unchanged
// and in the end every acknowledged draw and vote is booked once, every domain event is delivered
// once and audited once.
import { after, before, describe, test } from 'node:test';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { CuttableProxy } from '@gantry/test-support/proxy';
import { repoRoot } from '../support/gantry-process.js';
import { throughFault } from './outage-support.js';

requirePostgresInCi('the PostgreSQL outage fault tests');

const OUTAGE_MS = Number(process.env.GANTRY_TEST_FAULTS_OUTAGE_MS ?? 30_000);
const exec = promisify(execFile);

describe('PostgreSQL unreachable for a while under load, behind a TCP proxy that is cut', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test(`cut for ${OUTAGE_MS / 1000} s: NOT_SERVING but alive, calls fail fast with UNAVAILABLE, recovery without a restart, nothing lost`, async (t) => {
    const database = await freshPostgresDatabase('t_outage');
    cleanups.push(() => database.drop());
    const upstream = new URL(database.url);
    const proxy = await CuttableProxy.start(upstream);
    cleanups.push(() => proxy.close());
    const through = new URL(database.url);
    through.hostname = '127.0.0.1';
    through.port = String(proxy.port);
    await throughFault(t, through.toString(), { begin: async () => proxy.sever(), downMs: OUTAGE_MS, end: async () => proxy.restore(), failFast: true }, cleanups);
  });
});

/** A free TCP port on 127.0.0.1 (for the private PostgreSQL server). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

describe('PostgreSQL restarted under load (a server of the test\'s own)', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  let env: NodeJS.ProcessEnv;
  const script = join(repoRoot, 'scripts/test-env/postgres.sh');
  const pg = async (cmd: 'start' | 'stop') => (await exec('bash', [script, cmd], { env })).stdout.trim();
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gantry-pg-restart-'));
    env = { ...process.env, GANTRY_TEST_PG_PORT: String(await freePort()), GANTRY_TEST_PG_DIR: dir };
    cleanups.push(async () => (await pg('stop'), rmSync(dir, { recursive: true, force: true })));
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test('stopped (fast shutdown) and started again: the same checks', async (t) => {
    const url = await pg('start');
    // Down long enough that a readiness check (every 5 s) runs while it is.
    await throughFault(t, url, { begin: async () => void (await pg('stop')), downMs: 7_000, end: async () => void (await pg('start')), failFast: true }, cleanups);
  });
});
