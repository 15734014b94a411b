import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { realClock, type Clock, type Logger } from '@gantry/kit';
import { runtimeMetrics } from './metrics.js';

export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;
/** Retries wait retryPeriod × [1, 1 + this): candidates do not knock in lockstep. */
export const RETRY_JITTER = 0.2;

export interface LeaderCallbacks {
  /** Runs while this process leads; signal aborts when leadership ends. run() waits for it to settle. */
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  onStoppedLeading?(): void;
  onNewLeader?(identity: string): void;
}

export interface LeaderElectorOptions {
  kc: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  clock?: Clock;
}

const errorCode = (err: unknown) => (err as { code?: unknown })?.code;

/**
 * client-go's leader election on a coordination.k8s.io/v1 Lease. Every write is conditional on the
 * resourceVersion read, so two candidates never both win. A candidate judges expiry by its own
 * clock from when *it* saw the record last change, never by the holder's timestamps, so clock skew
 * between nodes does not matter.
 */
export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly metrics = runtimeMetrics();
  private observed: V1Lease | undefined;
  private observedAtMs = 0;
  private leading = false;
  private lastLeader = '';

  constructor(private readonly opts: LeaderElectorOptions) {
    this.api = opts.kc.makeApiClient(CoordinationV1Api);
    this.clock = opts.clock ?? realClock;
    this.log = opts.log.child({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
    this.leaseDurationMs = opts.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? DEFAULT_RENEW_DEADLINE_MS;
    this.retryPeriodMs = opts.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS;
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryPeriodMs * (1 + RETRY_JITTER))) {
      throw new Error('leader election needs leaseDurationMs > renewDeadlineMs > retryPeriodMs × 1.2');
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Campaigns until it leads, leads until it cannot renew within renewDeadlineMs or signal aborts,
   * then returns. On abort it releases the Lease, so a standby takes over at its next retry.
   */
  async run(callbacks: LeaderCallbacks, signal: AbortSignal): Promise<void> {
    if (!(await this.acquire(callbacks, signal))) return;
    const leadership = new AbortController();
    this.setLeading(true);
    this.log.info('became the leader');
    const leading = Promise.resolve()
      .then(() => callbacks.onStartedLeading(leadership.signal))
      .catch((err: unknown) => this.log.error({ err }, 'onStartedLeading failed'));
    const lost = await this.renewLoop(signal);
    leadership.abort();
    this.setLeading(false);
    if (lost) this.log.warn({ renewDeadlineMs: this.renewDeadlineMs }, 'could not renew the Lease in time; stopped leading');
    await leading;
    if (!lost) await this.release();
    callbacks.onStoppedLeading?.();
  }

  private async acquire(callbacks: LeaderCallbacks, signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew(callbacks)) return true;
      await this.clock.sleep(this.jittered(), signal);
    }
    return false;
  }

  /** Resolves true when leadership was lost (not renewed within the deadline), false on abort. */
  private async renewLoop(signal: AbortSignal): Promise<boolean> {
    let renewedAtMs = this.clock.now();
    while (!signal.aborted) {
      await this.clock.sleep(this.retryPeriodMs, signal);
      if (signal.aborted) return false;
      // Keep trying every retryPeriod until renewDeadline since the last renewal has passed.
      for (;;) {
        const remainingMs = renewedAtMs + this.renewDeadlineMs - this.clock.now();
        if (remainingMs <= 0) return true;
        if (await this.withTimeout(this.tryAcquireOrRenew(), remainingMs)) {
          renewedAtMs = this.clock.now();
          break;
        }
        if (signal.aborted) return false;
        await this.clock.sleep(Math.min(this.retryPeriodMs, Math.max(0, renewedAtMs + this.renewDeadlineMs - this.clock.now())), signal);
        if (signal.aborted) return false;
      }
    }
    return false;
  }

  private async tryAcquireOrRenew(callbacks?: LeaderCallbacks): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const now = this.clock.now();
    const spec = { holderIdentity: identity, leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000), acquireTime: new V1MicroTime(now), renewTime: new V1MicroTime(now), leaseTransitions: 0 };
    let current: V1Lease;
    try {
      current = await this.api.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (errorCode(err) !== 404) return this.failed('read', err);
      try {
        this.observe(await this.api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec } }), callbacks);
        return true;
      } catch (createErr) {
        return this.failed('create', createErr);
      }
    }
    this.observe(current, callbacks);
    const holder = current.spec?.holderIdentity ?? '';
    const heldByMe = holder === identity;
    if (holder && !heldByMe && this.observedAtMs + this.leaseDurationMs > now) return false;
    const previous = current.spec ?? {};
    const next = {
      ...spec,
      acquireTime: heldByMe && previous.acquireTime ? previous.acquireTime : spec.acquireTime,
      leaseTransitions: (previous.leaseTransitions ?? 0) + (heldByMe ? 0 : 1),
    };
    try {
      this.observe(await this.api.replaceNamespacedLease({ namespace, name, body: { ...current, spec: next } }), callbacks);
      return true;
    } catch (err) {
      return this.failed('update', err);
    }
  }

  /** Remembers the record and, when it changed, when this process saw it change. */
  private observe(lease: V1Lease, callbacks?: LeaderCallbacks): void {
    if (lease.metadata?.resourceVersion !== this.observed?.metadata?.resourceVersion) {
      this.observed = lease;
      this.observedAtMs = this.clock.now();
    }
    const holder = lease.spec?.holderIdentity ?? '';
    if (holder && holder !== this.lastLeader) {
      this.lastLeader = holder;
      this.log.info({ leader: holder }, 'new leader observed');
      callbacks?.onNewLeader?.(holder);
    }
  }

  private failed(what: string, err: unknown): false {
    // 409 is the expected loss of a race with another candidate.
    if (errorCode(err) !== 409) this.log.warn({ err }, `could not ${what} the Lease`);
    return false;
  }

  /** Gives the Lease up so a standby need not wait for it to expire (client-go ReleaseOnCancel). */
  private async release(): Promise<void> {
    const { namespace, name, identity } = this.opts;
    const lease = this.observed;
    if (lease?.spec?.holderIdentity !== identity) return;
    const now = new V1MicroTime(this.clock.now());
    const body = { ...lease, spec: { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, acquireTime: now, renewTime: now } };
    const released = await this.withTimeout(
      this.api.replaceNamespacedLease({ namespace, name, body }).then(() => true, (err: unknown) => this.failed('release', err)),
      this.renewDeadlineMs,
    );
    if (released) this.log.info('released the Lease');
    else this.log.warn('could not release the Lease; a standby takes over when it expires');
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.metrics.leader.add(leading ? 1 : -1, { lease: this.opts.name });
  }

  private jittered(): number {
    return this.retryPeriodMs * (1 + Math.random() * RETRY_JITTER);
  }

  /** The attempt's answer, or false if it takes longer than ms (the request is left to finish). */
  private withTimeout(attempt: Promise<boolean>, ms: number): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const cancel = this.clock.setTimeout(() => resolve(false), ms);
      attempt.then(
        (v) => (cancel(), resolve(v)),
        (err: unknown) => (cancel(), reject(err instanceof Error ? err : new Error(String(err)))),
      );
    });
  }
}
