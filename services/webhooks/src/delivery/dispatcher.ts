// The delivery loop every replica runs: claim due deliveries from the outbox in batches
// (delivery-claims.ts says how claims split work between replicas), send each attempt over the
// sender's keep-alive pools (http.ts), record outcomes in group transactions (outcome-committer.ts).
// An attempt holds an in-flight slot (maxInFlight) and its endpoint's concurrency only while its
// HTTP request is out; once answered it waits for its group commit in the outcome queue, bounded
// with the attempts in flight by maxQueuedOutcomes (at it nothing is claimed). Its lease holds until
// the outcome commits, so the delivery cannot be claimed again meanwhile; only the concurrency count
// of this replica's next claims leaves it out (the claim's `answered` leases).
// Claims are serial: under load each claim takes what was queued while the previous one ran and a
// short linger, so a batch grows with the load; when idle, a publish's NOTIFY wakes it. Scheduling
// (due times, retry delays, signature timestamps) follows the service clock `now`, which tests
// move; leases and rate windows follow the database clock, so a moved test clock never makes a
// live attempt look abandoned.
import { randomUUID } from 'node:crypto';
import { context } from '@opentelemetry/api';
import { isTransientDatabaseError, realClock, Wakeup, type Clock, type Logger } from '@gantry/kit';
import { judge, parseRetryAfter, type RetryPolicy } from '../domain/retry.js';
import type { SecretBox } from '../domain/secret-box.js';
import { signatureHeaders } from '../domain/signature.js';
import type { DisableRule } from '../domain/limits.js';
import type { ClaimedAttempt, ClaimLimits } from '../store/delivery-claims.js';
import type { EndpointAttemptResult, RecordedOutcome } from '../store/delivery-outcomes.js';
import type { WebhooksStore } from '../store/webhooks-store.js';
import type { HttpResult, HttpSender } from './http.js';
import { endAttemptSpan, startAttemptSpan } from './attempt-span.js';
import { OutcomeCommitter, type OutcomeCommitLimits } from './outcome-committer.js';
import { SigningKeys } from './signing-keys.js';

/**
 * An outcome whose commit failed because the database could not be reached (an outage, a restart)
 * is tried again, with a delay doubling from the first to the second bound, for at most the third:
 * its attempt was answered, and dropping the outcome would send the delivery again once the lease
 * expired. A retry that comes after another claim took the delivery writes nothing (the lease token
 * no longer matches), so holding on is safe; the bound keeps the outcome's slot from being held forever.
 */
export const OUTCOME_RETRY = { minDelayMs: 100, maxDelayMs: 2_000, forMs: 60_000 } as const;

export interface DispatcherOptions {
  now: () => number;
  random: () => number;
  policy: RetryPolicy;
  disableRule: DisableRule;
  attemptTimeoutMs: number;
  pollIntervalMs: number;
  /** Least time from one claim's start to the next when the first was not full. */
  claimLingerMs: number;
  /** Attempts whose HTTP request is out, at most. */
  maxInFlight: number;
  /** Attempts held at most: in flight, or answered with their outcome queued for its commit. */
  maxQueuedOutcomes: number;
  /** Outcomes recorded per transaction, and outcome transactions at once (outcome-committer.ts). */
  outcomes: OutcomeCommitLimits;
  claim: Omit<ClaimLimits, 'batch'> & { batch: number };
  drainTimeoutMs: number;
  /** Told when an endpoint was disabled by the service (410 or the failure rule). */
  onDisabled: (webhookId: string, reason: string) => void;
  /** Told of each committed attempt outcome and of each delivery dead-lettered at a claim (metrics.ts). */
  counted?: (outcome: 'succeeded' | 'failed' | 'dead_lettered', n?: number) => void;
  /** The delivery kill switch (webhooks.delivery.paused): while true nothing is claimed. */
  paused?: () => Promise<boolean>;
  /** The loop's sleeps and the drain timeout (default the real clock); due times follow `now`. */
  clock?: Clock;
}

