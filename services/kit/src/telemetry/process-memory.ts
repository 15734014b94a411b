// The process's memory by kind, for a soak or an operator telling a leak in JavaScript objects
// (heap_used) from one in buffers (external, array_buffers) or below both (rss growing alone: the
// allocator, native modules, thread stacks). The runtime instrumentation reports the heap only.
import { metrics } from '@opentelemetry/api';

/** Registers `gantry_process_memory{kind}`, read from process.memoryUsage() at scrape time. */
export function observeProcessMemory(): void {
  metrics
    .getMeter('gantry')
    .createObservableGauge('gantry.process.memory', { description: 'Memory of this process by kind: rss, heap_total, heap_used, external (C++ objects bound to JavaScript, buffers included), array_buffers', unit: 'By' })
    .addCallback((result) => {
      const m = process.memoryUsage();
      result.observe(m.rss, { kind: 'rss' });
      result.observe(m.heapTotal, { kind: 'heap_total' });
      result.observe(m.heapUsed, { kind: 'heap_used' });
      result.observe(m.external, { kind: 'external' });
      result.observe(m.arrayBuffers, { kind: 'array_buffers' });
    });
}
