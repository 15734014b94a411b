import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/gantry-process.js';
import { ok, testKube } from '../support/kube.js';

// The chart's Webhook and FeatureFlag CRDs on a real API server: it checks that their schemas are
// structural and compiles their CEL rules, which helm lint and template cannot.

const chart = join(repoRoot, 'charts/gantry');
const crds = ['webhooks.gantry.dev', 'featureflags.gantry.dev'];

test("the chart's CRDs are accepted and established; valid Webhook and FeatureFlag resources are stored, invalid ones refused by the server's schema and CEL rules", async (t) => {
  const k = await testKube();
  if (typeof k === 'string') return t.skip(k);
  // Cluster-scoped: this is the only release in the test cluster that owns them (the other kube
  // tests install with crds.enabled=false); kept on uninstall by crds.keep, so deleted here.
  const deleteCrds = async () => ok(await k.kubectl(['delete', 'crd', ...crds, '--ignore-not-found']), 'kubectl delete crd');
  await deleteCrds(); // left by an interrupted run
  const ns = await k.namespace(t, 'chart-crds');
  t.after(deleteCrds);
  ok(await k.helm(['install', 'gy', chart, '--namespace', ns, '-f', join(chart, 'ci/monolithic-values.yaml')]), 'helm install');
  ok(await k.kubectl(['wait', '--for=condition=Established', ...crds.map((c) => `crd/${c}`), '--timeout=30s']), 'CRDs established');
  const webhook = (url: string) => JSON.stringify({ apiVersion: 'gantry.dev/v1alpha1', kind: 'Webhook', metadata: { name: 'orders', namespace: ns }, spec: { url, eventTypes: ['*'] } });
  ok(await k.kubectl(['create', '-f', '-'], webhook('https://hooks.example.com/orders')), 'creating a Webhook');
  assert.match(ok(await k.kubectl(['get', 'wh', '--namespace', ns, '-o', 'name']), 'kubectl get wh'), /webhook\.gantry\.dev\/orders/);
  const refused = await k.kubectl(['apply', '-f', '-'], webhook('ftp://hooks.example.com/orders'));
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /url must be an http\(s\) URL/);

  const flag = (spec: object, name = 'draws') => JSON.stringify({ apiVersion: 'gantry.dev/v1alpha1', kind: 'FeatureFlag', metadata: { name, namespace: ns }, spec });
  const valid = { state: 'ENABLED', type: 'boolean', variants: { on: true, off: false }, defaultVariant: 'on', targets: ['settlement'], targeting: { fractional: [['on', 50], ['off', 50]] } };
  ok(await k.kubectl(['create', '-f', '-'], flag(valid)), 'creating a FeatureFlag');
  assert.match(ok(await k.kubectl(['get', 'ff', 'draws', '--namespace', ns, '-o', 'jsonpath={.spec.variants.off}']), 'kubectl get ff'), /false/);
  for (const [bad, pattern] of [
    [{ ...valid, state: 'ON' }, /spec\.state: Unsupported value: "ON"/],
    [{ ...valid, targets: ['billing'] }, /spec\.targets\[0\]: Unsupported value: "billing"/],
    [{ ...valid, targets: [] }, /spec\.targets: Invalid value: .*should have at least 1 items/],
    [{ ...valid, variants: {} }, /spec\.variants: Invalid value: .*should have at least 1 properties/],
  ] as const) {
    // create, not apply: a merge into the stored flag would keep its variants.
    const r = await k.kubectl(['create', '-f', '-'], flag(bad, 'refused'));
    assert.notEqual(r.code, 0, JSON.stringify(bad));
    assert.match(r.stderr, pattern);
  }
});
