// The status writer both reconcilers share: conditions with metav1 semantics for the object's
// generation, fields merged into what is there, and no API write when nothing would change.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubeApi } from '../src/kube.js';
import { WEBHOOKS, type WebhookResource, type WebhookStatus } from '../src/resources.js';
import { StatusWriter } from '../src/status.js';

/** A KubeApi that records status patches (the only call the writer makes). */
function recordingKube() {
  const patches: { plural: string; namespace: string; name: string; status: object }[] = [];
  const kube = { patchStatus: async (r: { plural: string }, namespace: string, name: string, status: object) => void patches.push({ plural: r.plural, namespace, name, status }) };
  return { kube: kube as unknown as KubeApi, patches };
}

function webhook(generation: number, status?: WebhookStatus): WebhookResource {
  return { apiVersion: 'gantry.dev/v1alpha1', kind: 'Webhook', metadata: { name: 'orders', namespace: 'shop', uid: 'u1', generation }, spec: { url: 'https://x', eventTypes: ['*'] }, ...(status ? { status } : {}) };
}

test('the first write sets the conditions in order for the generation, with the fields and observedGeneration', async () => {
  const { kube, patches } = recordingKube();
  const writer = new StatusWriter(kube, () => new Date('2025-01-02T03:04:05.678Z'));
  await writer.write<WebhookStatus>(WEBHOOKS, webhook(3), { webhookId: 'wh_1' }, [
    { type: 'Synced', status: 'True', reason: 'Registered', message: 'registered as wh_1' },
    { type: 'Ready', status: 'True', reason: 'Active', message: 'deliveries are active' },
  ]);
  assert.deepEqual(patches, [
    {
      plural: 'webhooks',
      namespace: 'shop',
      name: 'orders',
      status: {
        webhookId: 'wh_1',
        observedGeneration: 3,
        conditions: [
          { type: 'Synced', status: 'True', reason: 'Registered', message: 'registered as wh_1', observedGeneration: 3, lastTransitionTime: '2025-01-02T03:04:05Z' },
          { type: 'Ready', status: 'True', reason: 'Active', message: 'deliveries are active', observedGeneration: 3, lastTransitionTime: '2025-01-02T03:04:05Z' },
        ],
      },
    },
  ]);
});

test('a status that would not change is not written; a changed reason keeps the transition time of an unchanged status', async () => {
  const { kube, patches } = recordingKube();
  let nowMs = Date.parse('2025-01-02T03:04:05Z');
  const writer = new StatusWriter(kube, () => new Date(nowMs));
  const synced = { type: 'Synced', status: 'False', reason: 'WebhooksUnavailable', message: 'down' } as const;
  await writer.write<WebhookStatus>(WEBHOOKS, webhook(1), {}, [synced]);
  const written = patches[0]!.status as WebhookStatus;

  nowMs += 60_000;
  await writer.write<WebhookStatus>(WEBHOOKS, webhook(1, written), {}, [synced]);
  assert.equal(patches.length, 1, 'the same status a minute later is not written again');

  await writer.write<WebhookStatus>(WEBHOOKS, webhook(1, written), {}, [{ ...synced, reason: 'Unauthorized', message: 'token refused' }]);
  assert.equal(patches.length, 2);
  const [condition] = (patches[1]!.status as WebhookStatus).conditions!;
  assert.equal(condition!.reason, 'Unauthorized');
  assert.equal(condition!.lastTransitionTime, '2025-01-02T03:04:05Z', 'still False: the transition time stays');

  await writer.write<WebhookStatus>(WEBHOOKS, webhook(2, patches[1]!.status as WebhookStatus), {}, [{ ...synced, reason: 'Unauthorized', message: 'token refused' }]);
  assert.equal(patches.length, 3, 'a new generation is written even with the same conditions');
  assert.equal((patches[2]!.status as WebhookStatus).observedGeneration, 2);
});
