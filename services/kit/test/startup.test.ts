// Start-up when the database is late or gone: the health port answers first, a late PostgreSQL is
// waited for (bounded), errors waiting cannot fix stop start-up at once, and readiness follows the
// database while serving. PostgreSQL sits behind a TCP proxy the tests cut.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { DatabaseStartupError, devPkiPaths, isTransientDatabaseError, LIVENESS, loadConfig, READINESS, silentLogger, startRuntime, STARTUP, type ConfigInput, type Runtime, type GantryModule } from '../src/index.js';
import { echoFactory } from '@gantry/test-support/echo';
import { bearer, callEcho, checkHealth, echoClient, eventually, freshPgliteDir, freshPostgresDatabase, postgresSkip, requirePostgresInCi, startRuntimeEarly, tokenFor, type LogLine } from '@gantry/test-support/harness';
import { CuttableProxy } from '@gantry/test-support/proxy';

const PROBES = ['', LIVENESS, STARTUP, READINESS] as const;
/** Quick retries, so a test sees several attempts in a second or two. */
const BACKOFF = { minDelayMs: 100, maxDelayMs: 400 };

async function probeAnswers(healthPort: number): Promise<Record<string, string | undefined>> {
  const answers: Record<string, string | undefined> = {};
  for (const name of PROBES) answers[name] = (await checkHealth(`127.0.0.1:${healthPort}`, credentials.createInsecure(), name)).status;
  return answers;
}

function configFor(dataDir: string, overrides: ConfigInput = {}) {
  return loadConfig({ env: { GANTRY_AUTH_DEV_ISSUER: 'true' }, overrides: { dataDir, listen: { host: '127.0.0.1', port: 0, healthPort: 0 }, telemetry: { logLevel: 'silent' }, ...overrides } });
}


const waitingLines = (lines: LogLine[]) => lines.filter((l) => /not reachable yet/.test(l.msg));

