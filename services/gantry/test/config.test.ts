import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configSchemaFor, configSources, envNamesOf } from '@gantry/kit';
import { loadProgramConfig } from '../src/config.js';
import { modulesFor, registry, TARGETS } from '../src/registry.js';

const docs = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');

test('docs/configuration.md lists the environment variable of every config key of the program', () => {
  const names = envNamesOf(configSchemaFor(configSources(registry.all())));
  assert.ok(names.size > 70, `${names.size} keys`);
  const missing = [...names.keys()].filter((name) => !docs.includes(`\`${name}\``));
  assert.deepEqual(missing, [], 'add a row to docs/configuration.md for each');
});

test('the program config takes each module slice from its own environment variables, and peer addresses for the gRPC targets', () => {
  const config = loadProgramConfig({
    env: { GANTRY_LOG_ORIGIN: 'example.com/log', GANTRY_WEBHOOKS_MAX_IN_FLIGHT: '7', GANTRY_OPERATOR_WORKERS: '3', GANTRY_PEERS_SETTLEMENT_ADDRESS: 'dns:///s:7443' },
  }) as unknown as { log: { origin: string }; webhooks: { maxInFlight: number }; operator: { workers: number }; peers: Record<string, { address?: string }> };
  assert.equal(config.log.origin, 'example.com/log');
  assert.equal(config.webhooks.maxInFlight, 7);
  assert.equal(config.operator.workers, 3);
  assert.equal(config.peers.settlement?.address, 'dns:///s:7443');
  assert.throws(() => loadProgramConfig({ env: { GANTRY_PEERS_OPERATOR_ADDRESS: 'x:1' } }), /unknown environment variable GANTRY_PEERS_OPERATOR_ADDRESS/, 'the operator serves no gRPC');
});

test('each target resolves to its modules, dependencies first; all is the four services with the event relay once', () => {
  assert.deepEqual(TARGETS, ['log', 'settlement', 'approvals', 'webhooks', 'gateway', 'all', 'operator']);
  assert.deepEqual(modulesFor('settlement').map((m) => m.name), ['events', 'settlement']);
  assert.deepEqual(modulesFor('all').map((m) => m.name), ['log', 'events', 'settlement', 'approvals', 'webhooks', 'gateway', 'all']);
  assert.deepEqual(modulesFor('gateway').map((m) => m.name), ['gateway']);
  assert.deepEqual(modulesFor('operator').map((m) => m.name), ['operator']);
  assert.throws(() => modulesFor('events'), /unknown target "events"; choose one of: log, settlement, approvals, webhooks, gateway, all, operator/);
});
