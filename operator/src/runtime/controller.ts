import type { KubernetesObject } from '@kubernetes/client-node';
import { realClock, type Clock, type Logger } from '@gantry/kit';
import type { EventRecorder } from './events.js';
import type { Informer } from './informer.js';
import { keyOf, parseKey } from './keys.js';
import { runtimeMetrics } from './metrics.js';
import { WorkQueue } from './queue.js';
import { TerminalError, type Reconciler } from './reconcile.js';

/** The API server's 409 Conflict: a write based on a resourceVersion that is no longer current. */
const isConflict = (err: unknown): boolean => (err as { code?: unknown } | null)?.code === 409;

/** Workers per controller unless told otherwise. */
export const DEFAULT_WORKERS = 2;
/** A reconcile's signal aborts after this long (it is then counted as failed and retried). */
export const RECONCILE_TIMEOUT_MS = 5 * 60_000;
/** On stop, in-flight reconciles get this long to finish before their signals abort. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;

export interface Watch {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- informers of any kind may feed one controller
  informer: Informer<any>;
  /** The keys of the primary objects a change to this object concerns (e.g. a Secret → its owner). */
  map: (o: KubernetesObject) => string[];
}

export interface ControllerOptions {
  name: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the primary kind is the reconciler's business
  informer: Informer<any>;
  watches?: Watch[];
  reconciler: Reconciler;
  workers?: number;
  /** Re-reconcile every cached object this often; off when unset. */
  resyncMs?: number;
  queue?: WorkQueue;
  log: Logger;
  events?: EventRecorder;
  shutdownTimeoutMs?: number;
  clock?: Clock;
}

/** Feeds informer changes into a work queue and runs the reconciler on its keys with N workers. */
export class Controller {
  readonly name: string;
  private readonly queue: WorkQueue;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly metrics = runtimeMetrics();
  private started = false;

  constructor(private readonly opts: ControllerOptions) {
    this.name = opts.name;
    this.clock = opts.clock ?? realClock;
    this.log = opts.log.child({ controller: opts.name });
    this.queue = opts.queue ?? new WorkQueue({ name: opts.name, clock: this.clock });
    opts.informer.on((_event, obj) => this.queue.add(keyOf(obj)));
    for (const w of opts.watches ?? []) {
      w.informer.on((_event, obj: KubernetesObject, old?: KubernetesObject) => {
        for (const o of old ? [obj, old] : [obj]) {
          for (const key of this.mapSafely(w, o)) this.queue.add(key);
        }
      });
    }
  }

  /** The informers this controller reads, for a manager to start early. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see ControllerOptions.informer
  get informers(): Informer<any>[] {
    return [this.opts.informer, ...(this.opts.watches ?? []).map((w) => w.informer)];
  }

  /**
   * Waits for the informers' first lists, then reconciles until signal aborts; then lets in-flight
   * reconciles finish (up to shutdownTimeoutMs, after which their signals abort) and returns.
   * A controller runs once: after it returns, make a new one.
   */
  async start(signal: AbortSignal): Promise<void> {
    if (this.started) throw new Error(`controller ${this.name} was already started; make a new one`);
    this.started = true;
    const informers = this.informers;
    for (const inf of informers) inf.start();
    const aborted = new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
    await Promise.race([Promise.all(informers.map((i) => i.synced())), aborted]);
    if (signal.aborted) {
      this.queue.shutDown();
      return;
    }
    for (const obj of this.opts.informer.list() as KubernetesObject[]) this.queue.add(keyOf(obj));
    const hardStop = new AbortController();
    const cancelResync = this.opts.resyncMs ? this.scheduleResync(this.opts.resyncMs, signal) : () => {};
    const workers = Array.from({ length: this.opts.workers ?? DEFAULT_WORKERS }, () => this.work(hardStop.signal));
    this.log.info({ workers: workers.length }, 'controller started');
    await aborted;
    cancelResync();
    this.queue.shutDown();
    const timeoutMs = this.opts.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
    const cancelTimeout = this.clock.setTimeout(() => {
      this.log.warn({ timeoutMs }, 'reconciles still running at the shutdown timeout; aborting them');
      hardStop.abort();
    }, timeoutMs);
    await Promise.all(workers);
    cancelTimeout();
    this.log.info('controller stopped');
  }

  private async work(hardStop: AbortSignal): Promise<void> {
    for (let key = await this.queue.get(); key !== undefined; key = await this.queue.get()) {
      try {
        await this.reconcileOne(key, hardStop);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private async reconcileOne(key: string, hardStop: AbortSignal): Promise<void> {
    const startedMs = this.clock.now();
    const signal = AbortSignal.any([hardStop, AbortSignal.timeout(RECONCILE_TIMEOUT_MS)]);
    let result = 'success';
    try {
      const res = await this.opts.reconciler.reconcile(parseKey(key), signal);
      this.queue.forget(key);
      if (res?.requeueAfterMs !== undefined && res.requeueAfterMs >= 0) {
        result = 'requeue';
        this.queue.addAfter(key, res.requeueAfterMs);
      }
    } catch (err) {
      result = isConflict(err) ? 'conflict' : 'error';
      this.failed(key, err);
    } finally {
      this.metrics.reconcileDuration.record(this.clock.now() - startedMs, { controller: this.name, result });
    }
  }

  /** Records a failed reconcile and retries the key with backoff, unless the error says that cannot help. */
  private failed(key: string, err: unknown): void {
    if (isConflict(err)) {
      // The object (or one it writes) changed after it was read: optimistic concurrency doing its
      // job, and the next reconcile reads the new version. Not an error to alert on, nor an Event
      // for the user; while another replica hands over, the same write races many times.
      this.log.info({ key, retries: this.queue.numRequeues(key) }, 'an object changed while it was reconciled (409 Conflict); reconciling again');
      this.queue.addRateLimited(key);
      return;
    }
    this.metrics.reconcileErrors.add(1, { controller: this.name });
    if (err instanceof TerminalError) {
      // The reconciler has told the user (status, an Event); only a change to the object can help,
      // and that change queues the key again.
      this.metrics.terminalErrors.add(1, { controller: this.name });
      this.queue.forget(key);
      this.log.warn({ key, err }, 'reconcile failed and retrying cannot help; waiting for the object to change');
      return;
    }
    this.log.error({ key, err, retries: this.queue.numRequeues(key) }, 'reconcile failed; retrying with backoff');
    this.queue.addRateLimited(key);
    const obj = this.opts.informer.get(key) as KubernetesObject | undefined;
    if (obj) this.opts.events?.event(obj, 'Warning', 'ReconcileError', err instanceof Error ? err.message : String(err));
  }

  private mapSafely(w: Watch, o: KubernetesObject): string[] {
    try {
      return w.map(o);
    } catch (err) {
      this.log.error({ err, resource: w.informer.resource.plural }, 'a watch map function threw; it must not');
      return [];
    }
  }

  private scheduleResync(everyMs: number, signal: AbortSignal): () => void {
    let cancel = () => {};
    const tick = () => {
      if (signal.aborted) return;
      for (const obj of this.opts.informer.list() as KubernetesObject[]) this.queue.add(keyOf(obj));
      cancel = this.clock.setTimeout(tick, everyMs);
    };
    cancel = this.clock.setTimeout(tick, everyMs);
    return () => cancel();
  }
}
