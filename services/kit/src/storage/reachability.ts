import pg from 'pg';

/**
 * The database did not answer its reachability probe: statements are refused at once (UNAVAILABLE,
 * retry with backoff) instead of waiting on connections that a network partition has silenced.
 */
export class DatabaseUnreachableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DatabaseUnreachableError';
  }
}

export interface ReachabilityOptions {
  url: string;
  /** PostgreSQL's application_name for the probe's connection (postgres.ts). */
  applicationName?: string;
  /** How often the probe runs. */
  intervalMs: number;
  /** A probe not answered within this long (connecting included) marks the database unreachable. */
  timeoutMs: number;
  /** Called once each time the database turns unreachable: cut the connections statements wait on. */
  onUnreachable(): void;
}

/**
 * Whether PostgreSQL answers, judged by `SELECT 1` on a connection of its own every `intervalMs`.
 *
 * When PostgreSQL is down or restarting, connections are refused or reset and statements fail at
 * once by themselves. A network partition refuses nothing: TCP retransmits, and a statement (or a
 * pool connection being opened) waits for its answer until the socket gives up, minutes later. So
 * a probe that goes unanswered for `timeoutMs` marks the database unreachable: from then on every
 * statement is refused at once, the connections in flight are cut (their callers get UNAVAILABLE
 * instead of running out their deadline), and the probe keeps trying until an answer comes back.
 * Its own connection keeps it clear of the pool: a pool busy with long statements is not a
 * database that does not answer.
 */
export class Reachability {
  private probeClient: Promise<pg.Client> | undefined;
  private unreachable: DatabaseUnreachableError | undefined;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: ReachabilityOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.probe().catch(() => {}), this.opts.intervalMs);
    this.timer.unref();
  }

  /** Throws while the database is marked unreachable; statements call this before they start. */
  assertReachable(): void {
    if (this.unreachable) throw this.unreachable;
  }

  /**
   * Probes now (or joins the probe already running) and throws when the database does not answer
   * in time. Readiness calls this, so NOT_SERVING and the refusal of statements agree.
   */
  probe(): Promise<void> {
    this.probing ??= this.probeOnce().finally(() => (this.probing = undefined));
    return this.probing;
  }

  private async probeOnce(): Promise<void> {
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    const select = (async () => {
      const client = await this.connection();
      await client.query('SELECT 1');
      answered = true;
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        // The answer may be read in this same turn of the event loop, after the timers: a stalled
        // loop (a long GC pause) must not pass for a silent database. setImmediate runs after the
        // pending socket reads, so an answer that has arrived is seen first.
        () => setImmediate(() => (answered ? undefined : reject(new DatabaseUnreachableError(`the database did not answer within ${this.opts.timeoutMs} ms (database.pingTimeoutMs)`)))),
        this.opts.timeoutMs,
      );
    });
    try {
      await Promise.race([select, timeout]);
      this.unreachable = undefined;
    } catch (err) {
      select.catch(() => {});
      this.dropConnection();
      if (!this.unreachable && !this.closed) {
        this.unreachable = err instanceof DatabaseUnreachableError ? err : new DatabaseUnreachableError(`the database does not answer: ${(err as Error).message}`, { cause: err });
        this.opts.onUnreachable();
      }
      throw this.unreachable ?? err;
    } finally {
      clearTimeout(timer);
    }
  }

  private connection(): Promise<pg.Client> {
    if (this.probeClient) return this.probeClient;
    const client = new pg.Client({ connectionString: this.opts.url, ...(this.opts.applicationName ? { application_name: this.opts.applicationName } : {}), connectionTimeoutMillis: this.opts.timeoutMs, keepAlive: true });
    const opened = client.connect().then(() => client);
    const forget = () => {
      if (this.probeClient === opened) this.probeClient = undefined;
    };
    // An 'error' nobody hears would end the process; the probe in flight fails by itself.
    client.on('error', forget);
    client.on('end', forget);
    opened.catch(forget);
    this.probeClient = opened;
    return opened;
  }

  /** Drops the probe's connection without waiting for the server: in a partition nothing would come back. */
  private dropConnection(): void {
    const opened = this.probeClient;
    this.probeClient = undefined;
    void opened?.then((client) => destroyConnection(client)).catch(() => {});
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const client = await this.probeClient?.catch(() => undefined);
    this.probeClient = undefined;
    if (client) destroyConnection(client);
  }
}

/**
 * Closes a client's socket at once. `client.end()` would send Terminate and wait for the server to
 * close, which a partition never lets happen. pg itself cuts a pipelined connection this way when
 * a query times out; its statements in flight fail with "Connection terminated unexpectedly".
 */
export function destroyConnection(client: pg.Client): void {
  (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}
