// Its own file: startTelemetry registers the global tracer provider once per process.
// With telemetry.otlpEndpoint set, the process's spans reach an OTLP/gRPC collector, here a real
// gRPC server answering opentelemetry.proto.collector.trace.v1.TraceService/Export, carrying the
// service's name and version as resource attributes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { buildInfo } from '../src/build-info.js';
import { bearer, callEcho, echoClient, eventually, startEchoPlatform } from '@gantry/test-support/harness';

test('spans are exported over OTLP/gRPC to the configured collector, with service.name and service.version', async () => {
  const exports: Buffer[] = [];
  const collector = new Server();
  const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
  collector.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: raw.serialize,
        requestDeserialize: raw.deserialize,
        responseSerialize: raw.serialize,
        responseDeserialize: raw.deserialize,
      },
    },
    {
      // An empty ExportTraceServiceResponse: everything accepted.
      Export: (call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => {
        exports.push(call.request);
        done(null, Buffer.alloc(0));
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) => collector.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const platform = await startEchoPlatform({ telemetry: { logLevel: 'silent', otlpEndpoint: `http://127.0.0.1:${port}` } });
  const client = echoClient(platform.address, platform.clientCredentials);
  try {
    const { res } = await callEcho(client, { message: 'traced' }, bearer(platform.token('otlp', ['echo.read'])));
    assert.equal(res?.message, 'traced');
  } finally {
    client.close();
    await platform.close(); // shutting telemetry down flushes the batch
  }
  try {
    assert.ok(await eventually(() => exports.length > 0, 10_000), 'the collector received an export');
    const sent = Buffer.concat(exports).toString('latin1');
    assert.ok(sent.includes('gantry.test.v1.EchoService/Echo'), 'the server span is in the export');
    assert.ok(sent.includes('service.version') && sent.includes(buildInfo().version), 'with service.version');
    assert.ok(sent.includes('service.name') && sent.includes('gantry-echo'), 'with service.name');
  } finally {
    collector.forceShutdown();
  }
});
