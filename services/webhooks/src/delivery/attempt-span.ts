// Each delivery attempt is a traced outbound HTTP call: a CLIENT span (OpenTelemetry HTTP semantic
// conventions) whose parent is the trace context stored with the event, so the trace of the call
// that caused an event shows every attempt to deliver it; the span's own traceparent goes out with
// the request, so the receiver can continue the trace.
import { propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import type { ClaimedAttempt } from '../store/delivery-claims.js';
import type { HttpResult } from './http.js';

/** The only trace headers taken from an event and sent to a receiver (never baggage: receivers are outside). */
const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

const tracer = trace.getTracer('gantry');

/**
 * The URL as a span may show it: scheme, host and port. A path or a query may be a credential
 * (`/hooks/<token>`, `?token=`), and spans go to a tracing backend many people read, so each is
 * replaced by REDACTED; the webhook id on the span says which endpoint it was.
 */
export function urlForSpan(url: URL): string {
  const path = url.pathname === '/' || url.pathname === '' ? '/' : '/REDACTED';
  return `${url.protocol}//${url.host}${path}${url.search ? '?REDACTED' : ''}`;
}

function traceHeaders(carrier: Record<string, string>): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of TRACE_HEADERS) if (typeof carrier[name] === 'string') picked[name] = carrier[name];
  return picked;
}

/**
 * Starts the span of one attempt, child of the event's trace context (a root span when it has
 * none), and sets `traceparent`/`tracestate` of that span on `headers`. The caller must end it with
 * `endAttemptSpan` on every path.
 */
export function startAttemptSpan(c: ClaimedAttempt, headers: Record<string, string>): { span: Span; context: Context } {
  const url = new URL(c.url);
  const parent = propagation.extract(ROOT_CONTEXT, traceHeaders(c.traceContext));
  const span = tracer.startSpan(
    'POST',
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'http.request.method': 'POST',
        'server.address': url.hostname,
        'server.port': url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80,
        'url.full': urlForSpan(url),
        'webhook.id': c.webhookId,
        'webhook.delivery_id': c.deliveryId,
        'webhook.event_id': c.eventId,
        'webhook.event_type': c.eventType,
        'webhook.attempt': c.attemptNumber,
      },
    },
    parent,
  );
  const context = trace.setSpan(parent, span);
  const carrier: Record<string, string> = {};
  propagation.inject(context, carrier);
  Object.assign(headers, traceHeaders(carrier));
  return { span, context };
}

/** Records how the attempt ended (no result: it failed before one) and ends the span. */
export function endAttemptSpan(span: Span, res: HttpResult | undefined): void {
  if (res && res.status > 0) span.setAttribute('http.response.status_code', res.status);
  const succeeded = res !== undefined && res.status >= 200 && res.status < 300;
  if (!succeeded) {
    span.setAttribute('error.type', res && res.status > 0 ? String(res.status) : '_OTHER');
    const reason = !res ? 'the attempt failed before a response' : res.error || `the endpoint answered ${res.status}`;
    span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
  }
  span.end();
}
