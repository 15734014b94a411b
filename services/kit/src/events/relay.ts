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

/**
 * The SQL of one sink, over the sink's own columns of the outbox. Statements that wait for row locks
 * (done, release, prune) take them in seq order, as claims do: replicas marking overlapping batches
 * for the two sinks would otherwise lock in heap order and could deadlock (one batch then fails
 * and is sent again).
 */
function sinkSql(schema: string, sink: RelaySink['name']) {
  const table = `${schema}.outbox`;
  const [done, lease] = [`${sink}_done_at`, `${sink}_lease_until`];
  const other = sink === 'log' ? 'webhooks_done_at' : 'log_done_at';
  const inSeqOrder = (where: string) => `seq IN (SELECT seq FROM ${table} WHERE seq = ANY($1::bigint[])${where} ORDER BY seq FOR UPDATE)`;
  return {
    // SKIP LOCKED: replicas claiming at the same moment take different rows instead of waiting.
    // It also skips rows the other sink's statements have locked (a row lock covers every
    // column), which is why one relay runs its sinks' statements one at a time (OutboxRelay.turn).
    claim: `UPDATE ${table} SET ${lease} = $2
             WHERE seq IN (SELECT seq FROM ${table}
                            WHERE ${done} IS NULL AND (${lease} IS NULL OR ${lease} < $1)
                            ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
            RETURNING seq, event_id, event_type, payload, trace_context, created_at`,
    done: `UPDATE ${table} SET ${done} = $2, ${lease} = NULL WHERE ${inSeqOrder('')}`,
    release: `UPDATE ${table} SET ${lease} = NULL WHERE ${inSeqOrder(` AND ${done} IS NULL`)}`,
    // Runs after the sink's own commit: whichever sink commits last sees both marks and deletes.
    prune: `DELETE FROM ${table} WHERE ${inSeqOrder(` AND ${done} IS NOT NULL AND ${other} IS NOT NULL`)}`,
    // For the operator's log lines: how many wait for this sink (counted up to a bound).
    waiting: `SELECT count(*)::int AS n FROM (SELECT 1 FROM ${table} WHERE ${done} IS NULL LIMIT ${MAX_COUNTED}) w`,
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

/** What one sink's loop carries from batch to batch: its backoff and the outage it is in, if any. */
interface SinkLoop {
  sink: RelaySink;
  sql: ReturnType<typeof sinkSql>;
  backoff: Backoff;
  /** When the current outage began (relay clock); undefined while the sink is reached. */
  failingSince?: number;
  lastError: string;
}

function describe(err: unknown): string {
  const e = err as { code?: number; details?: string; message?: string };
  return e.details !== undefined ? `gRPC status ${e.code}: ${e.details}` : (e.message ?? String(err));
}

/**
 * Sends a service's outbox to its sinks, each sink on its own loop so an outage of one does not
 * hold up the other: claim a batch (a lease, so replicas share the work), send it, mark it sent,
 * delete rows every sink has sent. A failed send releases the batch and backs off; nothing is
 * lost and, since sinks are idempotent on event ids, nothing is duplicated by a re-send.
 */
export class OutboxRelay {
  private readonly stopping = new AbortController();
  private readonly loops: Promise<void>[] = [];
  /** Cuts every sink loop's idle sleep short when this process commits events. */
  private readonly wakeup: Wakeup;
  private readonly clock: Clock;
  private readonly random: () => number;
  /**
   * The outbox statements of this relay's sinks, one at a time. Both sinks lock the same rows, and a
   * claim skips locked rows: overlapping with the other sink's claim or mark, it would send later
   * rows first and leave the skipped ones, just committed and woken for, until the next poll.
   */
  private turn: Promise<unknown> = Promise.resolve();
  /** Events each sink has had accepted by this process (tests and logs). */
  readonly sent: Record<string, number> = {};
  private readonly metrics = relayMetrics();

  constructor(private readonly opts: RelayOptions) {
    this.clock = opts.clock ?? realClock;
    this.wakeup = new Wakeup(this.clock);
    this.random = opts.random ?? Math.random;
  }

  start(): void {
    for (const sink of this.opts.sinks) {
      this.sent[sink.name] = 0;
      this.loops.push(this.run(sink));
    }
  }

  /** Events were committed: look now rather than at the next poll. */
  wake(): void {
    this.wakeup.wake();
  }

  /** Stops claiming; waits for batches in flight (each bounded by the sinks' call deadlines). */
  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.loops);
  }

  private async run(sink: RelaySink): Promise<void> {
    const { signal } = this.stopping;
    const loop: SinkLoop = { sink, sql: sinkSql(this.opts.schema, sink.name), backoff: new Backoff(this.opts.minBackoffMs, this.opts.maxBackoffMs, this.random, RETRY_JITTER), lastError: '' };
    while (!signal.aborted) {
      // A wake-up after this mark (one that arrives while a batch is in flight) skips the idle sleep,
      // so the loop claims again at once.
      const mark = this.wakeup.mark;
      let events: RelayedEvent[];
      try {
        events = await this.exclusive(() => this.claim(loop.sql.claim));
      } catch (err) {
        this.opts.log.warn({ sink: sink.name, err: describe(err) }, 'outbox relay cannot read its outbox; retrying');
        await this.clock.sleep(this.opts.pollIntervalMs, signal);
        continue;
      }
      if (events.length === 0) await this.wakeup.sleep(this.opts.pollIntervalMs, { since: mark, signal });
      else await this.relayBatch(loop, events);
    }
  }

  /** Sends one claimed batch and marks it sent; a failed send releases the batch and backs off. */
  private async relayBatch(loop: SinkLoop, events: RelayedEvent[]): Promise<void> {
    const { sink, sql } = loop;
    const seqs = events.map((e) => e.seq.toString());
    try {
      await this.send(sink, events);
      await this.exclusive(async () => {
        await this.opts.db.query(sql.done, [seqs, new Date(this.clock.now())]);
        await this.opts.db.query(sql.prune, [seqs]);
      });
    } catch (err) {
      await this.exclusive(() => this.opts.db.query(sql.release, [seqs])).catch(() => {});
      await this.backOff(loop, err);
      return;
    }
    this.sent[sink.name]! += events.length;
    const attributes = { 'gantry.outbox': this.opts.schema, 'gantry.sink': sink.name };
    this.metrics.sent.add(events.length, attributes);
    const ackedMs = this.clock.now();
    for (const e of events) if (e.createdAt) this.metrics.lag.record(ackedMs - e.createdAt.getTime(), attributes);
    if (loop.failingSince !== undefined) {
      this.opts.log.info({ sink: sink.name, down_ms: this.clock.now() - loop.failingSince }, `outbox relay reaches ${sink.name} again; sending the events that waited`);
    }
    loop.failingSince = undefined;
    loop.backoff.reset();
    // Under load, let events gather for a moment rather than paying a claim, two calls and
    // two updates for every one or two (Kafka's linger.ms). After an idle spell the first
    // event goes at once, so a quiet system gets no added delay.
    if (events.length < this.opts.batchSize && this.opts.lingerMs > 0) await this.clock.sleep(this.opts.lingerMs, this.stopping.signal);
  }

  /** Counts a failed send, warns once per outage (and per new error), and sleeps the next backoff delay. */
  private async backOff(loop: SinkLoop, err: unknown): Promise<void> {
    const { sink, sql } = loop;
    const message = describe(err);
    this.metrics.failures.add(1, { 'gantry.outbox': this.opts.schema, 'gantry.sink': sink.name });
    const delayMs = loop.backoff.next();
    if (loop.failingSince === undefined || message !== loop.lastError) {
      const waiting = await this.opts.db.query<{ n: number }>(sql.waiting).then((r) => Number(r.rows[0]?.n), () => undefined);
      this.opts.log.warn(
        { sink: sink.name, err: message, retry_in_ms: loop.backoff.nominalMs, waiting_events: waiting, waiting_events_at_least: waiting === MAX_COUNTED },
        `outbox relay cannot send events to ${sink.name}; they stay in the outbox and are retried with backoff (check that ${sink.name} is running and reachable)`,
      );
    }
    loop.failingSince ??= this.clock.now();
    loop.lastError = message;
    await this.clock.sleep(delayMs, this.stopping.signal);
  }

  /** Runs `fn` once the statements queued before it have finished (see `turn`). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.turn.then(fn, fn);
    this.turn = run.catch(() => {});
    return run;
  }

  private async claim(claimSql: string): Promise<RelayedEvent[]> {
    const nowMs = this.clock.now();
    const { rows } = await this.opts.db.query<{ seq: string; event_id: string; event_type: string; payload: Buffer; trace_context: Record<string, string> | string; created_at: Date | string }>(claimSql, [
      new Date(nowMs),
      new Date(nowMs + this.opts.leaseMs),
      this.opts.batchSize,
    ]);
    return rows
      .map((r) => ({
        seq: BigInt(r.seq),
        id: r.event_id,
        type: r.event_type,
        payload: Buffer.from(r.payload),
        traceContext: typeof r.trace_context === 'string' ? (JSON.parse(r.trace_context) as Record<string, string>) : r.trace_context,
        createdAt: new Date(r.created_at),
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
