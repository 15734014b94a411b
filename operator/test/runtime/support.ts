import net from 'node:net';
import type { Logger } from '@gantry/kit';
import { KubeConfig } from '@kubernetes/client-node';

/** A TCP proxy in front of the API server that a test can cut (every connection dropped, new ones refused) and restore. */
export class CuttableProxy {
  private readonly sockets = new Set<net.Socket>();
  private cut = false;
  private readonly server: net.Server;
  private constructor(target: URL) {
    this.server = net.createServer((client) => this.accept(client, target));
  }

  /** The port the proxy listens on (127.0.0.1). */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  static async start(target: URL): Promise<CuttableProxy> {
    const proxy = new CuttableProxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  private accept(client: net.Socket, target: URL): void {
    if (this.cut) return void client.destroy();
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  /** Drops every open connection and refuses new ones until restore(). */
  sever(): void {
    this.cut = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.cut = false;
  }

  async close(): Promise<void> {
    this.sever();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The admin kubeconfig, optionally pointed at a proxy on 127.0.0.1:port instead of the server. */
export function loadKubeConfig(path: string, proxyPort?: number): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  if (proxyPort === undefined) return kc;
  const proxied = new KubeConfig();
  proxied.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${proxyPort}` })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return proxied;
}

/** The API server's address from a kubeconfig. */
export function serverUrl(kc: KubeConfig): URL {
  return new URL(kc.getCurrentCluster()!.server);
}

/** Polls cond every 25 ms until it holds; fails with what after timeoutMs. */
export async function eventually(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A logger that writes nothing (GANTRY_TEST_LOG=1: JSON lines on stderr). Not the kit's
 * silentLogger: importing the kit costs each test process seconds.
 */
export function testLogger(bindings: Record<string, unknown> = {}): Logger {
  const write = (level: string) => (obj: unknown, msg?: string) => {
    if (process.env.GANTRY_TEST_LOG === '1') process.stderr.write(`${JSON.stringify({ level, ...bindings, ...(typeof obj === 'object' ? obj : { msg: obj }), msg })}\n`);
  };
  const log = { trace: write('trace'), debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error'), fatal: write('fatal'), child: (more: Record<string, unknown>) => testLogger({ ...bindings, ...more }) };
  return log as unknown as Logger;
}
