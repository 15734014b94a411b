import net from 'node:net';

/**
 * A TCP proxy in front of a server (the Kubernetes API server, PostgreSQL) that a test can cut
 * (every connection dropped, new ones refused) and restore: an outage without stopping the server.
 */
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
