import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, Metadata, status, type ClientReadableStream, type ServiceError, type ServiceDefinition } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { HealthState, LIVENESS, loadConfig, READINESS, startHealthServer, STARTUP, type GantryModule } from '../src/index.js';
import { echoModule } from '@gantry/test-support/echo';
import { bearer, callEcho, checkHealth, echoClient, eventually, freshPgliteDir, startEchoPlatform, startRuntimeEarly, type TestPlatform } from '@gantry/test-support/harness';

const ECHO_SERVICE = 'gantry.test.v1.EchoService';
const HealthClient = makeGenericClientConstructor(healthService as unknown as ServiceDefinition, 'Health');
/** The dev server certificate names `localhost`; the tests dial 127.0.0.1. */
const TLS_NAME = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };
const PROBES = [LIVENESS, STARTUP, READINESS] as const;

/** What the plaintext probe port answers for each name: the status, or the gRPC error code. */
async function probeAnswers(healthPort: number, names: readonly string[]): Promise<Record<string, string>> {
  const answers: Record<string, string> = {};
  for (const name of names) {
    const { status: serving, err } = await checkHealth(`127.0.0.1:${healthPort}`, credentials.createInsecure(), name);
    answers[name] = serving ?? `error ${err?.code}`;
  }
  return answers;
}

describe('health', () => {
  let platform: TestPlatform;
  let probeAddress: string;

  before(async () => {
    platform = await startEchoPlatform();
    probeAddress = `127.0.0.1:${platform.runtime.healthPort}`;
  });
  after(() => platform.close());

  test('Check answers SERVING on the mTLS port without a token', async () => {
    const { status: serving, err } = await checkHealth(platform.address, platform.clientCredentials);
    assert.equal(err, undefined);
    assert.equal(serving, 'SERVING');
  });

  test('Check answers SERVING on the plaintext probe port', async () => {
    const { status: serving, err } = await checkHealth(probeAddress, credentials.createInsecure());
    assert.equal(err, undefined);
    assert.equal(serving, 'SERVING');
  });

  test('each service is SERVING under its own name, and an unknown one is NOT_FOUND', async () => {
    assert.equal((await checkHealth(probeAddress, credentials.createInsecure(), ECHO_SERVICE)).status, 'SERVING');
    assert.equal((await checkHealth(platform.address, platform.clientCredentials, ECHO_SERVICE)).status, 'SERVING');
    const unknown = await checkHealth(probeAddress, credentials.createInsecure(), 'gantry.test.v1.NoSuchService');
    assert.equal(unknown.err?.code, status.NOT_FOUND);
  });

  test('once started, liveness, startup and readiness are SERVING under their own names, on both ports', async () => {
    assert.deepEqual(await probeAnswers(platform.runtime.healthPort, PROBES), { liveness: 'SERVING', startup: 'SERVING', readiness: 'SERVING' });
    for (const name of PROBES) assert.equal((await checkHealth(platform.address, platform.clientCredentials, name)).status, 'SERVING', name);
  });

  test('the probe port serves Check only: a Watch stream there is UNIMPLEMENTED, while the mTLS port still serves it', async () => {
    const watchOnce = (address: string, creds: ReturnType<typeof credentials.createInsecure>) =>
      new Promise<{ status?: string; code?: number }>((resolve) => {
        const client = new HealthClient(address, creds, TLS_NAME) as unknown as { watch(req: { service: string }, md: Metadata): ClientReadableStream<{ status: string }>; close(): void };
        const call = client.watch({ service: '' }, new Metadata());
        const done = (answer: { status?: string; code?: number }) => {
          call.cancel();
          client.close();
          resolve(answer);
        };
        call.on('data', (m: { status: string }) => done({ status: m.status }));
        call.on('error', (err: ServiceError) => done({ code: err.code }));
      });
    assert.deepEqual(await watchOnce(probeAddress, credentials.createInsecure()), { code: status.UNIMPLEMENTED });
    assert.deepEqual(await watchOnce(platform.address, platform.clientCredentials), { status: 'SERVING' });
  });

  test('the probe port serves health only: the echo service is not reachable there', async () => {
    const client = echoClient(probeAddress, credentials.createInsecure());
    try {
      const { err } = await callEcho(client, { message: 'hi' }, bearer(platform.token('alice', ['echo.read'])));
      assert.equal(err?.code, status.UNIMPLEMENTED);
    } finally {
      client.close();
    }
  });

  // Last: it shuts the platform down.
  test('once a drain begins, health is NOT_SERVING for good while the in-flight call finishes', async () => {
    const client = echoClient(platform.address, platform.clientCredentials);
    try {
      const inFlight = callEcho(client, { message: 'slow', delayMs: 1000 }, bearer(platform.token('alice', ['echo.read'])));
      assert.ok(await eventually(() => platform.runtime.server.inFlightCalls === 1, 2000, 10), 'the slow call never reached the handler');
      const draining = platform.runtime.server.shutdown(5000);

      assert.equal(platform.runtime.health.status(), 'NOT_SERVING');
      assert.equal(platform.runtime.health.status(ECHO_SERVICE), 'NOT_SERVING');
      // Readiness checks keep running during the drain; they must not flip it back.
      await new Promise((r) => setTimeout(r, 600));
      const probe = await checkHealth(probeAddress, credentials.createInsecure());
      assert.equal(probe.status, 'NOT_SERVING');
      assert.equal(platform.runtime.health.status(ECHO_SERVICE), 'NOT_SERVING');
      // Draining is no reason to restart the process: liveness stays SERVING, and start-up stays done.
      assert.deepEqual(await probeAnswers(platform.runtime.healthPort, PROBES), { liveness: 'SERVING', startup: 'SERVING', readiness: 'NOT_SERVING' });

      const { res, err } = await inFlight;
      assert.equal(err, undefined);
      assert.equal(res?.message, 'slow');
      await draining;
    } finally {
      client.close();
    }
  });
});


