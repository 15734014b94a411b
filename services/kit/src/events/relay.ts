import { context, metrics, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Database } from '../storage/database.js';
import type { Logger } from '../logger.js';
import { Backoff, realClock, Wakeup, type Clock, type Jitter } from '../time/index.js';

/** One outbox row as the relay hands it to a sink. */
export interface RelayedEvent {
  seq: bigint;
  id: string;
  type: string;
  /** The binary gantry.events.v1.Event. */
  payload: Buffer;
  /** W3C trace context to send with the event (the relay span's when the event's trace is sampled). */
  traceContext: Record<string, string>;
  /** When its transaction wrote it (the relay's lag is measured from here). */
  createdAt?: Date;
}

/** Where events go: the log (audit trail) or webhooks (subscribers). */
export interface RelaySink {
  readonly name: 'log' | 'webhooks';
  /**
   * Sends `events` in order and resolves once the peer has durably accepted all of them. Must be
   * idempotent on the event id: after a crash or a timeout the same events are sent again.
   */
  send(events: readonly RelayedEvent[]): Promise<void>;
}

export interface RelayOptions {
  db: Database;
  /** The schema whose `outbox` table is relayed. */
  schema: string;
  sinks: readonly RelaySink[];
  log: Logger;
  /** Rows one claim takes at most (one call to each sink). */
  batchSize: number;
  /** How often an idle relay looks for rows (a commit in this process wakes it sooner; other replicas' rows wait for this). */
  pollIntervalMs: number;
  /** A claimed batch not marked sent within this long is presumed lost (crashed replica) and claimed again. */
  leaseMs: number;
  /** After a batch smaller than batchSize, wait this long before the next claim so a busy outbox sends fuller batches. */
  lingerMs: number;
  /** Retry delay after a failed send: doubles from min to max, with ±20% jitter. */
  minBackoffMs: number;
  maxBackoffMs: number;
  /** The relay's time: its sleeps and its leases (default the real clock; tests pass a FakeClock). */
  clock?: Clock;
  random?: () => number;
}

type SinkName = RelaySink['name'];
const SINK_NAMES: readonly SinkName[] = ['log', 'webhooks'];

/**
 * The relay's SQL over `<schema>.outbox`. One claim takes rows for every sink that is not backing
 * off (a lease in both sinks' lease columns, which replicas of the per-sink relay of earlier
 * versions respect too), and one statement finishes a batch: rows every sink now has are deleted,
 * the others get the marks of the sinks that took them. So a row costs three writes (insert, claim,
 * delete) instead of a claim and a mark per sink and a delete. Statements that wait for row locks
 * take them in seq order, as claims do, so that replicas cannot deadlock.
 */