/** How long an endpoint's opened signing key is kept, and how many are kept at most (signing-keys.ts). */
const SIGNING_KEY_TTL_MS = 60_000;
const SIGNING_KEYS_KEPT = 10_000;

export class Dispatcher {
  /** Attempts whose HTTP request is out, each with its controller (a drain that runs out aborts them). */
  private readonly sending = new Map<Promise<void>, AbortController>();
  /** Answered attempts whose outcome waits for its commit, by lease token. */
  private readonly recording = new Map<string, Promise<void>>();
  private draining = false;
  private readonly clock: Clock;
  /** Cuts the poll sleep short when something is queued. */
  private readonly wakeup: Wakeup;
  private readonly outcomes: OutcomeCommitter;
  private readonly keys: SigningKeys;
  private running: Promise<void> | undefined;
  private stopped = false;
  private pausedByFlag = false;

  constructor(
    private readonly store: Pick<WebhooksStore, 'queue'>,
    private readonly box: SecretBox,
    private readonly http: HttpSender,
    private readonly opts: DispatcherOptions,
    private readonly log: Logger,
  ) {
    this.clock = opts.clock ?? realClock;
    this.wakeup = new Wakeup(this.clock);
    this.outcomes = new OutcomeCommitter(store, opts.now, { ...opts.outcomes, maxQueued: opts.maxQueuedOutcomes });
    this.keys = new SigningKeys(box, { ttlMs: SIGNING_KEY_TTL_MS, maxEntries: SIGNING_KEYS_KEPT });
  }

  start(): void {
    this.running = this.run();
  }

  /** Something was queued (here or in another replica): look now. */
  wake(): void {
    this.wakeup.wake();
  }

