// PostgreSQL restarted under load (issue 20): a PostgreSQL server of this test's own
// (scripts/test-env/postgres.sh on a free port and a fresh dir; stopping the shared test server
// would fail the files running beside this one) is stopped (fast shutdown: every session ends with
// 57P01), kept down 7 s so a readiness check (every 5 s) sees it, and started again. The checks are
// postgres-outage.test.ts's (outage-support.ts): calls fail fast with UNAVAILABLE, readiness
// NOT_SERVING then SERVING without a restart of gantry, nothing acknowledged lost, and no event
// delivered twice (the fault is shorter than a delivery's lease).
import { after, before, describe, test } from 'node:test';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { repoRoot } from '../support/gantry-process.js';
import { throughFault } from './outage-support.js';

requirePostgresInCi('the PostgreSQL restart fault test');

const exec = promisify(execFile);

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