function relaySql(schema: string) {
  const table = `${schema}.outbox`;
  const leaseFree = SINK_NAMES.map((sink) => `(${sink}_lease_until IS NULL OR ${sink}_lease_until < $1)`).join(' AND ');
  const inSeqOrder = (where: string) => `seq IN (SELECT seq FROM ${table} WHERE seq = ANY($1::bigint[])${where} ORDER BY seq FOR UPDATE)`;
  /**
   * The claim for a set of active sinks: the oldest rows at least one of them has yet to receive, up
   * to the first row another claim holds. Sinks get events in outbox order across replicas, because
   * a batch goes only once every earlier batch has been finished (or its lease has run out): while
   * replica A sends rows 1-5, replica B claims nothing rather than rows 6-10, which could reach the
   * log first. The head is read FOR UPDATE without SKIP LOCKED: a claim that meets a row another
   * claim is leasing waits for that statement (milliseconds, never a send), and PostgreSQL then
   * re-reads the row as committed, lease included; a plain snapshot read would miss that lease.
   */
  const claim = (active: readonly SinkName[]) => `WITH head AS MATERIALIZED (
               SELECT seq, ${leaseFree} AS free FROM ${table}
                WHERE ${active.map((sink) => `${sink}_done_at IS NULL`).join(' OR ')}
                ORDER BY seq LIMIT $3 FOR UPDATE),
             claimable AS (
               SELECT seq FROM head w WHERE w.free AND NOT EXISTS (SELECT 1 FROM head held WHERE NOT held.free AND held.seq < w.seq))
     UPDATE ${table} t SET log_lease_until = $2, webhooks_lease_until = $2 FROM claimable c WHERE t.seq = c.seq
    RETURNING t.seq, t.event_id, t.event_type, t.payload, t.trace_context, t.created_at, t.log_done_at IS NOT NULL AS log_done, t.webhooks_done_at IS NOT NULL AS webhooks_done`;
  const claims = new Map<string, string>();
  for (const active of [['log'], ['webhooks'], ['log', 'webhooks']] as const) claims.set(active.join('+'), claim(active));
  return {
    claim: (active: readonly SinkName[]) => claims.get(active.join('+'))!,
    // $2, $3: whether log and webhooks took this batch; $4: now. The rows are locked first, in seq
    // order, and read as they are once locked; rows every sink now has are deleted, the others
    // marked for the sinks that took them and released.
    finish: `WITH locked AS (
               SELECT seq, log_done_at IS NOT NULL OR $2 AS log_has, webhooks_done_at IS NOT NULL OR $3 AS webhooks_has
                 FROM ${table} WHERE seq = ANY($1::bigint[]) ORDER BY seq FOR UPDATE),
             gone AS (
               DELETE FROM ${table} t USING locked l WHERE t.seq = l.seq AND l.log_has AND l.webhooks_has RETURNING t.seq)
             UPDATE ${table} t SET log_done_at = CASE WHEN $2 THEN coalesce(t.log_done_at, $4) ELSE t.log_done_at END,
                                   webhooks_done_at = CASE WHEN $3 THEN coalesce(t.webhooks_done_at, $4) ELSE t.webhooks_done_at END,
                                   log_lease_until = NULL, webhooks_lease_until = NULL
               FROM locked l WHERE t.seq = l.seq AND NOT (l.log_has AND l.webhooks_has)`,
    // A batch no sink took: its lease is given up so the rows go again at once.
    release: `UPDATE ${table} SET log_lease_until = NULL, webhooks_lease_until = NULL WHERE ${inSeqOrder('')}`,
    // For the operator's log lines: how many wait for a sink (counted up to a bound).
    waiting: (sink: SinkName) => `SELECT count(*)::int AS n FROM (SELECT 1 FROM ${table} WHERE ${sink}_done_at IS NULL LIMIT ${MAX_COUNTED}) w`,
  };
}

/**
 * What operators watch: events sent, failed calls, and how long after its commit an event reached
 * each sink. Made per relay, after the runtime has started the SDK: the metrics API has no proxy, so
 * a meter taken at import time would stay a no-op.
 */
function relayMetrics() {
  const meter = metrics.getMeter('gantry');
  return {
    sent: meter.createCounter('gantry.outbox.events_sent', { description: 'Events a sink acknowledged' }),
    failures: meter.createCounter('gantry.outbox.send_failures', { description: 'Relay calls that failed (the batch is retried with backoff)' }),
    lag: meter.createHistogram('gantry.outbox.relay_lag', { unit: 'ms', description: 'From the commit that wrote an event to its sink acknowledging it' }),
  };
}

/** Waiting events are counted up to this many for log lines (a count past it reads "at least"). */
const MAX_COUNTED = 100_000;

/** Retry delays are spread ±20% so that replicas whose sink came back do not all call at once. */
const RETRY_JITTER: Jitter = { from: 0.8, spread: 0.4 };

/** What the relay keeps per sink from batch to batch: its backoff and the outage it is in, if any. */
interface SinkState {
  sink: RelaySink;
  backoff: Backoff;
  /** Relay-clock time before which the sink is not called again (backing off); 0 when it is reached. */
  retryAtMs: number;
  /** When the current outage began (relay clock); undefined while the sink is reached. */
  failingSince?: number;
  lastError: string;
}

/** A claimed row, with which sinks already have it. */
interface ClaimedRow extends RelayedEvent {
  done: Record<SinkName, boolean>;
}

function describe(err: unknown): string {
  const e = err as { code?: number; details?: string; message?: string };
  return e.details !== undefined ? `gRPC status ${e.code}: ${e.details}` : (e.message ?? String(err));
}

/**
 * Sends a service's outbox to its sinks: claim a batch once for every sink that is not backing off
 * (a lease: replicas take turns, one batch in flight per outbox, so that each sink gets the events
 * in outbox order), send it to those sinks at once, then one statement deletes what every sink has
 * and marks the rest. A sink whose call fails backs off and is left out of the
 * claims until its retry is due, so an outage of one does not hold up the other; its rows wait,
 * marked for the sink that has them. Nothing is lost and, since sinks are idempotent on event ids,
 * nothing is duplicated by a re-send. A sink whose call hangs holds its batch until the call's
 * deadline (the sinks' calls have one), and the other sink's next batch with it.
 */
