// Pieces the fault tests share: a `gantry serve` process killed and restarted on the same port and
// data, and calls retried with the same request (same nonce, idempotency key or event id) when
// their outcome is unknown because the server died under them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { status, type ServiceError } from '@grpc/grpc-js';
import { openPostgres } from '@gantry/kit';
import { freshPostgresDatabase } from '@gantry/test-support/databases';
import { gantryBundle, startGantry, type GantryServer } from '../support/gantry-process.js';
import { PlatformClients } from '../platform/support.js';

/** Kills of each process under load (issue 20). */
export const KILLS = 10;
/** Concurrent clients of each load. */
export const WORKERS = 6;
/** The longest a kill test's load may take (its ten kills and restarts included). */
export const LOAD_TIMEOUT_MS = 100_000;

/** Codes that leave a call's outcome unknown: the server died (or was not up yet) while it ran. */
const OUTCOME_UNKNOWN = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED]);
/** Tries of one request before a test gives up on it (each waits for the server to be up again). */
const MAX_TRIES = 50;
/** Starts of a restart before a test gives up on it (only a port taken meanwhile is tried again). */
const START_ATTEMPTS = 5;
/** Pause between tries while the restarted server's channel reconnects. */
const RETRY_PAUSE_MS = 100;

/**
 * `gantry serve --target=<target>` that a test kills with SIGKILL and restarts on the same port,
 * data dir and database. `up` resolves while a server runs and is replaced at each kill.
 */
export class KilledProcess {
  server: GantryServer | undefined;
  port = 0;
  readonly dataDir = mkdtempSync(join(tmpdir(), 'gantry-faults-'));
  kills = 0;
  /** Milliseconds from spawn to "gantry is serving", per start. */
  readonly startMs: number[] = [];
  private upNow: Promise<void> = Promise.resolve();
  private markUp: () => void = () => {};
  /** Fails the callers waiting on `up` when a restart fails: they would otherwise wait forever. */
  private markFailed: (err: unknown) => void = () => {};

  constructor(
    readonly target: string,
    private readonly env: NodeJS.ProcessEnv,
    /** The bundled program (gantryBundle): ten restarts under tsx cost a file about 20 s more. */
    private readonly bundle?: string,
  ) {}

  /** Resolves when a server is serving (now, or after the restart under way). */
  get up(): Promise<void> {
    return this.upNow;
  }

  async start(): Promise<GantryServer> {
    const t0 = performance.now();
    for (let attempt = 1; ; attempt++) {
      try {
        this.server = await startGantry(this.target, { ...this.env, GANTRY_DATA_DIR: this.dataDir, GANTRY_LISTEN_PORT: String(this.port) }, { bundle: this.bundle });
        break;
      } catch (err) {
        // The port is the kernel's pick from the ephemeral range: while the process was down, an
        // outgoing connection (a client reconnecting to it, say) may have been given the same
        // number. Rare; it frees again when that connection fails.
        if (attempt < START_ATTEMPTS && /EADDRINUSE/.test(String(err))) {
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        this.markFailed(err);
        throw err;
      }
    }
    this.startMs.push(performance.now() - t0);
    this.port = this.server.port;
    this.markUp();
    return this.server;
  }

  /** SIGKILL, then wait for the exit; `up` stays pending until the next start(). */
  async kill(): Promise<void> {
    const child = this.server!.child;
    this.upNow = new Promise((resolve, reject) => {
      this.markUp = resolve;
      this.markFailed = reject;
    });
    // Nobody may be waiting when a restart fails; the start() caller gets the error anyway.
    this.upNow.catch(() => {});
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    if (child.signalCode !== 'SIGKILL') throw new Error(`${this.target} exited with ${child.exitCode} before the kill`);
    this.kills++;
  }

  /** The log lines of the server now running. */
  logs(): string {
    return this.server?.logs.join('') ?? '';
  }

  async close(): Promise<void> {
    if (this.server && this.server.child.exitCode === null && this.server.child.signalCode === null) await this.server.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * Sends `call()` (which must send the same request each time) until it succeeds: an answer with
 * an outcome-unknown code waits for the server to be up and tries again. Other errors are thrown.
 * `retries` counts the tries after the first, across calls.
 */
export async function untilAnswered<T>(proc: KilledProcess, call: () => Promise<T>, counters: { retries: number }): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await call();
    } catch (err) {
      const code = (err as ServiceError).code;
      if (!OUTCOME_UNKNOWN.has(code) || tries >= MAX_TRIES) throw err;
      counters.retries++;
      await proc.up;
      await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
    }
  }
}

/**
 * Runs `workers` until `cycles` kills are done: each time `acked()` has grown by `acksPerCycle`
 * since the last start, the process is killed and restarted. Workers see `stopping` turn true
 * after the last restart and the load has run on it for one more `acksPerCycle`.
 */
export async function killCycles(
  proc: KilledProcess,
  opts: { cycles: number; acksPerCycle: number; acked: () => number; timeoutMs: number },
  workers: (stopping: () => boolean) => Promise<unknown>[],
): Promise<{ downMs: number[] }> {
  let stop = false;
  const running = Promise.all(workers(() => stop));
  const downMs: number[] = [];
  const deadline = Date.now() + opts.timeoutMs;
  const waitForAcks = async (target: number) => {
    while (opts.acked() < target) {
      if (Date.now() > deadline) throw new Error(`the load acknowledged ${opts.acked()} calls, short of ${target}, within ${opts.timeoutMs} ms (${proc.kills} kills done)`);
      await Promise.race([running, new Promise((r) => setTimeout(r, 20))]);
    }
  };
  try {
    for (let cycle = 0; cycle < opts.cycles; cycle++) {
      await waitForAcks(opts.acked() + opts.acksPerCycle);
      const t0 = performance.now();
      await proc.kill();
      await proc.start();
      downMs.push(performance.now() - t0);
    }
    await waitForAcks(opts.acked() + opts.acksPerCycle);
  } finally {
    stop = true;
    await running;
  }
  return { downMs };
}

/** "min–max (median)" of a list of milliseconds, for diagnostics. */
export function spread(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const r = (x: number | undefined) => Math.round(x ?? 0);
  return `${r(sorted[0])}–${r(sorted[sorted.length - 1])} ms (median ${r(sorted[Math.floor(sorted.length / 2)])})`;
}

/** A fresh database, a process of `target` on it, clients and an SQL connection; all removed by `cleanups`. */
export async function killedTarget(target: string, env: NodeJS.ProcessEnv, cleanups: (() => Promise<unknown>)[]) {
  const database = await freshPostgresDatabase(`t_kill_${target}`);
  cleanups.push(() => database.drop());
  const bundle = await gantryBundle();
  cleanups.push(async () => rmSync(bundle.dir, { recursive: true, force: true }));
  const proc = new KilledProcess(target, { GANTRY_DATABASE_URL: database.url, GANTRY_DATABASE_POOL_SIZE: '4', GANTRY_RATE_LIMIT_POINTS: '1000000', ...env }, bundle.script);
  cleanups.push(() => proc.close());
  await proc.start();
  const at = `127.0.0.1:${proc.port}`;
  const pki = (f: string) => join(proc.dataDir, 'pki', f);
  const clients = new PlatformClients({ settlement: at, approvals: at, webhooks: at, log: at }, { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' }, proc.dataDir);
  cleanups.push(async () => clients.close());
  const sql = await openPostgres({ url: database.url, poolSize: 1, statementTimeoutMs: 30_000 });
  cleanups.push(() => sql.close());
  return { proc, clients, sql };
}
