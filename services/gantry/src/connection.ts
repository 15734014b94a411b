import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { Status, bearerMetadata, clientCredentials, clientOptions, ensureDevSigningKey, mintToken, type ClientTls } from '@gantry/kit';
import type { ChannelCredentials, ChannelOptions, Metadata } from '@grpc/grpc-js';
import { loadProgramConfig } from './config.js';

/** Options every network command takes. */
export interface ConnectionOptions {
  address: string;
  token?: string;
  ca?: string;
  cert?: string;
  key?: string;
  serverName: string;
  dataDir?: string;
  json?: boolean;
  /** Subject of the dev token minted when no token is given (who the command acts as). */
  as?: string;
}

/** Adds --address, --token, TLS file options and --json to a command. */
export function withConnection(cmd: Command): Command {
  return cmd
    .option('--address <host:port>', 'server address (env GANTRY_ADDRESS)', process.env.GANTRY_ADDRESS ?? 'localhost:7443')
    .option('--token <jwt>', 'bearer token (env GANTRY_TOKEN); default: a dev token minted with the scopes this command needs')
    .option('--ca <file>', 'CA certificate (default: the dev PKI under the data dir)')
    .option('--cert <file>', 'client certificate (default: the dev PKI)')
    .option('--key <file>', 'client key (default: the dev PKI)')
    .option('--server-name <name>', 'name to expect in the server certificate', 'localhost')
    .option('--data-dir <dir>', 'where the dev PKI and dev JWT key live (env GANTRY_DATA_DIR)')
    .option('--json', 'machine-readable output, one JSON document per line', false);
}

export interface Connection {
  address: string;
  credentials: ChannelCredentials;
  options: ChannelOptions;
  metadata: () => Metadata;
  json: boolean;
}

/** Resolves credentials and a token for a command that needs `scopes`. */
export async function connect(opts: ConnectionOptions, scopes: string[]): Promise<Connection> {
  const config = loadProgramConfig({ overrides: opts.dataDir ? { dataDir: opts.dataDir } : {} });
  const pki = (f: string) => resolve(config.dataDir, 'pki', f);
  const tls: ClientTls = { caFile: opts.ca ?? pki('ca.crt'), certFile: opts.cert ?? pki('client.crt'), keyFile: opts.key ?? pki('client.key'), serverName: opts.serverName };
  for (const [flag, file] of [['--ca', tls.caFile], ['--cert', tls.certFile], ['--key', tls.keyFile]] as const) {
    if (!existsSync(file)) throw new Error(`${file} does not exist: pass ${flag}, or run 'gantry pki init' (or start the server once) for a dev PKI`);
  }
  let token = opts.token ?? process.env.GANTRY_TOKEN;
  if (!token) {
    const key = await ensureDevSigningKey(resolve(config.dataDir, 'jwt'));
    token = mintToken({ subject: opts.as ?? 'gantry-cli', scopes, issuer: config.auth.issuer, audience: config.auth.audience, ttlSec: 300, key: key.privateKey, kid: key.kid });
  }
  const bearer = token;
  return { address: opts.address, credentials: clientCredentials(tls), options: clientOptions(tls), metadata: () => bearerMetadata(bearer), json: opts.json ?? false };
}

/** Prints a value as JSON, turning bigints into strings and buffers into hex. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v)) + '\n');
}

/** A gRPC failure as one line: the status name, the server's reason, and what to try when the server was not reached. */
export function explainRpcError(err: unknown, address: string): unknown {
  const e = err as { code?: unknown; details?: unknown };
  if (typeof e.code !== 'number' || typeof e.details !== 'string') return err;
  const name = Status[e.code] ?? `status ${e.code}`;
  const hint = e.code === Status.UNAVAILABLE ? `; is gantry serving at ${address}? Start it with 'gantry serve', or pass --address` : '';
  return new Error(`${name}: ${e.details}${hint}`);
}

/** Connects, makes a service client, runs `fn`, closes the client; gRPC errors become one readable line. */
export async function withServiceClient<C extends { close(): void }, T>(
  opts: ConnectionOptions,
  scopes: string[],
  make: (c: Connection) => C,
  fn: (c: Connection, client: C) => Promise<T>,
): Promise<T> {
  const c = await connect(opts, scopes);
  const client = make(c);
  try {
    return await fn(c, client);
  } catch (err) {
    throw explainRpcError(err, c.address);
  } finally {
    client.close();
  }
}
