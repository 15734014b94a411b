import type { Logger } from '@gantry/kit';
import { KubeConfig } from '@kubernetes/client-node';

// The TCP proxy tests cut is shared with the kit's tests (PostgreSQL behind it there).
export { CuttableProxy } from '@gantry/test-support/proxy';

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
