// Strict request decoding for every method the kit serves. grpc-js turns a deserializer that throws
// into INTERNAL "Error deserializing request", and ts-proto's reader turns invalid UTF-8 into
// U+FFFD, so two different encodings of a signed string would read the same. Here a request is
// read with a reader that refuses invalid UTF-8, must use every byte, and a failure comes back as a
// value the call runner turns into INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for an oversized one).
import { isUtf8 } from 'node:buffer';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { GantryError, Status } from '../errors.js';

/** A method as grpc-js describes it: enough to decode its requests. */
export interface DecodableMethod {
  path: string;
  requestDeserialize: (value: Buffer) => unknown;
}

/** A request the server could not decode: what the caller is told, in place of the message. */
export class UndecodableRequest {
  constructor(readonly error: GantryError) {}
}

// ignoreBOM keeps a leading U+FEFF as text, as protobuf-es does: stripping it would be a second
// encoding of the same string. Validating first (simdutf) and then decoding is several times
// cheaper than a fatal TextDecoder, which takes ICU's slow path for every string.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
const decodeUtf8Strictly = (bytes: Uint8Array): string => {
  if (!isUtf8(bytes)) throw new TypeError('The encoded data was not valid for encoding utf-8');
  return utf8.decode(bytes);
};

/** A reader over `bytes` whose strings must be valid UTF-8. */
function strictReader(bytes: Uint8Array): BinaryReader {
  return new BinaryReader(bytes, decodeUtf8Strictly);
}

/** What was wrong with the bytes, in words a caller can act on. */
function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof TypeError && /encoded data was not valid/i.test(message)) return 'a string field is not valid UTF-8';
  if (/premature EOF/.test(message)) return 'it ends inside a field (truncated)';
  if (/invalid varint/.test(message)) return 'a varint is longer than 10 bytes';
  if (/cant skip wire type/.test(message)) return `it has an invalid wire type (${message.replace(/^.*wire type /, '')})`;
  return message;
}

/**
 * Fails at start-up, naming the method, unless its request deserializer reads from a
 * BinaryReader (ts-proto's generated `decode` does; proto-loader's does not): only then can strings
 * be checked for valid UTF-8.
 */
export function assertStrictlyDecodable(method: DecodableMethod): void {
  try {
    method.requestDeserialize(strictReader(new Uint8Array(0)) as unknown as Buffer);
  } catch (err) {
    throw new Error(`${method.path}: its request deserializer cannot decode strictly (generate it with ts-proto, proto/buf.gen.yaml): ${(err as Error).message}`);
  }
}

/**
 * The request deserializer the server installs for `method`: the message, or an
 * UndecodableRequest when the bytes are over `maxBytes`, are not valid protobuf for it, have bytes
 * after the message, or hold a string that is not valid UTF-8. It never throws.
 */
export function strictDeserializer(method: DecodableMethod, maxBytes: number): (value: Buffer) => unknown {
  const refuse = (code: Status, why: string) => new UndecodableRequest(new GantryError(code, why));
  return (value) => {
    // grpc-js normally refuses such a request at its length prefix (server/admission.ts); this is the backstop.
    if (value.length > maxBytes) return refuse(Status.RESOURCE_EXHAUSTED, `the request is ${value.length} bytes; ${method.path} takes at most ${maxBytes}`);
    const reader = strictReader(value);
    try {
      const message = method.requestDeserialize(reader as unknown as Buffer);
      // ts-proto stops at a zero or end-group tag and leaves the rest unread.
      if (reader.pos !== reader.len) return refuse(Status.INVALID_ARGUMENT, `the request to ${method.path} is not valid protobuf: ${reader.len - reader.pos} bytes after its end`);
      return message;
    } catch (err) {
      return refuse(Status.INVALID_ARGUMENT, `the request to ${method.path} is not valid protobuf: ${reasonOf(err)}`);
    }
  };
}

/** The request itself; throws its error when it could not be decoded. */
export function decodedRequest(request: unknown): unknown {
  if (request instanceof UndecodableRequest) throw request.error;
  return request;
}

/** The client's messages, each decoded; the stream throws at the first that could not be. */
export async function* decodedRequests(requests: AsyncIterable<unknown>): AsyncGenerator<unknown> {
  for await (const request of requests) yield decodedRequest(request);
}
