// The in-cluster client of the cluster tests. It runs in a Pod of the gantry image (which has node)
// as one esbuild bundle (support.ts builds it and copies it in), reaches the services by their
// Services' DNS names with a client certificate and tokens the test hands it, and prints one JSON
// line per outcome on stdout, so the test accounts for every acknowledged write.
//
//   node driver.mjs flow CONFIG      deposit, approve, draw, settle for one wallet
//   node driver.mjs load CONFIG      draws and log appends until a stop file appears, retrying
//                                    UNAVAILABLE with the same request (same nonce / idempotency key)
//   node driver.mjs receive CONFIG   a webhook receiver verifying every delivery's signature
//
// CONFIG is a JSON file (DriverConfig). Nothing here asserts: the test reads the lines.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { status, type ServiceError } from '@grpc/grpc-js';
// The kit's client module only: its index also loads the server side (migrations read at import).
import { bearerMetadata, clientCredentials, peerChannelOptions, unary } from '../../services/kit/src/client.js';
import { logv1, settlementv1 } from '@gantry/proto';
import { SettlementOperator, SettlementWallet } from '@gantry/settlement/client';
import { verifyWebhook } from '@gantry/webhooks/client';

export interface DriverConfig {
  /** PEM files of the driver's client certificate and the platform CA. */
  tls?: { caFile: string; certFile: string; keyFile: string };
  /** `dns:///<service>-headless.<ns>.svc.cluster.local:7443` or a ClusterIP Service name. */
  addresses?: { settlement?: string; log?: string };
  /** Bearer tokens: admin (settlement.admin), credit (settlement.credit), log (log.append log.read). */
  tokens?: { admin?: string; credit?: string; log?: string };
  flow?: { draws: number; drawMinor: number };
  load?: {
    /** Concurrent draw loops (one wallet each) and append loops. */
    drawers: number;
    appenders: number;
    partition: string;
    /** The run stops when this file exists (the test creates it with kubectl exec). */
    stopFile: string;
    /** How long one write is retried while the service answers UNAVAILABLE. */
    retryForMs: number;
  };
  receive?: { port: number; secretFile: string };
}

type Line = Record<string, unknown>;
const print = (line: Line) => process.stdout.write(JSON.stringify(line, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');

const config = (path: string): DriverConfig => JSON.parse(readFileSync(path, 'utf8')) as DriverConfig;

function clients(cfg: DriverConfig) {
  const creds = clientCredentials(cfg.tls!);
  // round_robin over the headless Service's pods, as the platform's own clients do.
  const opts = peerChannelOptions();
  return {
    settlement: cfg.addresses?.settlement ? new settlementv1.SettlementServiceClient(cfg.addresses.settlement, creds, opts) : undefined,
    log: cfg.addresses?.log ? new logv1.LogServiceClient(cfg.addresses.log, creds, opts) : undefined,
  };
}

const RETRIED = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]);

/**
 * Sends one write until it is acknowledged, re-sending the same request (the services make a
 * re-sent nonce or idempotency key a no-op) while the answer is UNAVAILABLE or a deadline, for up to
 * retryForMs. Every failed attempt is printed; throws the last error when it gives up.
 */
async function write<T>(op: string, retryForMs: number, call: () => Promise<T>): Promise<{ res: T; attempts: number }> {
  const deadline = Date.now() + retryForMs;
  for (let attempts = 1; ; attempts++) {
    try {
      return { res: await call(), attempts };
    } catch (err) {
      const code = (err as ServiceError).code;
      print({ k: 'fail', op, code, retried: RETRIED.has(code) && Date.now() < deadline, details: (err as ServiceError).details });
      if (!RETRIED.has(code) || Date.now() >= deadline) throw err;
      await sleep(Math.min(100 * attempts, 1000));
    }
  }
}

/** Deposit, a credit line, draws, settle: what an L2 game session does. */
async function flow(cfg: DriverConfig): Promise<void> {
  const c = clients(cfg).settlement!;
  const wallet = SettlementWallet.generate();
  const admin = bearerMetadata(cfg.tokens!.admin);
  const credit = bearerMetadata(cfg.tokens!.credit);
  const { draws, drawMinor } = cfg.flow!;
  const limit = BigInt(draws * drawMinor);
  await unary(c.deposit, c, { walletAddress: wallet.address, amountMinor: limit * 2n, transferId: `flow-${wallet.address}`, memo: 'cluster test' }, admin);
  // The L2 operator whose key attests the settlement (each flow registers its own).
  const operator = SettlementOperator.generate();
  await unary(c.registerOperatorKey, c, { publicKey: operator.publicKey, name: 'cluster-flow' }, admin);
  const { sessionId } = await unary(c.approveCreditLine, c, wallet.approve(limit), credit);
  print({ k: 'approved', wallet: wallet.address, sessionId });
  // The session as the L2 side knows it from the draws' answers.
  const state = { drawnMinor: 0n, drawCount: 0 };
  for (let i = 0; i < draws; i++) {
    try {
      const res = await unary(c.creditDraw, c, wallet.draw(sessionId, BigInt(drawMinor), `draw ${i}`), credit);
      Object.assign(state, { drawnMinor: res.l2BalanceMinor, drawCount: res.drawCount });
      print({ k: 'draw', wallet: wallet.address, sessionId, transferId: res.transferId, amount: drawMinor });
    } catch (err) {
      print({ k: 'fail', op: 'draw', code: (err as ServiceError).code, details: (err as ServiceError).details });
    }
  }
  const settled = await unary(c.creditSettle, c, operator.cosign(wallet.settle(sessionId, BigInt(draws * drawMinor)), state), credit);
  print({ k: 'settled', wallet: wallet.address, sessionId, outcome: settled.outcome });
  c.close();
}

