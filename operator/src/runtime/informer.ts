import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { Backoff, realClock, type Clock, type Logger } from '@gantry/kit';
import { keyOf, collectionPath, type ResourceType } from './keys.js';
import { getJson, isGone, KubeApiError, statusError, watch, type WatchEvent } from './kube-http.js';
import { runtimeMetrics } from './metrics.js';

/** The server closes each watch after a random timeout in this range, spreading re-watches out. */
export const WATCH_TIMEOUT_MIN_S = 300;
export const WATCH_TIMEOUT_MAX_S = 600;
/** Backoff between failed lists or watches (client-go uses 800 ms to 30 s). */
export const RETRY_INITIAL_MS = 500;
export const RETRY_MAX_MS = 30_000;
/** Objects per list page. */
export const LIST_PAGE_SIZE = 500;
/** Objects one informer holds; a list past this fails rather than exhausting memory. */
export const MAX_CACHED_OBJECTS = 200_000;

export type InformerEvent = 'add' | 'update' | 'delete' | 'resync';
export type InformerHandler<T> = (event: InformerEvent, obj: T, old?: T) => void;

export interface InformerOptions {
  kc: KubeConfig;
  resource: ResourceType;
  /** undefined watches all namespaces. */
  namespace?: string;
  labelSelector?: string;
  log: Logger;
  /** Emit 'resync' for every cached object this often; off when unset. */
  resyncMs?: number;
  /** Overrides the random timeout in [WATCH_TIMEOUT_MIN_S, WATCH_TIMEOUT_MAX_S] (tests use seconds). */
  watchTimeoutSeconds?: number;
  clock?: Clock;
}

interface ListResponse<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: T[];
}

/**
 * A cache of one kind kept current by list-then-watch. A broken or ended watch resumes from the last
 * resourceVersion it saw (an object's or a bookmark's); only 410 Gone costs a re-list, whose
 * differences against the cache are emitted as add, update and delete so no change is missed.
 */
