import { context, propagation, type TextMapSetter } from '@opentelemetry/api';
import type { InterceptingCall, Interceptor, Metadata } from '@grpc/grpc-js';
import { InterceptingCall as GrpcInterceptingCall } from '@grpc/grpc-js';
import type { IMetricReader } from '@opentelemetry/sdk-metrics';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { buildInfo } from '../build-info.js';
import { observeProcessMemory } from './process-memory.js';
import { SPAN_EXPORT } from './span-export.js';

export interface TelemetryOptions {
  serviceName: string;
  /** OTLP/gRPC collector endpoint; with neither this nor spanProcessors, tracing is off. */
  otlpEndpoint?: string | undefined;
  /** Extra span processors (tests use an in-memory exporter, benchmarks a counting one). */
  spanProcessors?: SpanProcessor[];
  /** Share of new traces recorded (parent-based: a caller's decision is followed); default 1. */
  traceSampleRatio?: number;
}

export interface Telemetry {
  /** Serves the process's metrics in the Prometheus text format (GET /metrics on the probe port). */
  metrics(req: IncomingMessage, res: ServerResponse): void;
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry SDK: W3C trace context, AsyncLocalStorage context, OTLP export of traces
 * and metrics when an endpoint is configured. Spans per RPC come from the kit's telemetry middleware
 * and client interceptor rather than a require-hook instrumentation, which does not see grpc-js when
 * it is loaded as ESM (see docs/decisions.md).
 *
 * The SDK and exporters are imported here rather than at the top: they take about a second to load,
 * which every CLI command importing the kit for its client helpers would otherwise pay.
 */
export async function startTelemetry(opts: TelemetryOptions): Promise<Telemetry> {
  const [{ NodeSDK }, { resourceFromAttributes }, { ParentBasedSampler, TraceIdRatioBasedSampler }, { PrometheusExporter }, { RuntimeNodeInstrumentation }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-prometheus'),
    import('@opentelemetry/instrumentation-runtime-node'),
  ]);
  const spanProcessors: SpanProcessor[] = [...(opts.spanProcessors ?? [])];
  // Always: metrics are pulled (a scrape of the probe port) and cost nothing until scraped.
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const metricReaders: IMetricReader[] = [prometheus];
  if (opts.otlpEndpoint) {
    const [{ OTLPTraceExporter }, { OTLPMetricExporter }, { BatchSpanProcessor }, { PeriodicExportingMetricReader }] = await Promise.all([
      import('@opentelemetry/exporter-trace-otlp-grpc'),
      import('@opentelemetry/exporter-metrics-otlp-grpc'),
      import('@opentelemetry/sdk-trace'),
      import('@opentelemetry/sdk-metrics'),
    ]);
    spanProcessors.push(new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: opts.otlpEndpoint }), ...SPAN_EXPORT }));
    metricReaders.push(new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter({ url: opts.otlpEndpoint }), exportIntervalMillis: 15_000 }));
  }
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({ 'service.name': opts.serviceName, 'service.version': buildInfo().version }),
    spanProcessors,
    // Without span processors the SDK registers no tracer at all: spans are the API's non-recording
    // ones, which cost next to nothing and still carry an incoming trace context on.
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(opts.traceSampleRatio ?? 1) }),
    metricReaders,
    logRecordProcessors: [],
    // Node's runtime metrics (event-loop delay and utilization, heap, GC): what a soak or an
    // operator watches for a process that slows or grows. The delay is sampled every 10 ms and its
    // figures include those 10 ms (perf_hooks.monitorEventLoopDelay).
    instrumentations: [new RuntimeNodeInstrumentation()],
  });
  sdk.start();
  observeProcessMemory();
  return { metrics: (req, res) => prometheus.getMetricsRequestHandler(req, res), shutdown: () => sdk.shutdown() };
}

const metadataSetter: TextMapSetter<Metadata> = { set: (carrier, key, value) => carrier.set(key, value) };

/** Client interceptor: puts the active trace context (`traceparent`) on outgoing calls. */
export const traceContextInterceptor: Interceptor = (options, nextCall): InterceptingCall =>
  new GrpcInterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      propagation.inject(context.active(), metadata, metadataSetter);
      next(metadata, listener);
    },
  });
