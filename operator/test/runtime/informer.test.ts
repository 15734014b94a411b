import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { testKube } from '../../../tests/support/kube.js';
import { Informer, type InformerEvent } from '../../src/runtime/index.js';
import { CuttableProxy, eventually, loadKubeConfig, serverUrl, testLogger } from './support.js';

const configMaps = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap' };

interface Seen {
  event: InformerEvent;
  name: string;
  value: string | undefined;
}

function informerFor(t: TestContext, kc: KubeConfig, namespace: string, extra: { watchTimeoutSeconds?: number } = {}) {
  const informer = new Informer<V1ConfigMap>({ kc, resource: configMaps, namespace, log: testLogger(), ...extra });
  const seen: Seen[] = [];
  informer.on((event, obj) => seen.push({ event, name: obj.metadata!.name!, value: obj.data?.v }));
  informer.start();
  t.after(() => informer.stop());
  return { informer, seen };
}

async function setUp(t: TestContext) {
  const kube = await testKube();
  if (typeof kube === 'string') return void t.skip(kube);
  const kc = loadKubeConfig(kube.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const namespace = await kube.namespace(t, 'informer');
  const put = async (name: string, v: string) => {
    try {
      await core.replaceNamespacedConfigMap({ namespace, name, body: { metadata: { name }, data: { v } } });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await core.createNamespacedConfigMap({ namespace, body: { metadata: { name }, data: { v } } });
    }
  };
  const remove = (name: string) => core.deleteNamespacedConfigMap({ namespace, name });
  return { kube, kc, core, namespace, put, remove };
}

async function proxied(t: TestContext, kc: KubeConfig, path: string) {
  const proxy = await CuttableProxy.start(serverUrl(kc));
  t.after(() => proxy.close());
  return { proxy, kc: loadKubeConfig(path, proxy.port) };
}

const has = (seen: Seen[], event: InformerEvent, name: string, value?: string) => seen.some((s) => s.event === event && s.name === name && (value === undefined || s.value === value));

test('the informer lists what exists, then sees adds, updates and deletes', async (t) => {
  const env = await setUp(t);
  if (!env) return;
  await env.put('before', '1');
  const { informer, seen } = informerFor(t, env.kc, env.namespace);
  await informer.synced();
  assert.deepEqual(seen, [{ event: 'add', name: 'before', value: '1' }]);
  assert.equal(informer.get(`${env.namespace}/before`)?.data?.v, '1');
  await env.put('after', '1');
  await env.put('after', '2');
  await env.remove('before');
  await eventually(() => seen.length === 4, 'add, update and delete');
  assert.deepEqual(seen.slice(1), [
    { event: 'add', name: 'after', value: '1' },
    { event: 'update', name: 'after', value: '2' },
    { event: 'delete', name: 'before', value: '1' },
  ]);
  assert.deepEqual(informer.list().map((c) => c.metadata!.name), ['after']);
  assert.equal(informer.get(`${env.namespace}/after`)?.kind, 'ConfigMap');
});

test('a watch broken mid-stream resumes from the last resourceVersion, without a re-list and without missing changes made meanwhile', async (t) => {
  const env = await setUp(t);
  if (!env) return;
  const { proxy, kc } = await proxied(t, env.kc, env.kube.kubeconfig);
  await env.put('a', '1');
  const { informer, seen } = informerFor(t, kc, env.namespace);
  await informer.synced();
  await env.put('a', '2');
  await eventually(() => has(seen, 'update', 'a', '2'), 'the update through the first watch');
  const watchesBefore = informer.watchCount;

  proxy.sever();
  await env.put('a', '3');
  await env.put('b', '1');
  await new Promise((r) => setTimeout(r, 700)); // the informer retries against the cut proxy meanwhile
  proxy.restore();

  await eventually(() => has(seen, 'update', 'a', '3') && has(seen, 'add', 'b', '1'), 'the changes made while the watch was cut');
  assert.equal(informer.listCount, 1, 'resumed from the resourceVersion, no re-list');
  assert.ok(informer.watchCount > watchesBefore, 'a new watch was opened');
  assert.deepEqual(
    seen.map((s) => `${s.event} ${s.name}=${s.value}`),
    ['add a=1', 'update a=2', 'update a=3', 'add b=1'],
  );
});

test('a resourceVersion the server no longer has (410 Gone) re-lists and emits what was missed, a delete included', async (t) => {
  const env = await setUp(t);
  if (!env) return;
  const { proxy, kc } = await proxied(t, env.kc, env.kube.kubeconfig);
  for (const name of ['same', 'changed', 'deleted']) await env.put(name, '1');
  const { informer, seen } = informerFor(t, kc, env.namespace);
  await informer.synced();
  assert.equal(seen.length, 3);

  // Away long enough for the history to be compacted: cut, change things, and resume from a
  // resourceVersion older than the API server's watch cache keeps (it answers with an ERROR event, code 410).
  proxy.sever();
  informer.resumeFromForTest('1');
  await env.put('changed', '2');
  await env.remove('deleted');
  await env.put('created', '1');
  proxy.restore();

  await eventually(() => seen.length === 6, 'the diff of the re-list');
  assert.equal(informer.listCount, 2, 'one re-list after the 410');
  assert.deepEqual(
    seen.slice(3).map((s) => `${s.event} ${s.name}=${s.value}`).sort(),
    ['add created=1', 'delete deleted=1', 'update changed=2'],
  );
  assert.deepEqual(informer.list().map((c) => c.metadata!.name).sort(), ['changed', 'created', 'same']);
  assert.ok(Number(informer.lastResourceVersion) > 1, 'resumes from the re-list, not from the expired version');
  // And it keeps watching from there.
  await env.put('same', '2');
  await eventually(() => has(seen, 'update', 'same', '2'), 'an update after the re-list');
});

test('bookmarks advance lastResourceVersion while nothing in the watched namespace changes', async (t) => {
  const env = await setUp(t);
  if (!env) return;
  const other = await env.kube.namespace(t, 'informer-other');
  // A short server-side timeout: the API server sends a bookmark shortly before it closes a watch.
  const { informer, seen } = informerFor(t, env.kc, env.namespace, { watchTimeoutSeconds: 3 });
  await informer.synced();
  const listedAt = Number(informer.lastResourceVersion);
  const elsewhere = await env.core.createNamespacedConfigMap({ namespace: other, body: { metadata: { name: 'elsewhere' } } });
  const target = Number(elsewhere.metadata!.resourceVersion);
  assert.ok(target > listedAt);
  await eventually(() => Number(informer.lastResourceVersion) >= target, 'a bookmark past the change elsewhere', 8_000);
  assert.deepEqual(seen, [], 'no object events: only a bookmark can have moved the resourceVersion');
  assert.equal(informer.listCount, 1);
});
