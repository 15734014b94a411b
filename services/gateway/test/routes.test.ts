import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create, fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import { descriptorSetPath } from '@gantry/proto';
import { buildRouteTable, loadRegistry, resolveRoute, type Route } from '../src/routes.js';
import { BadRequest, parseBody, requestBinary, responseJson, streamRequestBinaries } from '../src/transcode.js';

const table = buildRouteTable(loadRegistry(descriptorSetPath));

function found(verb: string, path: string) {
  const r = resolveRoute(table.routes, verb, path);
  assert.equal(r.kind, 'found', `${verb} ${path}`);
  return r as Extract<typeof r, { kind: 'found' }>;
}

test('every method of every Gantry service has an HTTP route (bidirectional streams too: they answer 501)', () => {
  const services = new Set(table.methods.map((m) => m.parent.typeName));
  assert.deepEqual([...services].sort(), ['gantry.admin.v1.AdminService', 'gantry.approvals.v1.ApprovalsService', 'gantry.flags.v1.FlagsService', 'gantry.log.v1.LogService', 'gantry.settlement.v1.SettlementService', 'gantry.webhooks.v1.WebhooksService']);
  const routed = new Set(table.routes.map((r) => r.grpcPath));
  const missing = table.methods.map((m) => `/${m.parent.typeName}/${m.name}`).filter((p) => !routed.has(p));
  assert.deepEqual(missing, []);
  assert.equal(table.methods.length, 51);
});

test('requests resolve to their RPC, the most specific template first, other verbs to 405', () => {
  assert.equal(found('GET', '/v1/approvals/a1').route.grpcPath, '/gantry.approvals.v1.ApprovalsService/GetApprovalStatus');
  assert.equal(found('GET', '/v1/approvals/a1:watch').route.grpcPath, '/gantry.approvals.v1.ApprovalsService/WatchApprovalUpdates');
  assert.equal(found('GET', '/v1/log/partitions/orders/entries:last').route.grpcPath, '/gantry.log.v1.LogService/GetLastEntry');
  assert.equal(found('GET', '/v1/log/partitions/orders/entries').route.grpcPath, '/gantry.log.v1.LogService/Read');
  assert.equal(found('PATCH', '/v1/webhooks/w1').route.grpcPath, '/gantry.webhooks.v1.WebhooksService/UpdateWebhook');
  assert.deepEqual(resolveRoute(table.routes, 'PUT', '/v1/webhooks/w1'), { kind: 'verb', allowed: ['DELETE', 'GET', 'PATCH'] });
  assert.deepEqual(resolveRoute(table.routes, 'GET', '/v2/nothing'), { kind: 'none' });
});

function decode(route: Route, bytes: Uint8Array) {
  return fromBinary(route.method.input as DescMessage, bytes) as unknown as Record<string, unknown>;
}

test('query parameters set scalar, 64-bit, enum, repeated and Timestamp fields by proto or JSON name', () => {
  const read = found('GET', '/v1/log/partitions/orders/entries');
  const req = decode(read.route, requestBinary(table.registry, read.route, read.match, new URLSearchParams('start_seq=18446744073709551615&limit=5'), undefined));
  assert.deepEqual([req.partition, req.startSeq, req.limit], ['orders', 18446744073709551615n, 5n]);

  const list = found('GET', '/v1/approvals');
  const q = new URLSearchParams('states=APPROVAL_STATE_PENDING&states=APPROVAL_STATE_APPROVED&createdAfter=2026-01-02T03:04:05Z&pageSize=10');
  const approvals = decode(list.route, requestBinary(table.registry, list.route, list.match, q, undefined));
  assert.equal((approvals.states as number[]).length, 2);
  assert.equal(approvals.pageSize, 10);
  assert.equal((approvals.createdAfter as { seconds: bigint }).seconds, BigInt(Date.parse('2026-01-02T03:04:05Z') / 1000));

  const tail = found('GET', '/v1/log/partitions/orders/entries:tail');
  assert.equal(decode(tail.route, requestBinary(table.registry, tail.route, tail.match, new URLSearchParams('follow=true'), undefined)).follow, true);
});

test('path values and the body combine; nested path fields fill the body message', () => {
  const put = found('PUT', '/v1/flags/webhooks.delivery.paused');
  const body = parseBody('{"flag":{"state":"FLAG_STATE_ENABLED","defaultVariant":"on","variants":{"on":true,"off":false}},"expectedVersion":"3"}');
  const req = decode(put.route, requestBinary(table.registry, put.route, put.match, new URLSearchParams(), body));
  const flag = req.flag as Record<string, unknown>;
  assert.equal(flag.key, 'webhooks.delivery.paused');
  assert.equal(flag.defaultVariant, 'on');
  assert.equal(req.expectedVersion, 3n);
});

test('what does not fit is a BadRequest that names the field and what to do', () => {
  const read = found('GET', '/v1/log/partitions/orders/entries');
  const tail = found('GET', '/v1/log/partitions/orders/entries:tail');
  const append = found('POST', '/v1/log/partitions/orders/entries');
  const cases: [() => unknown, RegExp][] = [
    [() => requestBinary(table.registry, read.route, read.match, new URLSearchParams('nope=1'), undefined), /has no field nope/],
    [() => requestBinary(table.registry, read.route, read.match, new URLSearchParams('limit=ten'), undefined), /does not fit gantry.log.v1.ReadRequest/],
    [() => requestBinary(table.registry, read.route, read.match, new URLSearchParams('partition=x'), undefined), /already set by the path/],
    [() => requestBinary(table.registry, tail.route, tail.match, new URLSearchParams('follow=yes'), undefined), /must be true or false/],
    [() => requestBinary(table.registry, append.route, append.match, new URLSearchParams('data=aGk='), {}), /query parameters \(data\) are not accepted/],
    [() => requestBinary(table.registry, append.route, append.match, new URLSearchParams(), parseBody('[1]')), /must be a JSON object/],
    [() => requestBinary(table.registry, append.route, append.match, new URLSearchParams(), parseBody('{"dataa":"aGk="}')), /does not fit gantry.log.v1.AppendRequest/],
    [() => parseBody('{"data":'), /not valid JSON/],
    [() => streamRequestBinaries(table.registry, found('POST', '/v1/approvals:batchVote').route, {}, 10), /JSON array/],
  ];
  for (const [run, message] of cases) assert.throws(run, (err: Error) => err instanceof BadRequest && message.test(err.message), String(message));
});

test('responses are proto3 JSON: int64 as strings, bytes base64, Timestamps RFC 3339, enums by name, zero values present', () => {
  const last = found('GET', '/v1/log/partitions/orders/entries:last').route;
  const entry = { partition: 'orders', seq: 42n, data: new TextEncoder().encode('hi'), timestamp: { seconds: 1767322245n, nanos: 0 } };
  const out = last.method.output as DescMessage;
  const json = responseJson(table.registry, last, toBinary(out, create(out, { entry } as never))) as { entry: Record<string, unknown> };
  assert.deepEqual([json.entry.seq, json.entry.data, json.entry.timestamp, json.entry.author], ['42', 'aGk=', '2026-01-02T02:50:45Z', '']);

  const status = found('GET', '/v1/approvals/a1').route;
  const statusOut = status.method.output as DescMessage;
  const approval = responseJson(table.registry, status, toBinary(statusOut, create(statusOut, { approval: { state: 2 } } as never))) as { approval: Record<string, unknown> };
  assert.equal(approval.approval.state, 'APPROVAL_STATE_APPROVED');
  assert.equal(approval.approval.requiredApprovals, 0);
});
