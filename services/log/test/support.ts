// Helpers for the log's integration tests (in process here, and the multi-process tests under
// tests/log): a log runtime on either engine, a fresh PostgreSQL database per suite, a client over
// mTLS, and small wrappers that read streams and catch gRPC errors.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Metadata } from '@grpc/grpc-js';
import { bearerMetadata, clientCredentials, clientOptions, streamOf, unary, type ConfigInput, type Runtime, type WorkloadGrant } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { tokenFor, workloadTls } from '@gantry/test-support/clients';
import type { EngineName } from '@gantry/test-support/databases';
import { startServicePlatform } from '@gantry/test-support/harness';

export { assertStatus, grpcError } from '@gantry/test-support/clients';
export { engines, postgresSkip, type EngineName } from '@gantry/test-support/databases';
import { logService } from '../src/index.js';
import { LogServiceClient } from '../src/client/index.js';

export type LogClient = InstanceType<typeof logv1.LogServiceClient>;

/** A unique, valid partition name, so tests sharing one database never collide. */
export const uniquePartition = (label: string) => `${label}-${randomBytes(5).toString('hex')}`;

/** The dev server certificate names `localhost`; clients dial 127.0.0.1. */
export function logClient(address: string, dataDir: string): LogClient {
  const pki = (f: string) => join(dataDir, 'pki', f);
  const tls = { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' };
  return new LogServiceClient(address, clientCredentials(tls), clientOptions(tls));
}

/** A client that calls as platform workload `name` (its SPIFFE certificate; send no token). */
export async function workloadLogClient(address: string, dataDir: string, name: string): Promise<LogClient> {
  const tls = { ...(await workloadTls(dataDir, name)), serverName: 'localhost' };
  return new LogServiceClient(address, clientCredentials(tls), clientOptions(tls));
}

/** Bearer metadata with a dev token minted from the JWT key under `dataDir`. */
export const metadataFor = (dataDir: string, subject: string, scopes: string[]): Metadata => bearerMetadata(tokenFor(dataDir, subject, scopes));

export const ALL_SCOPES = ['log.append', 'log.read'];

export interface LogPlatform {
  engine: EngineName;
  runtime: Runtime;
  dataDir: string;
  address: string;
  client: LogClient;
  /** A token with both log scopes. */
  md: Metadata;
  metadata(subject: string, scopes: string[]): Metadata;
  close(): Promise<void>;
}

/**
 * Starts the log target in this process (mTLS, JWT, rate limits) on the engine, on free ports;
 * `workloads` grants platform workload identities (by name) scopes and event families.
 */
export async function startLogPlatform(engine: EngineName, overrides: ConfigInput = {}, workloads?: ReadonlyMap<string, WorkloadGrant>): Promise<LogPlatform> {
  const platform = await startServicePlatform(engine, [logService], { overrides, dbLabel: 't_log', workloads });
  const { runtime, dataDir, address } = platform;
  const client = logClient(address, dataDir);
  return {
    engine,
    runtime,
    dataDir,
    address,
    client,
    md: metadataFor(dataDir, 'log-test', ALL_SCOPES),
    metadata: (subject, scopes) => metadataFor(dataDir, subject, scopes),
    async close() {
      client.close();
      await platform.close();
    },
  };
}

/** Reads a server stream to its end: the entries in arrival order and each message's entry count. */
export async function readStream(stream: AsyncIterable<{ entries: logv1.Entry[] }>): Promise<{ entries: logv1.Entry[]; chunks: number[] }> {
  const entries: logv1.Entry[] = [];
  const chunks: number[] = [];
  for await (const msg of stream) {
    chunks.push(msg.entries.length);
    entries.push(...msg.entries);
  }
  return { entries, chunks };
}

/** Read(partition, startSeq, limit) to its end. */
export const readAll = (client: LogClient, md: Metadata, partition: string, startSeq = 0n, limit = 0n) =>
  readStream(streamOf(client.read({ partition, startSeq, limit }, md, { deadline: Date.now() + 30_000 })));

/** The partition's size as ListPartitions reports it; undefined while it does not exist. */
export async function partitionSize(client: LogClient, md: Metadata, partition: string): Promise<bigint | undefined> {
  const res = await unary(client.listPartitions, client, { prefix: partition, pageSize: 1000, pageToken: '' }, md);
  return res.partitions.find((p) => p.name === partition)?.size;
}

/** `n` distinct small payloads. */
export const payloads = (n: number, label = 'entry') => Array.from({ length: n }, (_, i) => Buffer.from(`${label}-${i}-${randomBytes(4).toString('hex')}`));