export class OutboxRelay {
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  /** Cuts the loop's idle sleep short when this process commits events. */
  private readonly wakeup: Wakeup;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly sql: ReturnType<typeof relaySql>;
  private readonly sinks: SinkState[];
  /** Events each sink has had accepted by this process (tests and logs). */
  readonly sent: Record<string, number> = {};
  private readonly metrics = relayMetrics();

  constructor(private readonly opts: RelayOptions) {
    this.clock = opts.clock ?? realClock;
    this.wakeup = new Wakeup(this.clock);
    this.random = opts.random ?? Math.random;
    this.sql = relaySql(opts.schema);
    this.sinks = opts.sinks.map((sink) => ({ sink, backoff: new Backoff(opts.minBackoffMs, opts.maxBackoffMs, this.random, RETRY_JITTER), retryAtMs: 0, lastError: '' }));
  }

  start(): void {
    for (const { sink } of this.sinks) this.sent[sink.name] = 0;
    if (this.sinks.length > 0) this.loop = this.run();
  }

  /** Events were committed: look now rather than at the next poll. */
  wake(): void {
    this.wakeup.wake();
  }

  /** Stops claiming; waits for the batch in flight (bounded by the sinks' call deadlines). */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { signal } = this.stopping;
    while (!signal.aborted) {
      // A wake-up after this mark (one that arrives while a batch is in flight) skips the idle sleep,
      // so the loop claims again at once.
      const mark = this.wakeup.mark;
      const nowMs = this.clock.now();
      const active = this.sinks.filter((s) => s.retryAtMs <= nowMs);
      // Every sink is backing off: nothing to do until the first retry is due.
      if (active.length === 0) {
        await this.clock.sleep(Math.min(...this.sinks.map((s) => s.retryAtMs)) - nowMs, signal);
        continue;
      }
      let rows: ClaimedRow[];
      try {
        rows = await this.claim(active.map((s) => s.sink.name));
      } catch (err) {
        this.opts.log.warn({ err: describe(err) }, 'outbox relay cannot read its outbox; retrying');
        await this.clock.sleep(this.opts.pollIntervalMs, signal);
        continue;
      }
      if (rows.length > 0) {
        await this.relayBatch(active, rows);
        // Under load, let events gather for a moment rather than paying a claim, two calls and a
        // finish for every one or two (Kafka's linger.ms). After an idle spell the first event
        // goes at once, so a quiet system gets no added delay.
        if (rows.length < this.opts.batchSize && this.opts.lingerMs > 0) await this.clock.sleep(this.opts.lingerMs, signal);
        continue;
      }
      // Idle: sleep until a wake-up, the next poll, or the first due retry of a sink backing off.
      const retryDueMs = Math.min(...this.sinks.filter((s) => s.retryAtMs > nowMs).map((s) => s.retryAtMs - nowMs));
      await this.wakeup.sleep(Math.min(this.opts.pollIntervalMs, retryDueMs), { since: mark, signal });
    }
  }

  /** Sends one claimed batch to each active sink that lacks some of it, then finishes it in one statement. */
  private async relayBatch(active: SinkState[], rows: ClaimedRow[]): Promise<void> {
    const sends = active.map((state) => ({ state, events: rows.filter((r) => !r.done[state.sink.name]) })).filter((s) => s.events.length > 0);
    const outcomes = await Promise.allSettled(sends.map(({ state, events }) => this.send(state.sink, events)));
    const took = { log: false, webhooks: false };
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'fulfilled') took[sends[i]!.state.sink.name] = true;
    });
    const seqs = rows.map((r) => r.seq.toString());
    try {
      if (took.log || took.webhooks) await this.opts.db.query(this.sql.finish, [seqs, took.log, took.webhooks, new Date(this.clock.now())]);
      else await this.opts.db.query(this.sql.release, [seqs]);
    } catch (err) {
      // The lease runs out and the rows go again: the sinks ignore what they already have.
      this.opts.log.warn({ err: describe(err) }, 'outbox relay cannot mark events sent; they are sent again once their lease has passed');
    }
    for (const [i, outcome] of outcomes.entries()) {
      const { state, events } = sends[i]!;
      if (outcome.status === 'fulfilled') this.succeeded(state, events);
      else await this.failed(state, outcome.reason);
    }
  }

  /** Counts a sink's accepted batch, and says so once when it is reached after an outage. */
  private succeeded(state: SinkState, events: readonly RelayedEvent[]): void {
    const { sink } = state;
    this.sent[sink.name]! += events.length;
    const attributes = { 'gantry.outbox': this.opts.schema, 'gantry.sink': sink.name };
    this.metrics.sent.add(events.length, attributes);
    const ackedMs = this.clock.now();
    for (const e of events) if (e.createdAt) this.metrics.lag.record(ackedMs - e.createdAt.getTime(), attributes);
    if (state.failingSince !== undefined) {
      this.opts.log.info({ sink: sink.name, down_ms: this.clock.now() - state.failingSince }, `outbox relay reaches ${sink.name} again; sending the events that waited`);
    }
    state.failingSince = undefined;
    state.backoff.reset();
    state.retryAtMs = 0;
  }

  /** Counts a failed send, warns once per outage (and per new error), and sets the sink's next retry. */
  private async failed(state: SinkState, err: unknown): Promise<void> {
    const { sink } = state;
    const message = describe(err);
    this.metrics.failures.add(1, { 'gantry.outbox': this.opts.schema, 'gantry.sink': sink.name });
    const delayMs = state.backoff.next();
    if (state.failingSince === undefined || message !== state.lastError) {
      const waiting = await this.opts.db.query<{ n: number }>(this.sql.waiting(sink.name)).then((r) => Number(r.rows[0]?.n), () => undefined);
      this.opts.log.warn(
        { sink: sink.name, err: message, retry_in_ms: state.backoff.nominalMs, waiting_events: waiting, waiting_events_at_least: waiting === MAX_COUNTED },
        `outbox relay cannot send events to ${sink.name}; they stay in the outbox and are retried with backoff (check that ${sink.name} is running and reachable)`,
      );
    }
    state.failingSince ??= this.clock.now();
    state.lastError = message;
    state.retryAtMs = this.clock.now() + delayMs;
  }

  private async claim(active: readonly SinkName[]): Promise<ClaimedRow[]> {
    const nowMs = this.clock.now();
    type Row = { seq: string; event_id: string; event_type: string; payload: Buffer; trace_context: Record<string, string> | string; created_at: Date | string; log_done: boolean; webhooks_done: boolean };
    const { rows } = await this.opts.db.query<Row>(this.sql.claim(active), [new Date(nowMs), new Date(nowMs + this.opts.leaseMs), this.opts.batchSize]);
    return rows
      .map((r) => ({
        seq: BigInt(r.seq),
        id: r.event_id,
        type: r.event_type,
        payload: Buffer.from(r.payload),
        traceContext: typeof r.trace_context === 'string' ? (JSON.parse(r.trace_context) as Record<string, string>) : r.trace_context,
        createdAt: new Date(r.created_at),
        done: { log: r.log_done, webhooks: r.webhooks_done },
      }))
      .sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
  }

  /**
   * Sends a batch in one call. Each event with a trace context gets a PRODUCER span continuing the
   * trace of the call that caused it, and goes to the sink with that span's context, so its webhook
   * deliveries join its trace. The call itself runs in the first traced event's relay span: one RPC can
   * have one parent, so the sink's server span (the log append, the publish) joins the first
   * event's trace; with one event per batch, the usual case below saturation, each trace is whole.
   */
  private async send(sink: RelaySink, events: readonly RelayedEvent[]): Promise<void> {
    const tracer = trace.getTracer('gantry');
    const traced = events.map((event) => {
      if (!event.traceContext.traceparent) return { event, span: undefined, active: undefined };
      const parent = propagation.extract(ROOT_CONTEXT, event.traceContext);
      const span = tracer.startSpan(
        `outbox.relay ${sink.name}`,
        { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'gantry.outbox', 'messaging.destination.name': sink.name, 'messaging.message.id': event.id, 'messaging.batch.message_count': events.length, 'gantry.event.type': event.type } },
        parent,
      );
      const active = trace.setSpan(parent, span);
      const carrier: Record<string, string> = {};
      propagation.inject(active, carrier);
      return { event: { ...event, traceContext: carrier }, span, active };
    });
    try {
      await context.with(traced.find((t) => t.active)?.active ?? ROOT_CONTEXT, () => sink.send(traced.map((t) => t.event)));
    } catch (err) {
      for (const t of traced) t.span?.setStatus({ code: SpanStatusCode.ERROR, message: describe(err) });
      throw err;
    } finally {
      for (const t of traced) t.span?.end();
    }
  }
}
