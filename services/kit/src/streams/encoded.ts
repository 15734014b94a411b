// Responses encoded once and written to many streams. grpc-js encodes every message a stream
// writes with its method's `responseSerialize`; a change fanned out to N watchers would be encoded
// N times. A method made to accept encoded responses lets a handler yield the protobuf bytes
// instead (built once per change and shared), which the server writes as they are.

/** A response message already protobuf-encoded, written to the stream as it is. */
export class EncodedMessage {
  constructor(readonly bytes: Buffer) {}
}

type Serializing = { responseSerialize: (value: never) => Buffer };
type Response<M> = M extends { responseSerialize: (value: infer R) => Buffer } ? R : never;

/** `definition` whose methods `keys` also take an {@link EncodedMessage} as a response. */
export type AcceptingEncoded<D, K extends keyof D> = {
  [P in keyof D]: P extends K ? Omit<D[P], 'responseSerialize'> & { responseSerialize: (value: Response<D[P]> | EncodedMessage) => Buffer } : D[P];
};

/**
 * A copy of a grpc-js service definition in which the methods `keys` accept an
 * {@link EncodedMessage} as well as a message: its bytes are sent without encoding again.
 */
export function acceptingEncoded<D extends Record<string, Serializing>, K extends keyof D>(definition: D, keys: readonly K[]): AcceptingEncoded<D, K> {
  const copy: Record<string, unknown> = { ...definition };
  for (const key of keys) {
    const method = definition[key]!;
    const serialize = method.responseSerialize as (value: unknown) => Buffer;
    copy[key as string] = { ...method, responseSerialize: (value: unknown) => (value instanceof EncodedMessage ? value.bytes : serialize(value)) };
  }
  return copy as AcceptingEncoded<D, K>;
}
