/**
 * Splits a call's request bytes into gRPC messages, as grpc-js's own decoder does (its
 * stream-decoder.ts: same input, same output, a message with its 5-byte prefix), with two
 * differences. A message over `maxReadMessageLength` is refused at its prefix, with grpc-js's
 * message. And a message is copied into one buffer of its declared size as it arrives, where
 * grpc-js keeps views of the chunks it came in: a view keeps its chunk's whole backing store alive,
 * and Node's HTTP/2 chunks share the socket read they came from, so a message trickled in small
 * frames among other streams' bytes could hold many times its size (3.4 times, measured, with 48
 * streams interleaved). What a receiving call holds is now exactly what it declared, at most its
 * method's limit.
 */
/** Above V8's largest on-heap typed array (64 bytes, `--typed-array-max-size-in-heap`). */
const MIN_OFF_HEAP_BYTES = 65;

export class ExactMessageDecoder {
  // The 5-byte prefix as it arrives, in numbers rather than a buffer of its own per call: the
  // compression flag, and the length in network byte order.
  private flag = 0;
  private size = 0;
  private prefixBytes = 0;
  private message: Buffer | undefined;
  private messageBytes = 0;
  /** Set once `admit` refused a message: the call is being answered, and nothing more is buffered. */
  private discarding = false;

  /**
   * `admit` is asked for each message's declared size before anything of it is buffered (the
   * server's request budget); false refuses it, and everything after is dropped.
   */
  constructor(
    readonly maxReadMessageLength: number,
    private readonly admit: (size: number) => boolean = () => true,
  ) {}

  /** The messages `data` completes; throws when a prefix declares more than the limit. */
  write(data: Buffer): Buffer[] {
    const complete: Buffer[] = [];
    let at = 0;
    while (at < data.length && !this.discarding) {
      if (!this.message) {
        while (this.prefixBytes < 5 && at < data.length) {
          const byte = data.readUInt8(at++);
          if (this.prefixBytes === 0) this.flag = byte;
          else this.size = this.size * 256 + byte;
          this.prefixBytes++;
        }
        if (this.prefixBytes < 5) break;
        const message = this.startMessage();
        if (!message) break;
        this.message = message;
      }
      const n = Math.min(this.message.length - this.messageBytes, data.length - at);
      data.copy(this.message, this.messageBytes, at, at + n);
      this.messageBytes += n;
      at += n;
      if (this.messageBytes === this.message.length) {
        complete.push(this.message);
        this.message = undefined;
      }
    }
    return complete;
  }

  /** A buffer for the message the prefix announces, the prefix copied in; undefined when `admit` refused it. */
  private startMessage(): Buffer | undefined {
    const size = this.size;
    if (this.maxReadMessageLength !== -1 && size > this.maxReadMessageLength) {
      throw new Error(`Received message larger than max (${size} vs ${this.maxReadMessageLength})`);
    }
    if (!this.admit(size)) {
      this.discarding = true;
      return undefined;
    }
    // Not from Node's shared pool: a pooled slice would keep its 8 KiB slab alive. And not under
    // V8's on-heap size either: a typed array of at most 64 bytes lives on the JS heap, and grpc-js's
    // subarray of the message moves it off first (about a microsecond a call for small requests).
    const message = Buffer.allocUnsafeSlow(Math.max(size + 5, MIN_OFF_HEAP_BYTES)).subarray(0, size + 5);
    message[0] = this.flag;
    message.writeUInt32BE(size, 1);
    this.prefixBytes = 0;
    this.size = 0;
    this.messageBytes = 5;
    return message;
  }
}
