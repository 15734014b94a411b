import { CoreV1Api, PatchStrategy, setHeaderOptions, type CoreV1Event, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { realClock, type Clock, type Logger } from '@gantry/kit';
import { runtimeMetrics } from './metrics.js';

/** Events waiting to be written; more are dropped (and counted) rather than queued without bound. */
export const MAX_BUFFERED_EVENTS = 1000;
/** A repeat of the same (object, type, reason, message) within this window bumps a count instead. */
export const AGGREGATE_WINDOW_MS = 10 * 60_000;
/** Distinct events remembered for aggregation; the least recently seen is forgotten first. */
export const MAX_REMEMBERED_EVENTS = 4096;
/** Longer messages are cut: events.k8s.io refuses notes over 1 KiB, and core/v1 is no place for more. */
export const MAX_MESSAGE_CHARS = 1024;

export type EventType = 'Normal' | 'Warning';

interface Pending {
  obj: KubernetesObject;
  type: EventType;
  reason: string;
  message: string;
  atMs: number;
}

interface Written {
  namespace: string;
  name: string;
  count: number;
  lastMs: number;
}

/**
 * Writes core/v1 Events about objects (what `kubectl describe` shows), one at a time in the
 * background. Never throws and never blocks the caller: a full buffer or a failed write drops the event.
 */
export class EventRecorder {
  private readonly api: CoreV1Api;
  private readonly clock: Clock;
  private readonly metrics = runtimeMetrics();
  private readonly buffer: Pending[] = [];
  private readonly written = new Map<string, Written>();
  private pump: Promise<void> | undefined;

  constructor(private readonly opts: { kc: KubeConfig; component: string; instance: string; log: Logger; clock?: Clock }) {
    this.api = opts.kc.makeApiClient(CoreV1Api);
    this.clock = opts.clock ?? realClock;
  }

  /** Records an event about obj; fire and forget. */
  event(obj: KubernetesObject, type: EventType, reason: string, message: string): void {
    if (this.buffer.length >= MAX_BUFFERED_EVENTS) {
      this.metrics.eventsDropped.add(1, { reason: 'buffer_full' });
      return;
    }
    this.buffer.push({ obj, type, reason, message: message.slice(0, MAX_MESSAGE_CHARS), atMs: this.clock.now() });
    this.pump ??= this.drain().finally(() => (this.pump = undefined));
  }

  /** Resolves once every buffered event has been written (or dropped). */
  async flush(): Promise<void> {
    while (this.pump) await this.pump;
  }

  private async drain(): Promise<void> {
    for (let e = this.buffer.shift(); e; e = this.buffer.shift()) {
      try {
        await this.write(e);
      } catch (err) {
        this.metrics.eventsDropped.add(1, { reason: 'write_failed' });
        this.opts.log.warn({ err, reason: e.reason, object: e.obj.metadata?.name }, 'could not write a Kubernetes Event; dropped');
      }
    }
  }

  private async write(e: Pending): Promise<void> {
    const meta = e.obj.metadata ?? {};
    const namespace = meta.namespace || 'default';
    const id = [meta.uid ?? `${namespace}/${meta.name}`, e.type, e.reason, e.message].join('\u0000');
    const seen = this.written.get(id);
    const at = new Date(e.atMs);
    if (seen && e.atMs - seen.lastMs < AGGREGATE_WINDOW_MS) {
      try {
        await this.api.patchNamespacedEvent(
          { namespace: seen.namespace, name: seen.name, body: { count: seen.count + 1, lastTimestamp: at.toISOString() } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        this.remember(id, { ...seen, count: seen.count + 1, lastMs: e.atMs });
        return;
      } catch (err) {
        // Gone (deleted or expired by the server's event TTL): write a new one below.
        if ((err as { code?: unknown }).code !== 404) throw err;
      }
    }
    const body: CoreV1Event = {
      metadata: { name: `${meta.name ?? 'object'}.${(BigInt(e.atMs) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000))).toString(16)}`, namespace },
      involvedObject: { apiVersion: e.obj.apiVersion, kind: e.obj.kind, name: meta.name, namespace: meta.namespace, uid: meta.uid, resourceVersion: meta.resourceVersion },
      type: e.type,
      reason: e.reason,
      message: e.message,
      count: 1,
      firstTimestamp: at,
      lastTimestamp: at,
      source: { component: this.opts.component, host: this.opts.instance },
      reportingComponent: this.opts.component,
      reportingInstance: this.opts.instance,
    };
    const created = await this.api.createNamespacedEvent({ namespace, body });
    this.remember(id, { namespace, name: created.metadata?.name ?? body.metadata.name!, count: 1, lastMs: e.atMs });
  }

  private remember(id: string, w: Written): void {
    this.written.delete(id);
    this.written.set(id, w);
    if (this.written.size > MAX_REMEMBERED_EVENTS) this.written.delete(this.written.keys().next().value!);
  }
}