export class Informer<T extends KubernetesObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: InformerHandler<T>[] = [];
  private readonly stopping = new AbortController();
  private readonly clock: Clock;
  private readonly metrics = runtimeMetrics();
  private readonly path: string;
  private loop: Promise<void> | undefined;
  private resyncCancel: (() => void) | undefined;
  private markSynced!: () => void;
  private readonly syncedPromise = new Promise<void>((resolve) => (this.markSynced = resolve));
  private readonly backoff = new Backoff(RETRY_INITIAL_MS, RETRY_MAX_MS);
  private rv = '';
  private lists = 0;
  private watches = 0;

  constructor(private readonly opts: InformerOptions) {
    this.clock = opts.clock ?? realClock;
    this.path = collectionPath(opts.resource, opts.namespace);
  }

  /** The resourceVersion the next watch resumes from. */
  get lastResourceVersion(): string {
    return this.rv;
  }

  /** Lists made so far (1 after the first; each 410 adds one). */
  get listCount(): number {
    return this.lists;
  }

  /** Watch requests opened so far. */
  get watchCount(): number {
    return this.watches;
  }

  /** The resource this informer caches. */
  get resource(): ResourceType {
    return this.opts.resource;
  }

  /** Registers a handler; handlers run synchronously in event order and must not throw. */
  on(fn: InformerHandler<T>): void {
    this.handlers.push(fn);
  }

  /** Starts listing and watching in the background; a second call does nothing. */
  start(): void {
    if (this.loop || this.stopping.signal.aborted) return;
    this.loop = this.run();
    if (this.opts.resyncMs) this.scheduleResync(this.opts.resyncMs);
  }

  /** Stops the watch and waits for the loop to end. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.resyncCancel?.();
    await this.loop;
  }

  /** Resolves once the first list has filled the cache. */
  synced(): Promise<void> {
    return this.syncedPromise;
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  /**
   * Test hook: the next watch resumes from this resourceVersion, as if the informer had been away
   * long enough for the server to forget its own (the watch cache keeps at least 75 s of history, so
   * a real expiry takes minutes to provoke).
   */
  resumeFromForTest(resourceVersion: string): void {
    this.rv = resourceVersion;
  }

  private async run(): Promise<void> {
    const { log, resource } = this.opts;
    const signal = this.stopping.signal;
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.relist(signal);
          needList = false;
        }
        await this.watchOnce(signal);
        this.metrics.watchRestarts.add(1, { resource: resource.plural, reason: 'timeout' });
        log.debug({ resource: resource.plural, resourceVersion: this.rv }, 'watch ended; resuming');
      } catch (err) {
        if (signal.aborted) break;
        if (isGone(err)) {
          // The history we would resume from is gone: list again at once and emit the difference.
          needList = true;
          this.metrics.watchRestarts.add(1, { resource: resource.plural, reason: 'gone' });
          log.info({ resource: resource.plural, resourceVersion: this.rv }, 'resourceVersion expired (410); re-listing');
          continue;
        }
        const delayMs = this.backoff.next();
        this.metrics.watchRestarts.add(1, { resource: resource.plural, reason: 'error' });
        const hint = err instanceof KubeApiError && err.statusCode === 404 ? `; the API server does not serve ${resource.plural}${resource.group ? `.${resource.group}` : ''}: install its CRD (the chart's crds.enabled)` : '';
        log.warn({ resource: resource.plural, err, retryInMs: Math.round(delayMs), relist: needList }, needList ? `list failed; retrying${hint}` : 'watch broke; resuming from the last resourceVersion');
        await this.clock.sleep(delayMs, signal);
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    const { labelSelector } = this.opts;
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    this.lists++;
    do {
      // A consistent read (no resourceVersion) so the list is never older than what we saw before.
      const page = await getJson<ListResponse<T>>(this.opts.kc, this.path, { labelSelector, limit: LIST_PAGE_SIZE, continue: cont }, signal);
      items.push(...(page.items ?? []));
      if (items.length > MAX_CACHED_OBJECTS) throw new Error(`more than ${MAX_CACHED_OBJECTS} ${this.opts.resource.plural}; narrow the informer with a namespace or label selector`);
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    this.replace(items);
    this.rv = rv;
    this.backoff.reset();
    this.markSynced();
    this.opts.log.debug({ resource: this.opts.resource.plural, count: items.length, resourceVersion: rv }, 'listed');
  }

  /** Swaps the cache for a fresh list, emitting what changed since the cache was last current. */
  private replace(items: T[]): void {
    const fresh = new Map<string, T>();
    for (const item of items) {
      // A list's items carry no kind; handlers and the event recorder want one.
      fresh.set(keyOf(item), this.withKind(item));
    }
    const old = new Map(this.cache);
    this.cache.clear();
    for (const [key, obj] of fresh) this.cache.set(key, obj);
    for (const [key, obj] of fresh) {
      const before = old.get(key);
      if (!before) this.emit('add', obj);
      else if (before.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit('update', obj, before);
    }
    for (const [key, before] of old) if (!fresh.has(key)) this.emit('delete', before);
  }

  /** One watch, from the last resourceVersion until the server ends it or it breaks. */
  private async watchOnce(signal: AbortSignal): Promise<void> {
    const timeoutSeconds = this.opts.watchTimeoutSeconds ?? WATCH_TIMEOUT_MIN_S + Math.floor(Math.random() * (WATCH_TIMEOUT_MAX_S - WATCH_TIMEOUT_MIN_S));
    this.watches++;
    await watch(this.opts.kc, this.path, { resourceVersion: this.rv, allowWatchBookmarks: true, labelSelector: this.opts.labelSelector, timeoutSeconds }, signal, (e) => this.apply(e));
  }

  private apply(e: WatchEvent): void {
    if (e.type === 'ERROR') throw statusError(e.object, 500);
    // Progress: the connection works, so the next failure starts its backoff afresh.
    this.backoff.reset();
    const obj = e.object as T;
    const rv = obj.metadata?.resourceVersion;
    if (e.type === 'BOOKMARK') {
      if (rv) this.rv = rv;
      return;
    }
    const typed = this.withKind(obj);
    const key = keyOf(typed);
    const before = this.cache.get(key);
    if (e.type === 'DELETED') {
      this.cache.delete(key);
      this.emit('delete', typed);
    } else if (before) {
      this.cache.set(key, typed);
      this.emit('update', typed, before);
    } else {
      if (this.cache.size >= MAX_CACHED_OBJECTS) throw new Error(`more than ${MAX_CACHED_OBJECTS} ${this.opts.resource.plural} cached`);
      this.cache.set(key, typed);
      this.emit('add', typed);
    }
    if (rv) this.rv = rv;
  }

  private withKind(obj: T): T {
    if (obj.kind && obj.apiVersion) return obj;
    const { group, version, kind } = this.opts.resource;
    return { ...obj, kind, apiVersion: group === '' ? version : `${group}/${version}` };
  }

  private emit(event: InformerEvent, obj: T, old?: T): void {
    for (const fn of this.handlers) {
      try {
        fn(event, obj, old);
      } catch (err) {
        this.opts.log.error({ resource: this.opts.resource.plural, event, err }, 'an informer handler threw; it must not');
      }
    }
  }

  private scheduleResync(everyMs: number): void {
    this.resyncCancel = this.clock.setTimeout(() => {
      if (this.stopping.signal.aborted) return;
      for (const obj of this.cache.values()) this.emit('resync', obj);
      this.scheduleResync(everyMs);
    }, everyMs);
  }
}
