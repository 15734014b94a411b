import type { Metadata } from '@grpc/grpc-js';
import { context, isSpanContextValid, metrics, propagation, ProxyTracerProvider, SpanKind, SpanStatusCode, trace, type Span, type TextMapGetter } from '@opentelemetry/api';
import { GantryError, Status } from '../errors.js';
import type { Logger } from '../logger.js';
import type { CallContext, Middleware, Next } from '../rpc/context.js';

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key).filter((v): v is string => typeof v === 'string');
    return values.length <= 1 ? values[0] : values;
  },
};

function statusOf(err: unknown): Status {
  if (err === undefined) return Status.OK;
  return err instanceof GantryError ? err.code : Status.INTERNAL;
}

/**
 * Whether a span of ours would be recorded by anyone: false when no SDK tracer provider is
 * registered (no collector configured: the default install). Asked per call, as a provider may be
 * registered after the middleware is made.
 */
function tracerRegistered(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegateTracer('gantry') !== undefined;
}

/** Whether the call carries anything the registered propagators read (traceparent, tracestate, baggage). */
function carriesContext(metadata: Metadata): boolean {
  for (const field of propagation.fields()) if (metadata.get(field).length > 0) return true;
  return false;
}

/**
 * Outermost middleware: a SERVER span per RPC (parent taken from incoming `traceparent`), the
 * `rpc.server.duration` histogram by method and status, and one log line per failed call
 * (successful calls log at debug). Handlers run inside the span, so their logs carry its trace id.
 *
 * With no tracer registered and no incoming trace context, the span would be the API's invalid
 * non-recording one in a context that carries nothing: that call skips the span and the context
 * switch, which change nothing any code could see.
 */
export function telemetryMiddleware(log: Logger): Middleware {
  const tracer = trace.getTracer('gantry');
  const duration = metrics.getMeter('gantry').createHistogram('rpc.server.duration', { unit: 'ms', description: 'Duration of inbound RPCs' });
  const finished = (ctx: CallContext, error: unknown, startedMs: number, span: Span | undefined) => {
    const code = statusOf(error);
    const elapsedMs = performance.now() - startedMs;
    if (span) {
      span.setAttribute('rpc.grpc.status_code', code);
      if (code !== Status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: Status[code] });
      span.end();
    }
    duration.record(elapsedMs, { 'rpc.method': ctx.method.path, 'rpc.grpc.status_code': code });
    if (code === Status.OK && !log.isLevelEnabled('debug')) return;
    // With tracing off and no incoming traceparent the span context is the all-zero invalid one.
    const traceId = span && isSpanContextValid(span.spanContext()) ? span.spanContext().traceId : undefined;
    const fields = { method: ctx.method.path, code: Status[code], duration_ms: Math.round(elapsedMs * 100) / 100, principal: ctx.principal?.subject, trace_id: traceId };
    if (code === Status.OK) log.debug(fields, 'rpc');
    else log.info({ ...fields, details: error instanceof GantryError ? error.message : undefined }, 'rpc failed');
  };
  const untraced = async (ctx: CallContext, next: Next) => {
    const startedMs = performance.now();
    try {
      await next(ctx);
    } catch (err) {
      finished(ctx, err, startedMs, undefined);
      throw err;
    }
    finished(ctx, undefined, startedMs, undefined);
  };
  const traced = async (ctx: CallContext, next: Next) => {
    const parent = propagation.extract(context.active(), ctx.metadata, metadataGetter);
    const span = tracer.startSpan(
      ctx.method.path.slice(1),
      { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': ctx.method.service, 'rpc.method': ctx.method.name } },
      parent,
    );
    const startedMs = performance.now();
    try {
      await context.with(trace.setSpan(parent, span), next, undefined, ctx);
    } catch (err) {
      finished(ctx, err, startedMs, span);
      throw err;
    }
    finished(ctx, undefined, startedMs, span);
  };
  return (ctx, next) => (tracerRegistered() || carriesContext(ctx.metadata) ? traced(ctx, next) : untraced(ctx, next));
}
