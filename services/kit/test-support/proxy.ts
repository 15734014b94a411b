import net from 'node:net';

/**
 * A TCP proxy in front of a server (the Kubernetes API server, PostgreSQL) that a test can cut
 * (every connection dropped, new ones refused) and restore: an outage without stopping the server.
 */
export class CuttableProxy {
  private readonly sockets = new Set<net.Socket>();
  private cut = false;
  private held = false;
  /** Connections accepted while held, connected upstream on restore(). */
  private readonly waiting: net.Socket[] = [];
  private readonly target: URL;
  private readonly server: net.Server;
  private constructor(target: URL) {
    this.target = target;
    this.server = net.createServer((client) => this.accept(client, target));
  }

  /** The port the proxy listens on (127.0.0.1). */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** `url` (the target's, with credentials and database) with its host and port replaced by the proxy's. */
  through(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  static async start(target: URL): Promise<CuttableProxy> {
    const proxy = new CuttableProxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  private accept(client: net.Socket, target: URL): void {
    if (this.cut) return void client.destroy();
    if (this.held) {
      client.pause();
      client.on('error', () => {});
      this.waiting.push(client);
      return;
    }
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
    for (const s of [...this.sockets, ...this.waiting.splice(0)]) s.destroy();
  }

  /**
   * Holds every byte both ways, and new connections, until restore(): a network partition, where
   * TCP retransmits and nothing is refused, so each side just waits (for its own timeouts).
   */
  hold(): void {
    this.held = true;
    for (const s of this.sockets) s.pause();
  }

  /** Ends sever() or hold(): held bytes flow on, held connections go upstream. */
  restore(): void {
    this.cut = false;
    if (!this.held) return;
    this.held = false;
    for (const s of this.sockets) s.resume();
    for (const client of this.waiting.splice(0)) {
      if (client.destroyed) continue;
      client.resume();
      this.accept(client, this.target);
    }
  }

  async close(): Promise<void> {
    this.sever();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
