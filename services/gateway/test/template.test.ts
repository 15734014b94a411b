import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { matchTemplate, parseTemplate } from '../src/template.js';

const bindings = (template: string, path: string) => {
  const m = matchTemplate(parseTemplate(template), path);
  return m && Object.fromEntries(m.bindings.map((b) => [b.fieldPath.join('.'), b.value]));
};

test('a {field} variable matches one segment and is percent-decoded', () => {
  assert.deepEqual(bindings('/v1/webhooks/{webhook_id}', '/v1/webhooks/wh%201'), { webhook_id: 'wh 1' });
  assert.equal(bindings('/v1/webhooks/{webhook_id}', '/v1/webhooks/a/b'), undefined);
  assert.equal(bindings('/v1/webhooks/{webhook_id}', '/v1/webhooks/'), undefined);
  assert.equal(bindings('/v1/webhooks/{webhook_id}', '/v1/webhooks'), undefined);
});

test('a nested field path binds the nested field', () => {
  assert.deepEqual(bindings('/v1/flags/{flag.key}', '/v1/flags/webhooks.delivery.paused'), { 'flag.key': 'webhooks.delivery.paused' });
});

test('a verb must be present exactly, and counts as specific as a literal', () => {
  const watch = parseTemplate('/v1/approvals/{approval_id}:watch');
  const get = parseTemplate('/v1/approvals/{approval_id}');
  assert.deepEqual(bindings('/v1/approvals/{approval_id}:watch', '/v1/approvals/a1:watch'), { approval_id: 'a1' });
  assert.equal(matchTemplate(watch, '/v1/approvals/a1'), undefined);
  assert.equal(matchTemplate(watch, '/v1/approvals/a1:vote'), undefined);
  // The verb-less template matches too (the id "a1:watch"), but less specifically.
  assert.ok(matchTemplate(watch, '/v1/approvals/a1:watch')!.literals > matchTemplate(get, '/v1/approvals/a1:watch')!.literals);
  assert.deepEqual(bindings('/v1/admin:drain', '/v1/admin:drain'), {});
});

test('{name=things/*} binds several segments; ** takes the rest, keeping %2F encoded', () => {
  assert.deepEqual(bindings('/v1/{name=shelves/*/books/*}', '/v1/shelves/s1/books/b2'), { name: 'shelves/s1/books/b2' });
  assert.equal(bindings('/v1/{name=shelves/*/books/*}', '/v1/shelves/s1/maps/b2'), undefined);
  assert.deepEqual(bindings('/v1/files/{path=**}', '/v1/files/a/b%2Fc/d'), { path: 'a/b%2Fc/d' });
  assert.deepEqual(bindings('/v1/files/{path=**}:get', '/v1/files/a/b:get'), { path: 'a/b' });
  assert.deepEqual(bindings('/v1/*/x', '/v1/anything/x'), {});
});

test('literals compare decoded, and a malformed escape matches nothing', () => {
  assert.deepEqual(bindings('/v1/log/partitions', '/v1/log/%70artitions'), {});
  assert.equal(bindings('/v1/webhooks/{webhook_id}', '/v1/webhooks/%E0%A4%A'), undefined);
});

test('templates outside the grammar are refused with the template in the message', () => {
  for (const bad of ['v1/x', '/v1//x', '/v1/{x', '/v1/{a.b-c}', '/v1/**/x', '/v1/{a}/{a}', '/v1/{a={b}}', '/v1/x:bad/verb']) {
    assert.throws(() => parseTemplate(bad), (err: Error) => err.message.includes(bad), bad);
  }
});

test('any single-segment value round-trips through encodeURIComponent (property)', () => {
  const template = parseTemplate('/v1/things/{id}/parts');
  fc.assert(
    fc.property(fc.string({ minLength: 1, maxLength: 40 }), (id) => {
      const m = matchTemplate(template, `/v1/things/${encodeURIComponent(id)}/parts`);
      assert.ok(m);
      assert.equal(m.bindings[0]!.value, id);
    }),
  );
});