describe('health during start-up', () => {
  test('the health port answers before start-up finishes: liveness SERVING, startup and readiness NOT_SERVING; all SERVING once started', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gantry-kit-'));
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    // A service whose creation waits for the test: start-up is held after the database and migrations.
    const slow: GantryModule = { name: 'echo', create: async () => (await gate, [echoModule]) };
    try {
      await freshPgliteDir(join(dataDir, 'db'));
      const config = loadConfig({ env: {}, overrides: { dataDir, listen: { host: '127.0.0.1', port: 0, healthPort: 0 }, telemetry: { logLevel: 'silent' } } });
      const { healthPort, started } = await startRuntimeEarly({ config, modules: [slow], readinessIntervalMs: 500 });
      assert.deepEqual(await probeAnswers(healthPort, ['', ...PROBES]), { '': 'NOT_SERVING', liveness: 'SERVING', startup: 'NOT_SERVING', readiness: 'NOT_SERVING' });
      // Service names appear once their modules exist.
      assert.equal((await probeAnswers(healthPort, [ECHO_SERVICE]))[ECHO_SERVICE], `error ${status.NOT_FOUND}`);

      openGate();
      const runtime = await started;
      try {
        assert.equal(runtime.healthPort, healthPort, 'the port bound first is the one the runtime keeps');
        assert.deepEqual(await probeAnswers(healthPort, ['', ECHO_SERVICE, ...PROBES]), { '': 'SERVING', [ECHO_SERVICE]: 'SERVING', liveness: 'SERVING', startup: 'SERVING', readiness: 'SERVING' });
      } finally {
        await runtime.stop(1000);
      }
    } finally {
      openGate();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('without modules (the operator): liveness SERVING at once, startup once marked, readiness once ready, and only readiness drains', async () => {
    const health = new HealthState(['gantry.operator']);
    const probe = await startHealthServer('127.0.0.1', 0, health);
    const names = ['', 'gantry.operator', ...PROBES];
    try {
      assert.deepEqual(await probeAnswers(probe.port, names), { '': 'NOT_SERVING', 'gantry.operator': 'NOT_SERVING', liveness: 'SERVING', startup: 'NOT_SERVING', readiness: 'NOT_SERVING' });
      health.setReady(true);
      assert.equal(health.status(READINESS), 'NOT_SERVING', 'not ready before start-up is done');
      health.markStarted();
      assert.deepEqual(await probeAnswers(probe.port, names), { '': 'SERVING', 'gantry.operator': 'SERVING', liveness: 'SERVING', startup: 'SERVING', readiness: 'SERVING' });
      health.setReady(false);
      assert.deepEqual(await probeAnswers(probe.port, names), { '': 'NOT_SERVING', 'gantry.operator': 'NOT_SERVING', liveness: 'SERVING', startup: 'SERVING', readiness: 'NOT_SERVING' });
      health.setReady(true);
      health.drain();
      health.setReady(true);
      assert.deepEqual(await probeAnswers(probe.port, names), { '': 'NOT_SERVING', 'gantry.operator': 'NOT_SERVING', liveness: 'SERVING', startup: 'SERVING', readiness: 'NOT_SERVING' });
    } finally {
      probe.close();
    }
  });
});
