// Reading a gRPC server (or bidirectional) stream in a test: the messages as they come, then its
// final status and trailers, with a wait for the first n messages.
import type { ClientDuplexStream, ClientReadableStream, Metadata, ServiceError } from '@grpc/grpc-js';

/** A server stream read into an array as messages come; `ended` resolves with its final status and trailers. */
export class Collector<T> {
  readonly messages: T[] = [];
  readonly ended: Promise<{ err?: ServiceError; trailers?: Metadata }>;
  private waiters: { n: number; resolve: () => void }[] = [];

  constructor(readonly call: ClientReadableStream<T> | ClientDuplexStream<unknown, T>) {
    let trailers: Metadata | undefined;
    call.on('status', (s: { metadata: Metadata }) => (trailers = s.metadata));
    this.ended = new Promise((resolve) => {
      call.on('data', (m: T) => {
        this.messages.push(m);
        this.waiters = this.waiters.filter((w) => (this.messages.length >= w.n ? (w.resolve(), false) : true));
      });
      // 'status' comes after 'error'/'end'; wait a tick so the trailers are in.
      let error: ServiceError | undefined;
      const settle = () => setImmediate(() => resolve(error ? { err: error, trailers: trailers ?? error.metadata } : { trailers }));
      // grpc-js emits 'error' as the status arrives, when messages it pushed before may still wait
      // in the stream's buffer (a paused reader): those are read first, and 'end' follows them.
      call.on('error', (err: ServiceError) => {
        error = err;
        if (call.readableLength === 0) settle();
      });
      call.on('end', settle);
    });
  }

  /** Resolves once `n` messages have arrived; rejects after `timeoutMs`. */
  async count(n: number, timeoutMs = 10_000): Promise<T[]> {
    if (this.messages.length < n) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`expected ${n} messages within ${timeoutMs} ms, got ${this.messages.length}`)), timeoutMs);
        this.waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
      });
    }
    return this.messages.slice(0, n);
  }

  cancel(): void {
    this.call.cancel();
  }
}
