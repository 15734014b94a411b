// Its own file: startTelemetry registers the global tracer provider once per process, and this one
// samples no new trace (telemetry.traceSampleRatio 0).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { bearer, callEcho, echoClient, startEchoPlatform, type EchoStub, type TestPlatform } from '@gantry/test-support/harness';

describe('trace sampling (telemetry.traceSampleRatio 0)', () => {
  const exporter = new InMemorySpanExporter();
  let platform: TestPlatform;
  let client: EchoStub;

  before(async () => {
    platform = await startEchoPlatform({ telemetry: { logLevel: 'silent', traceSampleRatio: 0 } }, { spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    client = echoClient(platform.address, platform.clientCredentials);
  });
  after(async () => {
    client.close();
    await platform.close();
  });

  /** Calls Echo, with a traceparent whose sampled flag is `flags` when given; returns the spans recorded for it. */
  async function call(flags?: '00' | '01') {
    exporter.reset();
    const md = bearer(platform.token('sampler', ['echo.read']));
    const traceId = randomBytes(16).toString('hex');
    if (flags) md.set('traceparent', `00-${traceId}-${randomBytes(8).toString('hex')}-${flags}`);
    await callEcho(client, { message: 'sampled?' }, md);
    return { traceId, spans: exporter.getFinishedSpans() };
  }

  test('a call that starts a trace is not recorded', async () => {
    assert.deepEqual((await call()).spans, []);
  });

  test("a caller's decision is followed: its sampled trace is recorded, its unsampled one is not", async () => {
    const sampled = await call('01');
    assert.equal(sampled.spans.length, 1);
    assert.equal(sampled.spans[0]!.spanContext().traceId, sampled.traceId);
    assert.deepEqual((await call('00')).spans, []);
  });
});
