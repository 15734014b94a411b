import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { testKube } from '../../../tests/support/kube.js';
import { EventRecorder } from '../../src/runtime/index.js';
import { loadKubeConfig, testLogger } from './support.js';

test('an Event about an object is visible through the API, and a repeat raises its count instead of adding another', async (t) => {
  const kube = await testKube();
  if (typeof kube === 'string') return t.skip(kube);
  const kc = loadKubeConfig(kube.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const namespace = await kube.namespace(t, 'events');
  const cm = await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'subject' } } });
  const recorder = new EventRecorder({ kc, component: 'gantry-operator', instance: 'test-pod', log: testLogger() });

  recorder.event({ ...cm, apiVersion: 'v1', kind: 'ConfigMap' }, 'Warning', 'InvalidSpec', 'spec.url must be https');
  await recorder.flush();
  const first = (await core.listNamespacedEvent({ namespace })).items;
  assert.equal(first.length, 1);
  assert.equal(first[0]!.involvedObject.name, 'subject');
  assert.equal(first[0]!.involvedObject.uid, cm.metadata!.uid);
  assert.equal(first[0]!.type, 'Warning');
  assert.equal(first[0]!.reason, 'InvalidSpec');
  assert.equal(first[0]!.count, 1);
  assert.equal(first[0]!.source?.component, 'gantry-operator');

  recorder.event({ ...cm, apiVersion: 'v1', kind: 'ConfigMap' }, 'Warning', 'InvalidSpec', 'spec.url must be https');
  recorder.event({ ...cm, apiVersion: 'v1', kind: 'ConfigMap' }, 'Warning', 'InvalidSpec', 'spec.url must be https');
  recorder.event({ ...cm, apiVersion: 'v1', kind: 'ConfigMap' }, 'Normal', 'Ready', 'reconciled');
  await recorder.flush();
  const all = (await core.listNamespacedEvent({ namespace })).items;
  assert.equal(all.length, 2, 'the repeats updated the first Event; only the different one is new');
  const repeated = all.find((e) => e.reason === 'InvalidSpec')!;
  assert.equal(repeated.metadata?.name, first[0]!.metadata?.name);
  assert.equal(repeated.count, 3);
  assert.equal(all.find((e) => e.reason === 'Ready')!.count, 1);
});
