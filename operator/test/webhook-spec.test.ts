// What a Webhook asks of the webhooks service, compared with what the service shows: header values
// are write-only there (Webhook.header_names), so the comparison takes the names and nothing else
// of the headers; a change of value reaches the service with a new generation's update.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { webhooksv1 } from '@gantry/proto';
import { desiredSpec, sameSpec } from '../src/reconcilers/webhook-spec.js';
import type { WebhookResource } from '../src/resources.js';

const resource = (headers: Record<string, string>): WebhookResource =>
  ({ apiVersion: 'gantry.dev/v1alpha1', kind: 'Webhook', metadata: { name: 'orders', namespace: 'ns', uid: 'u1', generation: 1 }, spec: { url: 'https://hooks.example.com/orders', eventTypes: ['b.x', 'a.x'], headers } }) as unknown as WebhookResource;

/** The registration as the service returns it: headers by name only. */
function registered(spec: webhooksv1.WebhookSpec): webhooksv1.Webhook {
  return { webhookId: 'wh_1', owner: 'op', externalId: 'k8s:u1', spec: { ...spec, headers: {}, eventTypes: [...spec.eventTypes].reverse() }, headerNames: Object.keys(spec.headers).sort(), eventFamilies: [] } as unknown as webhooksv1.Webhook;
}

test('a registration matches when the names of the headers match, whatever their values (which the service never returns)', () => {
  const spec = desiredSpec(resource({ Authorization: 'Bearer one', 'X-Team': 'payments' }));
  assert.equal(sameSpec(spec, registered(spec)), true);
  assert.equal(sameSpec(desiredSpec(resource({ Authorization: 'Bearer two', 'X-Team': 'payments' })), registered(spec)), true, 'a value is not comparable');
  assert.equal(sameSpec(desiredSpec(resource({ Authorization: 'Bearer one' })), registered(spec)), false, 'a header removed');
  assert.equal(sameSpec(spec, { ...registered(spec), spec: { ...registered(spec).spec!, url: 'https://elsewhere.example.com/' } }), false);
  assert.equal(sameSpec(spec, undefined), false);
});
