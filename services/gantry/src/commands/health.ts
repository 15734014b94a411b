import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { checkHealth, clientCredentials, clientOptions } from '@gantry/kit';
import type { ConnectionOptions } from '../connection.js';
import { loadProgramConfig } from '../config.js';

export interface HealthOptions extends ConnectionOptions {
  service: string;
  plaintext?: boolean;
  timeout: string;
  wait?: boolean;
}

/**
 * `gantry health`: one grpc.health.v1 Check, over mTLS (the service port) or plaintext (the probe
 * port). Prints the status; exits 0 only when SERVING, so it serves as a probe or a `helm test`.
 * --wait keeps trying to reach the server until --timeout, rather than failing at once.
 */
export async function health(opts: HealthOptions): Promise<void> {
  const timeoutMs = Number(opts.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 60_000) throw new Error('--timeout must be a whole number of milliseconds between 100 and 60000');
  let result: Awaited<ReturnType<typeof checkHealth>>;
  if (opts.plaintext) {
    result = await checkHealth(opts.address, credentials.createInsecure(), {}, opts.service, timeoutMs, opts.wait);
  } else {
    const config = loadProgramConfig({ overrides: opts.dataDir ? { dataDir: opts.dataDir } : {} });
    const pki = (f: string) => resolve(config.dataDir, 'pki', f);
    const tls = { caFile: opts.ca ?? pki('ca.crt'), certFile: opts.cert ?? pki('client.crt'), keyFile: opts.key ?? pki('client.key'), serverName: opts.serverName };
    for (const [flag, file] of [['--ca', tls.caFile], ['--cert', tls.certFile], ['--key', tls.keyFile]] as const) {
      if (!existsSync(file)) throw new Error(`${file} does not exist: pass ${flag} (or --plaintext for the probe port)`);
    }
    result = await checkHealth(opts.address, clientCredentials(tls), clientOptions(tls), opts.service, timeoutMs, opts.wait);
  }
  const what = `${opts.service || 'server'} at ${opts.address}`;
  if (result.err) {
    process.stderr.write(`gantry health: ${what}: ${result.err.details || result.err.message} (gRPC status ${result.err.code})\n`);
    process.exit(1);
  }
  process.stdout.write(opts.json ? JSON.stringify({ service: opts.service, address: opts.address, status: result.status }) + '\n' : `${what}: ${result.status}\n`);
  if (result.status !== 'SERVING') process.exit(1);
}
