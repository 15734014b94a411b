// Requests as raw bytes, sent by a grpc-js client that serializes nothing: what the server does
// with bodies no generated client would send. Malformed protobuf is the caller's mistake
// (INVALID_ARGUMENT, saying what is wrong), never INTERNAL; a string that is not valid UTF-8 is
// refused, not stored as U+FFFD (one stored text, two wire encodings: a signature over the text
// would cover both).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { makeGenericClientConstructor, status, type Client, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { FLAGS_WRITE_SCOPE } from '../src/index.js';
import { EchoResponse } from '@gantry/test-support/gen/echo';
import { bearer, startEchoPlatform, type TestPlatform } from '@gantry/test-support/harness';
import { lengthDelimited } from '@gantry/test-support/raw-grpc';

const identity = (b: Buffer) => b;
const raw = (path: string, requestStream = false) => ({ path, requestStream, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity });
const RawClient = makeGenericClientConstructor(
  { echo: raw('/gantry.test.v1.EchoService/Echo'), collect: raw('/gantry.test.v1.EchoService/Collect', true), putFlag: raw('/gantry.flags.v1.FlagsService/PutFlag') },
  'Raw',
);
type Callback = (err: ServiceError | null, res?: Buffer) => void;
type RawStub = Client & {
  echo(req: Buffer, md: Metadata, opts: { deadline: number }, cb: Callback): void;
  putFlag(req: Buffer, md: Metadata, opts: { deadline: number }, cb: Callback): void;
  collect(md: Metadata, opts: { deadline: number }, cb: Callback): { write(b: Buffer): void; end(): void };
};

/** EchoRequest.message (field 1) with these bytes as its text. */
const echoMessage = (bytes: number[] | Buffer) => lengthDelimited(1, Buffer.from(bytes));

describe('request bytes that are not a valid message', () => {
  let platform: TestPlatform;
  let client: RawStub;
  let reader: Metadata;

  before(async () => {
    platform = await startEchoPlatform();
    client = new RawClient(platform.address, platform.clientCredentials, { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' }) as unknown as RawStub;
    reader = bearer(platform.token('reader', ['echo.read']));
  });
  after(async () => {
    client.close();
    await platform.close();
  });

  const echo = (body: Buffer) =>
    new Promise<{ res?: EchoResponse; err?: ServiceError }>((resolve) => {
      client.echo(body, reader, { deadline: Date.now() + 5000 }, (err, res) => resolve(err ? { err } : { res: EchoResponse.decode(res!) }));
    });

  /** Asserts `body` is refused with INVALID_ARGUMENT whose message matches `reason`. */
  async function refused(body: Buffer, reason: RegExp): Promise<void> {
    const { res, err } = await echo(body);
    assert.equal(res, undefined, `accepted as ${JSON.stringify(res)}`);
    assert.equal(err?.code, status.INVALID_ARGUMENT, `${err ? status[err.code] : 'OK'}: ${err?.details}`);
    assert.match(err.details, /^the request to \/gantry\.test\.v1\.EchoService\/Echo is not valid protobuf: /);
    assert.match(err.details, reason);
  }

  test('a well-formed request is answered', async () => {
    const { res, err } = await echo(echoMessage(Buffer.from('héllo')));
    assert.equal(err, undefined, err?.details);
    assert.equal(res?.message, 'héllo');
  });

  test('garbage bytes are INVALID_ARGUMENT, not INTERNAL', async () => {
    await refused(Buffer.from([0x0e, 0x9a, 0x07, 0x7f]), /invalid wire type/);
  });

  test('a truncated field is INVALID_ARGUMENT', async () => {
    await refused(echoMessage(Buffer.from('hello')).subarray(0, 4), /truncated/);
  });

  test('a varint longer than 10 bytes is INVALID_ARGUMENT', async () => {
    await refused(Buffer.from([0x10, ...Array<number>(10).fill(0xff), 0x01]), /varint is longer than 10 bytes/);
  });

  test('bytes after a zero tag (left unread by the decoder) are INVALID_ARGUMENT', async () => {
    await refused(Buffer.concat([echoMessage(Buffer.from('hi')), Buffer.from([0x00, 0x0a, 0x01, 0x41])]), /bytes after its end/);
  });

  test('a string that is not valid UTF-8 is INVALID_ARGUMENT, not stored as U+FFFD', async () => {
    await refused(echoMessage([0x61, 0xc3, 0x28]), /string field is not valid UTF-8/);
    // An encoded surrogate and an overlong encoding of '/' are not UTF-8 either.
    await refused(echoMessage([0xed, 0xa0, 0x80]), /not valid UTF-8/);
    await refused(echoMessage([0xc0, 0xaf]), /not valid UTF-8/);
  });

  test('a leading U+FEFF is text, kept as sent', async () => {
    const { res, err } = await echo(echoMessage(Buffer.from('\uFEFFhi')));
    assert.equal(err, undefined, err?.details);
    assert.equal(res?.message, '\uFEFFhi');
  });

  test('in a client stream, the first malformed message ends the call with INVALID_ARGUMENT', async () => {
    const writer = bearer(platform.token('writer', ['echo.write']));
    const outcome = await new Promise<{ err?: ServiceError }>((resolve) => {
      const call = client.collect(writer, { deadline: Date.now() + 5000 }, (err) => resolve(err ? { err } : {}));
      call.write(echoMessage(Buffer.from('fine')));
      call.write(echoMessage([0xff]));
      call.end();
    });
    assert.equal(outcome.err?.code, status.INVALID_ARGUMENT, outcome.err?.details);
    assert.match(outcome.err!.details, /Collect is not valid protobuf: a string field is not valid UTF-8/);
  });

  test('a real service method (FlagsService.PutFlag) refuses invalid UTF-8 in a nested string before validation', async () => {
    const writer = bearer(platform.token('flagger', [FLAGS_WRITE_SCOPE]));
    // PutFlagRequest.flag (1) → Flag.key (1) = "a\xc3(".
    const body = lengthDelimited(1, lengthDelimited(1, Buffer.from([0x61, 0xc3, 0x28])));
    const err = await new Promise<ServiceError | null>((resolve) => client.putFlag(body, writer, { deadline: Date.now() + 5000 }, (e) => resolve(e)));
    assert.equal(err?.code, status.INVALID_ARGUMENT, err?.details);
    assert.match(err!.details, /PutFlag is not valid protobuf: a string field is not valid UTF-8/);
  });

  test('a call refused on its metadata is refused for that, whatever its body', async () => {
    const { err } = await new Promise<{ err?: ServiceError }>((resolve) => {
      client.echo(Buffer.from([0xff, 0xff]), bearer(undefined), { deadline: Date.now() + 5000 }, (e) => resolve(e ? { err: e } : {}));
    });
    assert.equal(err?.code, status.UNAUTHENTICATED, err?.details);
  });
});
