// Its own file: startTelemetry registers the global tracer provider once per process.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { buildInfo } from '../src/build-info.js';
import { bearer, callEcho, echoClient, startEchoPlatform, type EchoStub, type TestPlatform } from '@gantry/test-support/harness';

const SPAN_NAME = 'gantry.test.v1.EchoService/Echo';

describe('telemetry', () => {
  const exporter = new InMemorySpanExporter();
  let platform: TestPlatform;
  let client: EchoStub;

  before(async () => {
    platform = await startEchoPlatform({}, { spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    client = echoClient(platform.address, platform.clientCredentials);
  });
  after(async () => {
    client.close();
    await platform.close();
  });

  /** Calls Echo with a traceparent naming a fresh trace; returns the server spans of that trace. */
  async function tracedCall(req: { message: string; fail?: string }, scopes = ['echo.read']): Promise<{ traceId: string; parentSpanId: string; spans: ReadableSpan[] }> {
    const traceId = randomBytes(16).toString('hex');
    const parentSpanId = randomBytes(8).toString('hex');
    const md = bearer(platform.token('tracer', scopes));
    md.set('traceparent', `00-${traceId}-${parentSpanId}-01`);
    await callEcho(client, req, md);
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    return { traceId, parentSpanId, spans };
  }

  test('a call carrying traceparent gets a SERVER span in that trace, child of the caller, with status code 0', async () => {
    const { parentSpanId, spans } = await tracedCall({ message: 'hi' });
    assert.equal(spans.length, 1, `one span for the trace, got ${spans.map((s) => s.name).join(', ')}`);
    const span = spans[0]!;
    assert.equal(span.name, SPAN_NAME);
    assert.equal(span.kind, SpanKind.SERVER);
    assert.equal(span.parentSpanContext?.spanId, parentSpanId);
    assert.equal(span.attributes['rpc.grpc.status_code'], 0);
    assert.equal(span.attributes['rpc.system'], 'grpc');
    assert.equal(span.attributes['rpc.service'], 'gantry.test.v1.EchoService');
    assert.equal(span.attributes['rpc.method'], 'Echo');
    assert.notEqual(span.status.code, SpanStatusCode.ERROR);
    // Every span and metric of the process carries the program's release (its resource).
    assert.match(String(span.resource.attributes['service.version']), /^\d+\.\d+\.\d+/);
    assert.equal(span.resource.attributes['service.version'], buildInfo().version);
  });

  test('a failed call records its gRPC status code and marks the span as an error', async () => {
    const invalid = await tracedCall({ message: 'x', fail: 'invalid' });
    assert.equal(invalid.spans[0]?.attributes['rpc.grpc.status_code'], status.INVALID_ARGUMENT);
    assert.equal(invalid.spans[0]?.status.code, SpanStatusCode.ERROR);

    const denied = await tracedCall({ message: 'x' }, ['echo.write']);
    assert.equal(denied.spans[0]?.attributes['rpc.grpc.status_code'], status.PERMISSION_DENIED);
  });

  test('without traceparent a call starts a new trace', async () => {
    exporter.reset();
    await callEcho(client, { message: 'untraced' }, bearer(platform.token('tracer', ['echo.read'])));
    const spans = exporter.getFinishedSpans().filter((s) => s.name === SPAN_NAME);
    assert.equal(spans.length, 1);
    assert.equal(spans[0]!.parentSpanContext, undefined);
    assert.match(spans[0]!.spanContext().traceId, /^(?!0+$)[0-9a-f]{32}$/);
  });
});