  /** Stops claiming, lets attempts in flight finish within the drain bound, then aborts the rest. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.running;
    // An answer's outcome is queued before its attempt leaves `sending`, so once no attempt is
    // sending every outcome to wait for is in `recording`.
    const drained = Promise.all(this.sending.keys()).then(() => Promise.all(this.recording.values())).then(() => true);
    let cancelTimeout = () => {};
    const timedOut = new Promise<boolean>((r) => (cancelTimeout = this.clock.setTimeout(() => r(false), this.opts.drainTimeoutMs)));
    const inTime = await Promise.race([drained, timedOut]);
    cancelTimeout();
    if (!inTime) {
      // Aborted attempts are not recorded: their leases expire and another replica retries them.
      // Attempts answered before still have their outcomes recorded.
      this.draining = true;
      const reason = new Error('the dispatcher stopped (shutdown) during this attempt');
      for (const controller of this.sending.values()) controller.abort(reason);
      await drained;
    }
    await this.http.close();
  }

  /** Attempts a claim may take now: free in-flight slots, within what the outcome queue leaves. */
  private room(): number {
    const held = this.sending.size + this.recording.size;
    return Math.min(this.opts.maxInFlight - this.sending.size, this.opts.maxQueuedOutcomes - held);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      // A wake-up during the claim (more queued meanwhile) skips the poll sleep below.
      const mark = this.wakeup.mark;
      let full = false;
      const claimStartedMs = this.clock.now();
      if (await this.paused()) {
        await this.wakeup.sleep(this.opts.pollIntervalMs);
        continue;
      }
      try {
        full = await this.claimOnce();
      } catch (err) {
        this.log.warn({ err }, 'webhooks dispatcher: claiming deliveries failed; retrying');
      }
      if (this.stopped) break;
      // Full with room left: more may be due, claim again at once. Otherwise wait for a publish, an
      // answer or a commit (each frees room or brings work), or the poll.
      if (!full || this.room() <= 0) {
        await this.wakeup.sleep(this.opts.pollIntervalMs, { since: mark });
        // Under load every publish wakes the loop; letting claimLingerMs pass since the last claim
        // began lets a few more queue, so claims take batches instead of one event each. When idle
        // the last claim is long past and nothing waits.
        const lingerMs = claimStartedMs + this.opts.claimLingerMs - this.clock.now();
        if (lingerMs > 0 && !this.stopped) await this.clock.sleep(lingerMs);
      }
    }
  }

  /** Reads the kill switch, logging each change once; a failing evaluation counts as not paused. */
  private async paused(): Promise<boolean> {
    const paused = (await this.opts.paused?.().catch(() => false)) ?? false;
    if (paused !== this.pausedByFlag) {
      this.pausedByFlag = paused;
      if (paused) this.log.warn('webhooks dispatcher: delivery paused by the feature flag webhooks.delivery.paused; deliveries queue until it is turned off');
      else this.log.info('webhooks dispatcher: delivery resumed (webhooks.delivery.paused is off)');
    }
    return paused;
  }

  /** One claim and the start of its attempts; true when it took a full batch (more may be due). */
  async claimOnce(): Promise<boolean> {
    const room = this.room();
    if (room <= 0) return false;
    const batch = Math.min(room, this.opts.claim.batch);
    // Answered attempts still hold their leases (no claim takes their deliveries until the outcome
    // commits or the lease expires) but no longer hold their endpoint's concurrency.
    const answered = [...this.recording.keys()];
    const { claimed, deadLettered } = await this.store.queue.claim(new Date(this.opts.now()), { ...this.opts.claim, batch }, randomUUID, answered);
    this.opts.counted?.('dead_lettered', deadLettered.length);
    for (const id of deadLettered) void this.store.queue.announce(id, 0).catch(() => undefined);
    for (const c of claimed) this.track(c);
    return claimed.length === batch;
  }

  /** Runs the attempt of `c`: its HTTP request in `sending`, then its outcome in `recording` until committed. */
  private track(c: ClaimedAttempt): void {
    const controller = new AbortController();
    const p: Promise<void> = this.send(c, controller)
      .then((result) => {
        if (result) this.record(c, result);
      })
      .catch((err: unknown) => this.log.error({ err, delivery: c.deliveryId }, 'webhooks dispatcher: an attempt failed unexpectedly; its lease will expire and it will be retried'))
      .finally(() => {
        this.sending.delete(p);
        // An answer frees its slot and its endpoint's concurrency: what a claim that came back
        // short could not take may be claimable now. Without this the loop waited for the next
        // publish or poll, and batched publishing (few wake-ups) left the dispatcher idle.
        this.wakeup.wake();
      });
    this.sending.set(p, controller);
  }

  /** Queues the outcome of an answered attempt; it leaves `recording` once its transaction ended. */
  private record(c: ClaimedAttempt, result: EndpointAttemptResult): void {
    const p = this.commitOutcome(result)
      .then((out) => {
        this.opts.counted?.(result.next.status === 'SUCCEEDED' ? 'succeeded' : result.next.status === 'DEAD_LETTERED' ? 'dead_lettered' : 'failed');
        return this.recorded(c, out);
      })
      .catch((err: unknown) => this.log.error({ err, delivery: c.deliveryId }, 'webhooks dispatcher: recording an outcome failed; its lease will expire and it will be retried'))
      .finally(() => {
        // Committed (the lease is gone) or failed (the lease counts until it expires): either way
        // the next claim counts it from the database again.
        this.recording.delete(c.leaseToken);
        this.wakeup.wake();
      });
    this.recording.set(c.leaseToken, p);
  }

  /** Commits `result` in a group transaction, again while the database cannot be reached (OUTCOME_RETRY). */
  private async commitOutcome(result: EndpointAttemptResult): Promise<RecordedOutcome> {
    const giveUpAt = this.clock.now() + OUTCOME_RETRY.forMs;
    for (let delayMs: number = OUTCOME_RETRY.minDelayMs; ; delayMs = Math.min(2 * delayMs, OUTCOME_RETRY.maxDelayMs)) {
      try {
        return await this.outcomes.submit(result);
      } catch (err) {
        if (!isTransientDatabaseError(err) || this.draining || this.clock.now() + delayMs > giveUpAt) throw err;
        await this.clock.sleep(delayMs);
      }
    }
  }

  /** Sends the attempt of `c`; its outcome to record, or undefined when a draining dispatcher aborted it. */
  private async send(c: ClaimedAttempt, controller: AbortController): Promise<EndpointAttemptResult | undefined> {
    const startedMs = this.opts.now();
    const timestampSec = Math.floor(startedMs / 1000);
    const aad = aadFor(c.webhookId);
    const keys = [this.keys.keyOf(c.secrets.current, aad, 'current')!];
    if (c.secrets.previous && c.secrets.previous.expiresAt.getTime() > startedMs) keys.push(this.keys.keyOf(c.secrets.previous, aad, 'previous')!);
    // Header values (a receiver's Authorization) are opened only here, for the request.
    const extra = c.sealedHeaders ? (JSON.parse(this.box.open(c.sealedHeaders, headersAadFor(c.webhookId))) as Record<string, string>) : c.legacyHeaders;
    const headers: Record<string, string> = {
      ...extra,
      'content-type': c.contentType,
      'user-agent': 'gantry-webhooks/1',
      ...signatureHeaders(keys, c.eventId, timestampSec, c.payload),
    };
    // One timer per attempt, cleared when it ends (AbortSignal.timeout and AbortSignal.any cost a
    // weak reference, a finalizer and a timer left running for the full timeout, per attempt).
    const timer = setTimeout(() => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), this.opts.attemptTimeoutMs);
    timer.unref();
    const { span, context: traced } = startAttemptSpan(c, headers);
    let res: HttpResult | undefined;
    try {
      res = await context.with(traced, () => this.http.post(c.url, headers, c.payload, controller.signal, { owner: c.owner, internalApproved: c.internalApproved }));
    } finally {
      clearTimeout(timer);
      endAttemptSpan(span, res);
    }
    if (this.draining && controller.signal.aborted) return undefined;
    const finishedMs = this.opts.now();
    const retryAfterMs = parseRetryAfter(res.status, res.retryAfter, finishedMs);
    const verdict = judge(this.opts.policy, c.attemptsInRound, { status: res.status, retryAfterMs }, this.opts.random);
    const next =
      verdict.kind === 'retry'
        ? ({ status: 'PENDING', at: new Date(finishedMs + verdict.delayMs) } as const)
        : ({ status: verdict.kind === 'succeeded' ? 'SUCCEEDED' : 'DEAD_LETTERED', at: new Date(finishedMs) } as const);
    return {
      deliveryId: c.deliveryId,
      leaseToken: c.leaseToken,
      webhookId: c.webhookId,
      attempt: { attemptNumber: c.attemptNumber, startedAt: new Date(startedMs), latencyMs: res.latencyMs, responseStatus: res.status, error: res.error, responseBodyExcerpt: res.bodyExcerpt },
      next,
      succeeded: verdict.kind === 'succeeded',
      ...(verdict.kind === 'dead' && verdict.disable ? { disableReason: verdict.reason } : {}),
      disableRule: this.opts.disableRule,
      maxAttempts: this.opts.policy.maxAttempts,
    };
  }

  /** Logs a dropped outcome; tells of an endpoint the outcome disabled. */
  private recorded(c: ClaimedAttempt, out: RecordedOutcome): void {
    if (!out.recorded) {
      this.log.info({ delivery: c.deliveryId, attempt: c.attemptNumber }, 'webhooks dispatcher: outcome dropped (delivery cancelled, or its lease passed to another replica)');
      return;
    }
    if (out.disabled) {
      this.log.warn({ webhook: c.webhookId, reason: out.disabled.disabledReason }, 'webhook endpoint disabled');
      this.opts.onDisabled(c.webhookId, out.disabled.disabledReason);
      // The endpoint.disabled event it queued is due now.
      this.wake();
    }
  }
}

/** Additional data binding a secret's ciphertext to its webhook (not to a slot: rotation moves the current ciphertext to the previous one as is). */
export const aadFor = (webhookId: string): string => `gantry.webhooks/${webhookId}`;

/** Additional data binding the sealed header values to their webhook, apart from its secrets (neither decrypts as the other). */
export const headersAadFor = (webhookId: string): string => `${aadFor(webhookId)}/headers`;
