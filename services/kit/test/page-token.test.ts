import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GantryError, Status } from '../src/errors.js';
import { MAX_PAGE_TOKEN_CHARS, pageTokenCodec, textPageTokenCodec } from '../src/rpc/page-token.js';

const NAME = /^[A-Za-z0-9._-]{1,128}$/;
const MAX_SEQ = 2n ** 63n - 1n;

/** Asserts `fn` throws INVALID_ARGUMENT on page_token with a message matching `pattern`. */
function assertRefused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof GantryError, `expected a GantryError, got ${String(err)}`);
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.equal(err.field, 'page_token');
    assert.match(err.message, pattern);
    return true;
  });
}

test('a position and its filters come back from the token; an empty token is the first page', () => {
  const codec = pageTokenCodec({ listVersion: 'seq', beforeCreatedVersion: 'seq' });
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: MAX_SEQ }), fc.bigInt({ min: 0n, max: MAX_SEQ }), fc.array(fc.jsonValue(), { maxLength: 6 }), (listVersion, beforeCreatedVersion, filter) => {
      const token = codec.encode({ listVersion, beforeCreatedVersion }, filter);
      assert.match(token, /^[A-Za-z0-9_-]+$/);
      assert.ok(token.length <= MAX_PAGE_TOKEN_CHARS, 'a token is short whatever the filters: they are kept as a digest');
      assert.deepEqual(codec.decode(token, filter), { listVersion, beforeCreatedVersion });
    }),
  );
  assert.equal(codec.decode('', []), undefined);
  assert.equal(textPageTokenCodec(NAME).decode(''), undefined);
});

test('tokens issued before the codec decode to the same positions: the wire format of webhooks, approvals and log is unchanged', () => {
  // Literal tokens as webhooks' and approvals' own encoders and the log's issued them.
  const webhooks = pageTokenCodec({ after: 'seq' });
  assert.equal(webhooks.encode({ after: 42n }, ['owner-a', 1, 'ext-7']), 'WyI0MiIsImlvVDhiRFAyZUQ4V3k4d24iXQ');
  assert.deepEqual(webhooks.decode('WyI0MiIsImlvVDhiRFAyZUQ4V3k4d24iXQ', ['owner-a', 1, 'ext-7']), { after: 42n });

  const approvals = pageTokenCodec({ listVersion: 'seq', beforeCreatedVersion: 'seq' });
  const approvalsFilter = [['APPROVAL_STATE_PENDING'], [], 'alice', '', '2026-01-02T03:04:05.000Z', ''];
  assert.equal(approvals.encode({ listVersion: 7n, beforeCreatedVersion: 5n }, approvalsFilter), 'WyI3IiwiNSIsIkxkd0VudDZNUXJobnIzcU0iXQ');
  assert.deepEqual(approvals.decode('WyI3IiwiNSIsIkxkd0VudDZNUXJobnIzcU0iXQ', approvalsFilter), { listVersion: 7n, beforeCreatedVersion: 5n });

  const log = textPageTokenCodec(NAME);
  assert.equal(log.encode('audit.settlement'), 'YXVkaXQuc2V0dGxlbWVudA');
  assert.equal(log.decode('YXVkaXQuc2V0dGxlbWVudA'), 'audit.settlement');
});

test('a token from a listing with other filters is refused, saying to send the same filters', () => {
  const codec = pageTokenCodec({ after: 'seq' });
  const token = codec.encode({ after: 9n }, ['owner-a', 0]);
  assertRefused(() => codec.decode(token, ['owner-b', 0]), /^page_token: belongs to a listing with other filters/);
  assertRefused(() => codec.decode(token, []), /^page_token: belongs to a listing with other filters/);
});

test('anything the codec did not issue is INVALID_ARGUMENT on page_token, saying to start again', () => {
  const codec = pageTokenCodec({ listVersion: 'seq', beforeCreatedVersion: 'seq' });
  const of = (payload: unknown) => Buffer.from(JSON.stringify(payload)).toString('base64url');
  const digest = codec.encode({ listVersion: 1n, beforeCreatedVersion: 1n }, []);
  const filterPart = (JSON.parse(Buffer.from(digest, 'base64url').toString('utf8')) as string[])[2];
  const forged = [
    '!!!',
    'not a token',
    of({ listVersion: '1' }),
    of(['1', filterPart]),
    of(['1', '2', '3', filterPart]),
    of([1, 2, filterPart]),
    of(['-1', '2', filterPart]),
    of(['1', '12345678901234567890', filterPart]),
    of(['1', '0x10', filterPart]),
    digest.slice(0, -3),
  ];
  for (const token of forged) assertRefused(() => codec.decode(token, []), /^page_token: is not a token this service issued; start again without one$/);

  const log = textPageTokenCodec(NAME);
  for (const token of ['!!!', Buffer.from('has space').toString('base64url'), Buffer.from('x'.repeat(129)).toString('base64url')]) {
    assertRefused(() => log.decode(token), /^page_token: is not a token this service issued/);
  }
});

test(`a token longer than ${MAX_PAGE_TOKEN_CHARS} characters is refused before it is decoded`, () => {
  const long = 'A'.repeat(MAX_PAGE_TOKEN_CHARS + 1);
  assertRefused(() => pageTokenCodec({ after: 'seq' }).decode(long, []), new RegExp(`^page_token: is ${MAX_PAGE_TOKEN_CHARS + 1} characters, longer than any token this service issues`));
  assertRefused(() => textPageTokenCodec(NAME).decode(long), /longer than any token this service issues/);
  // The longest partition name is well inside the limit.
  const longestName = 'n'.repeat(128);
  assert.equal(textPageTokenCodec(NAME).decode(textPageTokenCodec(NAME).encode(longestName)), longestName);
});

test('issuing a token the codec would refuse is a broken invariant, not a token', () => {
  assert.throws(() => pageTokenCodec({ after: 'seq' }).encode({ after: -1n }), /invariant: page token field after/);
  assert.throws(() => pageTokenCodec({ after: 'seq' }).encode({ after: 2n ** 70n }), /invariant: page token field after/);
  assert.throws(() => textPageTokenCodec(NAME).encode('has space'), /invariant: page token field/);
  assert.throws(() => textPageTokenCodec(NAME).encode('p', ['a filter']), /invariant: a text page token binds no filter/);
});
