import type { Metadata } from '@grpc/grpc-js';
import { context, isSpanContextValid, metrics, propagation, SpanKind, SpanStatusCode, trace, type TextMapGetter } from '@opentelemetry/api';
import { GantryError, Status } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Middleware } from '../rpc/context.js';

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
 * Outermost middleware: a SERVER span per RPC (parent taken from incoming `traceparent`), the
 * `rpc.server.duration` histogram by method and status, and one log line per failed call
 * (successful calls log at debug). Handlers run inside the span, so their logs carry its trace id.
 */
export function telemetryMiddleware(log: Logger): Middleware {
  const tracer = trace.getTracer('gantry');
  const duration = metrics.getMeter('gantry').createHistogram('rpc.server.duration', { unit: 'ms', description: 'Duration of inbound RPCs' });
  return async (ctx, next) => {
    const parent = propagation.extract(context.active(), ctx.metadata, metadataGetter);
    const span = tracer.startSpan(
      ctx.method.path.slice(1),
      { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': ctx.method.service, 'rpc.method': ctx.method.name } },
      parent,
    );
    const startedMs = performance.now();
    let error: unknown;
    try {
      await context.with(trace.setSpan(parent, span), next);
    } catch (err) {
      error = err;
      throw err;
    } finally {
      const code = statusOf(error);
      const elapsedMs = performance.now() - startedMs;
      span.setAttribute('rpc.grpc.status_code', code);
      if (code !== Status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: Status[code] });
      span.end();
      duration.record(elapsedMs, { 'rpc.method': ctx.method.path, 'rpc.grpc.status_code': code });
      // With tracing off and no incoming traceparent the span context is the all-zero invalid one.
      const traceId = isSpanContextValid(span.spanContext()) ? span.spanContext().traceId : undefined;
      const fields = { method: ctx.method.path, code: Status[code], duration_ms: Math.round(elapsedMs * 100) / 100, principal: ctx.principal?.subject, trace_id: traceId };
      if (code === Status.OK) log.debug(fields, 'rpc');
      else log.info({ ...fields, details: error instanceof GantryError ? error.message : undefined }, 'rpc failed');
    }
  };
}
