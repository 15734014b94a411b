// Retention of the registry's change history: each replica's background task prunes it to its time
// and version bounds (config webhooks.registryHistory*) in bounded batches, oldest first; a registry
// watch from before what is kept ends with OUT_OF_RANGE telling the client to list again. The clock
// is the test's: time moves by assignment, and nothing here waits for it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { webhooksv1 } from '@gantry/proto';
import { eventually } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { webhooksConfigSchema } from '../src/config.js';
import { pruneRegistryHistory } from '../src/store/registry-retention.js';
import { rpc, spec, startWebhooksPlatform, watchRegistry, type WebhooksPlatform } from './support.js';

requirePostgresInCi('the webhooks registry retention tests');

const DAY_MS = 24 * 3600 * 1000;
const WAIT_MS = 10_000;
const { REGISTRY_EVENT_TYPE_UPDATED: UPDATED } = webhooksv1.RegistryEventType;

test('the registry history is kept 7 days and at most 100,000 versions unless configured otherwise', () => {
  const c = webhooksConfigSchema.parse({});
  assert.equal(c.registryHistoryRetentionMs, 7 * DAY_MS);
  assert.equal(c.registryHistoryMaxVersions, 100_000);
});

/** Versions of the registry history rows, oldest first. */
async function historyVersions(p: WebhooksPlatform): Promise<bigint[]> {
  const { rows } = await p.runtime.db.query<{ version: bigint }>(`SELECT version FROM webhooks.registry_changes ORDER BY version`);
  return rows.map((r) => BigInt(r.version));
}

for (const engine of engines()) {
  describe(`webhooks registry history retention on ${engine.name}`, { skip: engine.skip }, () => {
    let p: WebhooksPlatform;
    before(async () => {
      p = await startWebhooksPlatform(engine.name, { clock: { nowMs: Date.parse('2026-01-01T00:00:00Z') }, webhooks: { registryHistoryPruneIntervalMs: 100 } });
    });
    after(async () => p?.close());

    test('changes older than the retention are pruned in the background; a watch from before them is OUT_OF_RANGE saying to list again, one from the kept history resumes', async () => {
      const api = rpc(p, 'ret-a');
      const { webhook } = await api.create({ spec: spec('http://127.0.0.1:9/ret-a') });
      const id = webhook!.webhookId;
      await api.update({ webhookId: id, spec: spec('x', { description: 'old' }), updateMask: ['description'] });
      p.clock.nowMs += 8 * DAY_MS;
      const kept = await api.update({ webhookId: id, spec: spec('x', { description: 'kept' }), updateMask: ['description'] });
      assert.ok(await eventually(async () => (await historyVersions(p))[0] === kept.version, WAIT_MS), 'the registry history older than 7 days was not pruned');

      const gone = await watchRegistry(p, { fromVersion: webhook!.version }, 'ret-a').ended;
      assert.equal(gone.err?.code, status.OUT_OF_RANGE);
      assert.match(gone.err!.details, /older than the retained history .*list again and watch from the list's version/);

      const w = watchRegistry(p, { fromVersion: kept.version - 1n }, 'ret-a');
      assert.ok(await eventually(() => w.messages.length >= 1, WAIT_MS), 'the watch from the kept history sent nothing');
      const [first] = w.messages;
      w.cancel();
      assert.deepEqual([first!.type, first!.version, first!.webhook!.spec!.description], [UPDATED, kept.version, 'kept']);
      // The endpoint itself stays.
      assert.equal((await api.get(id)).spec!.description, 'kept');
    });

    test('a prune deletes at most its batch, oldest first, and the version bound prunes whatever the age', async () => {
      const api = rpc(p, 'ret-b');
      const { webhook } = await api.create({ spec: spec('http://127.0.0.1:9/ret-b') });
      for (const description of ['one', 'two', 'three']) await api.update({ webhookId: webhook!.webhookId, spec: spec('x', { description }), updateMask: ['description'] });
      const before = await historyVersions(p);
      assert.ok(before.length >= 4);
      assert.equal(await pruneRegistryHistory(p.runtime.db, { olderThan: null, maxVersions: 2 }, 1), 1);
      assert.deepEqual(await historyVersions(p), before.slice(1), 'one row, the oldest');
      assert.equal(await pruneRegistryHistory(p.runtime.db, { olderThan: null, maxVersions: 2 }, 1000), before.length - 3);
      assert.deepEqual(await historyVersions(p), before.slice(-2));
      // Nothing is older than 7 days now: the time bound alone keeps everything.
      assert.equal(await pruneRegistryHistory(p.runtime.db, { olderThan: new Date(p.clock.nowMs - 7 * DAY_MS), maxVersions: 0 }, 1000), 0);
    });
  });
}
