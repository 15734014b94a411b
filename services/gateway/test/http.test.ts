import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearerHeader, traceHeaders } from '../src/http.js';
import { httpStatusOf } from '../src/status.js';

test('only a well-formed Bearer header is passed on', () => {
  assert.equal(bearerHeader({ authorization: 'Bearer abc.def-_.ghi' }), 'Bearer abc.def-_.ghi');
  assert.equal(bearerHeader({ authorization: 'bearer abc' }), 'bearer abc');
  for (const bad of ['Basic dXNlcg==', 'Bearer ', 'Bearer a b', 'Bearer a\r\nx-injected: 1', '']) assert.equal(bearerHeader({ authorization: bad }), undefined, bad);
  assert.equal(bearerHeader({}), undefined);
});

test('W3C trace context is passed on when well-formed, dropped otherwise', () => {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  assert.deepEqual(traceHeaders({ traceparent, tracestate: 'vendor=x' }), { traceparent, tracestate: 'vendor=x' });
  assert.deepEqual(traceHeaders({ traceparent, tracestate: 'x'.repeat(600) }), { traceparent });
  assert.equal(traceHeaders({ traceparent: 'not-a-trace' }), undefined);
});

test('gRPC codes map to the standard HTTP statuses', () => {
  const expected: Record<number, number> = { 0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401 };
  for (const [code, http] of Object.entries(expected)) assert.equal(httpStatusOf(Number(code)), http, `code ${code}`);
  assert.equal(httpStatusOf(99), 500);
});
