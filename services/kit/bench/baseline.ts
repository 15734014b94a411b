// The unit every benchmark compares with: a bare grpc-js unary Echo (no TLS, no interceptors, no
// database), measured in the same run by the same Node load driver as the calls it is compared
// with, so a ratio such as "CreditDraw costs 6x a bare call in server CPU" holds on any machine.
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { EchoClient, type EchoRequest, type EchoResponse } from '@gantry/test-support/echo';
import { pinProcess, repoRoot, startChild } from './lib.js';
import { drive, type RunResult } from './load.js';

export interface BaselineOptions {
  /** Concurrent clients (one call in flight each), on one connection as the measured runs use. */
  clients: number;
  /** Calls per client in the measured run (a warm-up of a fifth as many runs first). */
  callsPerClient: number;
  /** CPU the bare server is pinned to (the measured servers' CPU, 0). */
  cpu?: number;
}

/** Starts a bare grpc-js Echo server, drives it, stops it: the same-run baseline of server CPU per call. */
export async function bareEchoBaseline(opts: BaselineOptions): Promise<RunResult> {
  const server = await startChild<{ port: number }>(join(repoRoot, 'services/kit/bench/echo-server.ts'), ['bare']);
  pinProcess(server.child.pid!, opts.cpu ?? 0);
  const client = new EchoClient(`127.0.0.1:${server.ready.port}`, credentials.createInsecure());
  const call = client.Echo!.bind(client) as (req: EchoRequest, cb: (err: Error | null, res: EchoResponse) => void) => void;
  const echo = (req: EchoRequest) => new Promise<EchoResponse>((resolve, reject) => call(req, (err, res) => (err ? reject(err) : resolve(res))));
  const requests = (n: number) => Array.from({ length: opts.clients }, () => Array.from({ length: n }, (): EchoRequest => ({ message: 'hello gantry', delayMs: 0, count: 0, fail: '' })));
  try {
    await drive(requests(Math.max(1, Math.floor(opts.callsPerClient / 5))), echo, { serverPid: server.child.pid! });
    return await drive(requests(opts.callsPerClient), echo, { serverPid: server.child.pid! });
  } finally {
    client.close();
    await server.stop();
  }
}

/** "a / b = r x" with both figures, for the summaries every benchmark prints. */
export function ratioLine(label: string, value: number, baseline: number, unit: string, goal?: { max?: number; min?: number }): string {
  const ratio = value / baseline;
  const met = goal === undefined ? '' : (goal.max !== undefined ? ratio <= goal.max : ratio >= (goal.min ?? 0)) ? ' (goal met)' : ' (goal NOT met)';
  const goalText = goal === undefined ? '' : goal.max !== undefined ? `, goal <= ${goal.max}` : `, goal >= ${goal.min}`;
  return `  ${label}: ${fmt(value)} ${unit} vs ${fmt(baseline)} ${unit} = ${ratio.toFixed(2)}${goalText}${met}`;
}

const fmt = (x: number) => (Math.abs(x) >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));
