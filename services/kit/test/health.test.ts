import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { credentials, status } from '@grpc/grpc-js';
import { bearer, callEcho, checkHealth, echoClient, eventually, startEchoPlatform, type TestPlatform } from './harness.js';

const ECHO_SERVICE = 'gantry.test.v1.EchoService';

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

      const { res, err } = await inFlight;
      assert.equal(err, undefined);
      assert.equal(res?.message, 'slow');
      await draining;
    } finally {
      client.close();
    }
  });
});

