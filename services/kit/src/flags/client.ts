// A promise-style FlagsService client for the CLI and the operator.
import type { ChannelCredentials, ClientOptions, Metadata } from '@grpc/grpc-js';
import { flagsv1 } from '@gantry/proto';
import { streamOf, unary } from '../client.js';

/** FlagsService calls as promises (and WatchFlags as an async iterable), with one token. */
export class FlagsClient {
  private readonly stub: flagsv1.FlagsServiceClient;

  constructor(address: string, credentials: ChannelCredentials, options: Partial<ClientOptions>, private readonly metadata: () => Metadata, private readonly timeoutMs = 30_000) {
    this.stub = new flagsv1.FlagsServiceClient(address, credentials, options);
  }

  /** Creates or replaces a flag (expectedVersion 0n = only if it does not exist yet). */
  put(flag: flagsv1.Flag, expectedVersion?: bigint): Promise<flagsv1.PutFlagResponse> {
    return unary(this.stub.putFlag, this.stub, { flag, expectedVersion }, this.metadata(), this.timeoutMs);
  }

  /** Deletes a flag; `existed` is false when there was none. */
  async delete(key: string, expectedVersion?: bigint): Promise<boolean> {
    return (await unary(this.stub.deleteFlag, this.stub, { key, expectedVersion }, this.metadata(), this.timeoutMs)).existed;
  }

  list(): Promise<flagsv1.ListFlagsResponse> {
    return unary(this.stub.listFlags, this.stub, {}, this.metadata(), this.timeoutMs);
  }

  /** The flag; rejects with NOT_FOUND when there is none. */
  async get(key: string): Promise<flagsv1.Flag> {
    return (await unary(this.stub.getFlag, this.stub, { key }, this.metadata(), this.timeoutMs)).flag!;
  }

  /** Changes after `fromVersion` (0 = a BOOKMARK, then changes from now) until `signal` aborts. */
  watch(fromVersion: bigint, signal?: AbortSignal): AsyncIterable<flagsv1.WatchFlagsResponse> {
    const call = this.stub.watchFlags({ fromVersion }, this.metadata());
    signal?.addEventListener('abort', () => call.cancel(), { once: true });
    return streamOf(call);
  }

  close(): void {
    this.stub.close();
  }
}