describe('which database errors start-up waits out', () => {
  test('a server not up or not reachable yet is transient; credentials, a missing database, bad SQL and a malformed URL are not', () => {
    const withCode = (code: string, message = code) => Object.assign(new Error(message), { code });
    for (const err of [withCode('ECONNREFUSED'), withCode('ENOTFOUND'), withCode('EAI_AGAIN'), withCode('ETIMEDOUT'), withCode('57P03', 'the database system is starting up'), withCode('53300'), withCode('08006'), new Error('Connection terminated unexpectedly'), new Error('timeout exceeded when trying to connect'), new Error('Client has encountered a connection error and is not queryable'), new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')])]) {
      assert.equal(isTransientDatabaseError(err), true, `${err.message} is waited out`);
    }
    for (const err of [withCode('28P01', 'password authentication failed'), withCode('28000'), withCode('3D000', 'database "x" does not exist'), withCode('42601', 'syntax error'), new TypeError('Invalid URL'), withCode('ERR_SOCKET_BAD_PORT'), new Error('The server does not support SSL connections'), 'not an error']) {
      assert.equal(isTransientDatabaseError(err), false, `${String(err)} fails at once`);
    }
  });
});

describe('start-up stops at once on an error waiting cannot fix', () => {
  test('a migration whose SQL fails stops start-up without a retry, saying what to check, and the health port closes', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gantry-kit-'));
    const broken: GantryModule = { name: 'broken', schema: { name: 'broken', migrations: [{ version: 1, name: 'typo', sql: 'CREATE TABLE broken.t (id int,);' }] }, create: () => [] };
    try {
      await freshPgliteDir(join(dataDir, 'db'));
      const { healthPort, started, lines } = await startRuntimeEarly({ config: configFor(dataDir, { database: { startupTimeoutMs: 60_000 } }), modules: [broken], databaseStartupBackoff: BACKOFF });
      const t0 = Date.now();
      await assert.rejects(started, (err: Error) => {
        assert.ok(err instanceof DatabaseStartupError, String(err));
        assert.match(err.message, /syntax error/);
        assert.match(err.message, /Waiting would not fix this.*when a migration failed, its SQL/);
        return true;
      });
      assert.ok(Date.now() - t0 < 10_000, 'not waited out');
      assert.equal(waitingLines(lines).length, 0, 'no retry');
      assert.ok((await checkHealth(`127.0.0.1:${healthPort}`, credentials.createInsecure(), LIVENESS, 1000)).err, 'the health port is closed');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

requirePostgresInCi('the start-up tests');

describe('start-up and readiness with PostgreSQL late, then cut', { skip: postgresSkip() }, () => {
  let database: Awaited<ReturnType<typeof freshPostgresDatabase>>;
  let proxy: CuttableProxy;
  const dataDirs: string[] = [];
  const freshDataDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'gantry-kit-'));
    dataDirs.push(dir);
    return dir;
  };

  before(async () => {
    database = await freshPostgresDatabase('t_startup');
    proxy = await CuttableProxy.start(new URL(database.url));
  });
  after(async () => {
    await proxy?.close();
    await database?.drop();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });

  describe('a process started while PostgreSQL is unreachable', () => {
    let runtime: Runtime;
    let dataDir: string;
    after(() => runtime?.stop(1000));

    test('answers liveness only, logs each attempt with what to check, and becomes ready once the database is reachable, without exiting', async () => {
      proxy.sever();
      dataDir = freshDataDir();
      const config = configFor(dataDir, { database: { url: proxy.through(database.url), poolSize: 2, startupTimeoutMs: 60_000 } });
      const { healthPort, started, lines } = await startRuntimeEarly({ config, modules: [echoFactory], readinessIntervalMs: 200, databaseStartupBackoff: BACKOFF });
      let settled = false;
      started.then(() => (settled = true), () => (settled = true));

      assert.deepEqual(await probeAnswers(healthPort), { '': 'NOT_SERVING', liveness: 'SERVING', startup: 'NOT_SERVING', readiness: 'NOT_SERVING' });
      assert.ok(await eventually(() => waitingLines(lines).length >= 3, 10_000), 'it keeps trying');
      const line = waitingLines(lines)[0]!;
      assert.equal(line.level, 40, 'a warning');
      assert.match(line.msg, new RegExp(`PostgreSQL at 127\\.0\\.0\\.1:${proxy.port}/t_startup_\\w+ not reachable yet`));
      assert.match(line.msg, /Check the host and port in GANTRY_DATABASE_URL/);
      assert.doesNotMatch(JSON.stringify(lines), /gantry:gantry@/, 'the password is not logged');
      assert.equal(settled, false, 'start-up is still waiting, not failed');
      assert.equal((await probeAnswers(healthPort)).liveness, 'SERVING');

      proxy.restore();
      runtime = await started;
      assert.deepEqual(await probeAnswers(healthPort), { '': 'SERVING', liveness: 'SERVING', startup: 'SERVING', readiness: 'SERVING' });
      const pki = devPkiPaths(join(dataDir, 'pki'));
      const client = echoClient(`127.0.0.1:${runtime.port}`, credentials.createSsl(readFileSync(pki.caFile), readFileSync(pki.clientKeyFile), readFileSync(pki.clientCertFile)));
      try {
        const { res, err } = await callEcho(client, { message: 'late but here' }, bearer(tokenFor(dataDir, 'alice', ['echo.read'])));
        assert.equal(err, undefined);
        assert.equal(res?.message, 'late but here');
      } finally {
        client.close();
      }
    });

    test('with the database cut while serving, readiness turns NOT_SERVING while liveness and startup stay SERVING, and readiness returns with the database', async () => {
      assert.ok(runtime, 'the previous test started the runtime');
      proxy.sever();
      assert.ok(await eventually(async () => (await probeAnswers(runtime.healthPort)).readiness === 'NOT_SERVING', 5000), 'readiness follows the database');
      assert.deepEqual(await probeAnswers(runtime.healthPort), { '': 'NOT_SERVING', liveness: 'SERVING', startup: 'SERVING', readiness: 'NOT_SERVING' });
      assert.equal(runtime.health.status('gantry.test.v1.EchoService'), 'NOT_SERVING', 'each service name means readiness');

      proxy.restore();
      assert.ok(await eventually(async () => (await probeAnswers(runtime.healthPort)).readiness === 'SERVING', 10_000), 'ready again once the database answers');
      assert.deepEqual(await probeAnswers(runtime.healthPort), { '': 'SERVING', liveness: 'SERVING', startup: 'SERVING', readiness: 'SERVING' });
    });
  });

  test('start-up gives up after database.startupTimeoutMs with a message saying what to check, and the health port closes', async () => {
    proxy.sever();
    try {
      const config = configFor(freshDataDir(), { database: { url: proxy.through(database.url), poolSize: 2, startupTimeoutMs: 1500 } });
      const { healthPort, started, lines } = await startRuntimeEarly({ config, modules: [echoFactory], databaseStartupBackoff: BACKOFF });
      assert.equal((await probeAnswers(healthPort)).liveness, 'SERVING');
      const t0 = Date.now();
      await assert.rejects(started, (err: Error) => {
        assert.ok(err instanceof DatabaseStartupError, String(err));
        assert.match(err.message, /not reachable within database\.startupTimeoutMs \(1500 ms, \d+ attempts; GANTRY_DATABASE_STARTUP_TIMEOUT_MS\)/);
        assert.match(err.message, /Check the host and port in GANTRY_DATABASE_URL/);
        return true;
      });
      assert.ok(Date.now() - t0 < 5000, `gave up ${Date.now() - t0} ms after the health port was bound`);
      assert.ok(waitingLines(lines).length >= 2, 'it tried more than once first');
      assert.ok((await checkHealth(`127.0.0.1:${healthPort}`, credentials.createInsecure(), LIVENESS, 1000)).err, 'the health port is closed');
    } finally {
      proxy.restore();
    }
  });

  test('a refused password and a missing database stop start-up at once, without retrying', async () => {
    for (const [change, pattern] of [
      [(u: URL) => void (u.password = 'wrong'), /password authentication failed/],
      [(u: URL) => void (u.pathname = '/no_such_database'), /database "no_such_database" does not exist/],
    ] as const) {
      const url = new URL(database.url);
      change(url);
      const config = configFor(freshDataDir(), { database: { url: url.toString(), poolSize: 2, startupTimeoutMs: 60_000 } });
      const t0 = Date.now();
      await assert.rejects(startRuntime({ config, modules: [echoFactory], log: silentLogger(), databaseStartupBackoff: BACKOFF }), (err: Error) => {
        assert.ok(err instanceof DatabaseStartupError, String(err));
        assert.match(err.message, pattern);
        assert.match(err.message, /check database\.url \(GANTRY_DATABASE_URL\): its syntax, user and password, database name/);
        return true;
      });
      assert.ok(Date.now() - t0 < 10_000, 'not waited out');
    }
  });
});
