// Tracing for benchmark servers: spans are created, batched and exported as in production, to an
// exporter that only counts them, so nothing leaves the machine.
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace';
import { SPAN_EXPORT } from '../src/telemetry/span-export.js';

class CountingExporter implements SpanExporter {
  exported = 0;
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.exported += spans.length;
    done({ code: ExportResultCode.SUCCESS });
  }
  async shutdown(): Promise<void> {}
}

/** A batch span processor over a counting exporter, batching as production's OTLP export does. */
export function benchSpanProcessor(): SpanProcessor {
  return new BatchSpanProcessor({ exporter: new CountingExporter(), ...SPAN_EXPORT });
}