/** Draws (one wallet per loop) and keyed log appends until the stop file exists. */
async function load(cfg: DriverConfig): Promise<void> {
  const { settlement, log } = clients(cfg);
  const l = cfg.load!;
  const admin = bearerMetadata(cfg.tokens!.admin);
  const credit = bearerMetadata(cfg.tokens!.credit);
  const logMd = bearerMetadata(cfg.tokens!.log);
  const stopped = () => existsSync(l.stopFile);
  const run = randomUUID().slice(0, 8);
  const counts = { draws: 0, appends: 0, gaveUp: 0 };

  const drawer = async (n: number) => {
    const c = settlement!;
    const wallet = SettlementWallet.generate();
    const line = 1_000_000n;
    await write('deposit', l.retryForMs, () => unary(c.deposit, c, { walletAddress: wallet.address, amountMinor: line, transferId: `load-${run}-${n}`, memo: '' }, admin));
    // The signed request is made once and re-sent as it is: its nonce makes a re-send a no-op.
    const approve = wallet.approve(line);
    const { res } = await write('approve', l.retryForMs, () => unary(c.approveCreditLine, c, approve, credit));
    print({ k: 'session', wallet: wallet.address, sessionId: res.sessionId });
    while (!stopped()) {
      const req = wallet.draw(res.sessionId, 1n, 'load');
      try {
        const { res: drawn, attempts } = await write('draw', l.retryForMs, () => unary(c.creditDraw, c, req, credit, 10_000));
        counts.draws++;
        print({ k: 'draw', wallet: wallet.address, sessionId: res.sessionId, transferId: drawn.transferId, drawCount: drawn.drawCount, attempts });
      } catch {
        counts.gaveUp++;
        print({ k: 'gaveup', op: 'draw', wallet: wallet.address });
      }
    }
  };

  const appender = async (n: number) => {
    const c = log!;
    for (let i = 0; !stopped(); i++) {
      const key = `${run}-${n}-${i}`;
      const data = Buffer.from(`cluster load ${key}`);
      try {
        const { res, attempts } = await write('append', l.retryForMs, () => unary(c.append, c, { partition: l.partition, data, idempotencyKey: key }, logMd, 10_000));
        counts.appends++;
        print({ k: 'append', key, seq: res.seq, duplicate: res.duplicate, attempts });
      } catch {
        counts.gaveUp++;
        print({ k: 'gaveup', op: 'append', key });
      }
    }
  };

  print({ k: 'started', run });
  await Promise.all([...Array.from({ length: l.drawers }, (_, i) => drawer(i)), ...Array.from({ length: l.appenders }, (_, i) => appender(i))]);
  print({ k: 'summary', ...counts });
  settlement?.close();
  log?.close();
}

/** A webhook endpoint: 204 for a delivery whose signature verifies with the endpoint's secret, 401 otherwise. */
async function receive(cfg: DriverConfig): Promise<void> {
  const r = cfg.receive!;
  const stats = { valid: 0, invalid: 0, events: [] as { id: string; type: string }[], errors: [] as string[] };
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      try {
        // Re-read per delivery: the operator rotates the Secret the kubelet projects here.
        const secret = readFileSync(r.secretFile, 'utf8').trim();
        const verified = verifyWebhook(req.headers, body, secret);
        const event = JSON.parse(body.toString()) as { type: string };
        stats.valid++;
        stats.events.push({ id: verified.id, type: event.type });
        res.writeHead(204).end();
      } catch (err) {
        stats.invalid++;
        stats.errors.push((err as Error).message);
        res.writeHead(401).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(r.port, '0.0.0.0', resolve));
  print({ k: 'listening', port: r.port });
}

const [mode, file] = process.argv.slice(2);
const modes: Record<string, (cfg: DriverConfig) => Promise<void>> = { flow, load, receive };
if (!mode || !file || !modes[mode]) {
  process.stderr.write('usage: driver.mjs flow|load|receive CONFIG.json\n');
  process.exit(2);
}
modes[mode]!(config(file)).catch((err: unknown) => {
  const e = err as ServiceError;
  print({ k: 'error', message: e.message, code: e.code });
  process.exit(1);
});
