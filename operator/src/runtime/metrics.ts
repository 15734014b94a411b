import { metrics } from '@opentelemetry/api';

/**
 * The runtime's instruments. Called from constructors, not at import: a meter taken before the
 * telemetry SDK starts is a no-op for good.
 */
export function runtimeMetrics() {
  const meter = metrics.getMeter('gantry');
  return {
    queueDepth: meter.createUpDownCounter('gantry.operator.queue.depth', { description: 'Keys waiting in a work queue, ready to be processed' }),
    queueAdds: meter.createCounter('gantry.operator.queue.adds', { description: 'Keys added to a work queue (after de-duplication)' }),
    queueRetries: meter.createCounter('gantry.operator.queue.retries', { description: 'Keys re-queued with backoff after a failed reconcile' }),
    queueDropped: meter.createCounter('gantry.operator.queue.dropped', { description: 'Keys refused because the queue was full (the next resync brings them back)' }),
    reconcileDuration: meter.createHistogram('gantry.operator.reconcile.duration', { unit: 'ms', description: 'Time one reconcile took; attributes controller and result' }),
    reconcileErrors: meter.createCounter('gantry.operator.reconcile.errors', { description: 'Reconciles that threw' }),
    terminalErrors: meter.createCounter('gantry.operator.reconcile.terminal_errors', { description: 'Reconciles that threw a TerminalError: not retried until the object changes' }),
    leader: meter.createUpDownCounter('gantry.operator.leader', { description: '1 while this process holds the leader Lease' }),
    watchRestarts: meter.createCounter('gantry.operator.watch.restarts', { description: 'Watches re-opened; attribute reason: error, gone or timeout' }),
    eventsDropped: meter.createCounter('gantry.operator.events.dropped', { description: 'Kubernetes Events not written because the buffer was full or the write failed' }),
  };
}

export type RuntimeMetrics = ReturnType<typeof runtimeMetrics>;
