import { pino, type Logger } from 'pino';
import { isSpanContextValid, trace } from '@opentelemetry/api';

export type { Logger };

/** JSON logs on stdout; each line carries the active trace and span ids so logs join traces. */
export function createLogger(opts: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: opts.name ?? 'gantry',
    level: opts.level ?? 'info',
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Tokens and keys must never reach a log line, even by accident through a metadata dump.
    redact: { paths: ['authorization', '*.authorization', 'token', '*.token', 'secret', '*.secret', 'privateKey'], censor: '[redacted]' },
    mixin() {
      const span = trace.getActiveSpan();
      if (!span || !isSpanContextValid(span.spanContext())) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
  });
}

/** A logger that writes nothing, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
