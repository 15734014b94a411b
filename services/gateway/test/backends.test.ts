import assert from 'node:assert/strict';
import { test } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { Backends, targetOfService } from '../src/backends.js';
import { GatewayError } from '../src/status.js';

const targets = [
  { target: 'log', service: 'gantry.log.v1.LogService', address: '127.0.0.1:1' },
  { target: 'settlement', service: 'gantry.settlement.v1.SettlementService', address: '127.0.0.1:2' },
  { target: 'webhooks', service: 'gantry.webhooks.v1.WebhooksService', address: undefined },
];

test('a service goes to its target: the second segment of its package', () => {
  assert.equal(targetOfService('gantry.approvals.v1.ApprovalsService'), 'approvals');
});

test('a target without an address is 503 UNAVAILABLE naming the variable to set', () => {
  const backends = new Backends(targets, credentials.createInsecure(), {});
  try {
    assert.throws(() => backends.clientFor('gantry.webhooks.v1.WebhooksService', undefined), (err: GatewayError) => err.httpStatus === 503 && /GANTRY_PEERS_WEBHOOKS_ADDRESS/.test(err.message));
    assert.ok(backends.clientFor('gantry.log.v1.LogService', undefined));
  } finally {
    backends.close();
  }
});

test('per-process services (flags, admin) need the gantry-target header when several processes are configured, and refuse an unknown one', () => {
  const backends = new Backends(targets, credentials.createInsecure(), {});
  try {
    assert.throws(() => backends.clientFor('gantry.flags.v1.FlagsService', undefined), (err: GatewayError) => err.httpStatus === 400 && /"gantry-target: <target>" \(one of: log, settlement\)/.test(err.message));
    assert.throws(() => backends.clientFor('gantry.admin.v1.AdminService', 'webhooks'), (err: GatewayError) => err.httpStatus === 400 && /not a target this gateway reaches/.test(err.message));
    assert.ok(backends.clientFor('gantry.flags.v1.FlagsService', 'settlement'));
  } finally {
    backends.close();
  }
  const one = new Backends(targets.map((t) => ({ ...t, address: '127.0.0.1:9' })), credentials.createInsecure(), {});
  try {
    assert.ok(one.clientFor('gantry.flags.v1.FlagsService', undefined), 'one process for every target (all): no header needed');
  } finally {
    one.close();
  }
});
