import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LIVENESS, READINESS, STARTUP } from '@gantry/kit';
// `yaml` is in node_modules (hoisted from the workspace's dependencies); helm template has no JSON output.
import { parseAllDocuments } from 'yaml';
import { configSchemaFor, configSources, envNamesOf } from '@gantry/kit';
import { registry } from '@gantry/cli/registry';
import { keysPlanSchema, type KeysPlan } from '@gantry/cli/keys';

const exec = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const chart = join(root, 'charts/gantry');
const ns = 'payments';
const release = 'gy';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- rendered manifests are untyped YAML

/** helm from scripts/test-env/helm.sh (extracted once, then a no-op); under CI a missing helm fails, elsewhere the tests skip. */
async function helmPath(): Promise<string | undefined> {
  try {
    const dir = (await exec('bash', [join(root, 'scripts/test-env/helm.sh')], { timeout: 120_000 })).stdout.trim();
    return join(dir, 'helm');
  } catch (err) {
    if (process.env.CI === 'true') throw new Error(`helm is missing: scripts/test-env/helm.sh failed (${(err as Error).message})`);
    return undefined;
  }
}

let helm: string | undefined;

async function runHelm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(helm!, args, { timeout: 60_000, maxBuffer: 32 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function valuesArgs(values: string[], set: string[]): string[] {
  return [...values.flatMap((v) => ['-f', join(chart, 'ci', v)]), ...set.flatMap((s) => ['--set', s])];
}

async function render(values: string[] = [], set: string[] = []): Promise<Obj[]> {
  const r = await runHelm(['template', release, chart, '--namespace', ns, ...valuesArgs(values, set)]);
  assert.equal(r.code, 0, r.stderr);
  return parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj).filter(Boolean);
}

/**
 * Each probe asks the health port for its own name (the kit's LIVENESS, STARTUP, READINESS), and the
 * startup probe's budget outlasts the database start-up timeout the process waits for.
 */
function assertProbes(container: Obj, where: string): void {
  assert.deepEqual(container.startupProbe.grpc, { port: 7080, service: STARTUP }, `${where} startupProbe`);
  assert.deepEqual(container.readinessProbe.grpc, { port: 7080, service: READINESS }, `${where} readinessProbe`);
  assert.deepEqual(container.livenessProbe.grpc, { port: 7080, service: LIVENESS }, `${where} livenessProbe`);
  const env = new Map<string, Obj>((container.env as Obj[]).map((e) => [e.name, e]));
  const startupTimeoutMs = Number(env.get('GANTRY_DATABASE_STARTUP_TIMEOUT_MS')?.value ?? 0);
  const budgetMs = container.startupProbe.periodSeconds * container.startupProbe.failureThreshold * 1000;
  assert.ok(budgetMs > startupTimeoutMs, `${where}: the startup probe (${budgetMs} ms) outlasts the database start-up timeout (${startupTimeoutMs} ms)`);
}

const ofKind = (docs: Obj[], kind: string) => docs.filter((d) => d.kind === kind);
const named = (docs: Obj[], kind: string, name: string) => {
  const found = docs.find((d) => d.kind === kind && d.metadata.name === name);
  assert.ok(found, `${kind} ${name} is rendered`);
  return found;
};
const envOf = (deployment: Obj) => new Map<string, Obj>((deployment.spec.template.spec.containers[0].env as Obj[]).map((e) => [e.name, e]));
const headless = (target: string) => `${release}-${target}-headless.${ns}.svc.cluster.local`;
const operator = `${release}-operator`;
const gateway = `${release}-gateway`;
const component = (o: Obj) => o.metadata.labels?.['app.kubernetes.io/component'] as string | undefined;
const rulesOf = (role: Obj) => (role.rules as Obj[]).map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, verbs: r.verbs }));

/** Object names by kind, each sorted: what an upgrade in place must keep. */
const namesByKind = (docs: Obj[]) => {
  const byKind: Record<string, string[]> = {};
  for (const d of docs) (byKind[d.kind] ??= []).push(d.metadata.name);
  return Object.fromEntries(Object.entries(byKind).sort().map(([kind, names]) => [kind, names.sort()]));
};

/** The keys Job's plan (Secret names and lifetimes), from its ConfigMap. */
function keysPlanOf(docs: Obj[]): KeysPlan | undefined {
  const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.labels?.['app.kubernetes.io/component'] === 'keys');
  return cm ? keysPlanSchema.parse(JSON.parse(cm.data['plan.json'])) : undefined;
}

/** Every Secret the keys Job makes. */
function plannedSecrets(plan: KeysPlan | undefined): string[] {
  if (!plan) return [];
  return [
    ...(plan.tls ? [plan.tls.caSecret, ...plan.tls.leaves.map((l) => l.secret)] : []),
    ...[plan.logSigningKey?.secret, plan.webhooksKeyRing?.secret, plan.devIssuer?.secret, plan.devIssuer?.jwksSecret].filter((x): x is string => !!x),
  ].sort();
}

/**
 * Every reference between rendered objects that does not resolve: ServiceAccounts, Secrets, PVCs
 * and Roles named by pods and bindings, Services named in peer and `helm test` addresses (with the
 * port, and the certificate behind them naming the host), selectors that select no pod, Issuers,
 * HPA targets. `external`: Secrets the values say exist outside the chart.
 */
function danglingReferences(docs: Obj[], external: string[] = []): string[] {
  const problems: string[] = [];
  const find = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name);
  const need = (where: string, kind: string, name: string) => {
    if (!find(kind, name)) problems.push(`${where} names ${kind} ${name}, which is not rendered`);
  };
  const plan = keysPlanOf(docs);
  const planned = plannedSecrets(plan);
  const secrets = new Set([...ofKind(docs, 'Secret').map((s) => s.metadata.name as string), ...ofKind(docs, 'Certificate').map((c) => c.spec.secretName as string), ...planned, ...external]);
  const pods = [
    ...ofKind(docs, 'Job').map((j) => ({ where: `Job ${j.metadata.name}`, spec: j.spec.template.spec as Obj, labels: j.spec.template.metadata.labels as Obj })),
    ...ofKind(docs, 'CronJob').map((j) => ({ where: `CronJob ${j.metadata.name}`, spec: j.spec.jobTemplate.spec.template.spec as Obj, labels: j.spec.jobTemplate.spec.template.metadata.labels as Obj })),
    ...ofKind(docs, 'Deployment').map((d) => ({ where: `Deployment ${d.metadata.name}`, spec: d.spec.template.spec as Obj, labels: d.spec.template.metadata.labels as Obj })),
    ...ofKind(docs, 'Pod').map((p) => ({ where: `Pod ${p.metadata.name}`, spec: p.spec as Obj, labels: p.metadata.labels as Obj })),
  ];
  const selected = (selector: Obj) => pods.filter((p) => Object.entries(selector).every(([k, v]) => p.labels[k] === v));
  const needPods = (where: string, selector: Obj) => {
    if (selected(selector).length === 0) problems.push(`${where} selects no pod: ${JSON.stringify(selector)}`);
  };
  /** The DNS names in the certificate a pod serves with (cert-manager Certificate or chart-generated Secret). */
  const certificateNames = (spec: Obj): string[] => {
    const secretName = (spec.volumes as Obj[]).find((v) => v.name === 'tls')?.secret.secretName as string;
    const certificate = ofKind(docs, 'Certificate').find((c) => c.spec.secretName === secretName);
    if (certificate) return certificate.spec.dnsNames as string[];
    return plan?.tls?.leaves.find((l) => l.secret === secretName)?.dnsNames ?? [];
  };
  const address = (where: string, value: string) => {
    const m = /^(?:dns:\/\/\/)?([^:]+):(\d+)$/.exec(value);
    if (!m) return void problems.push(`${where}: ${value} is not host:port`);
    const [, host, port] = m as unknown as [string, string, string];
    const [service, namespace] = host.split('.');
    const svc = find('Service', service!);
    if (!svc || namespace !== ns) return void problems.push(`${where}: ${value} names no Service of this release`);
    if (!(svc.spec.ports as Obj[]).some((p) => p.port === Number(port))) problems.push(`${where}: Service ${service} has no port ${port}`);
    for (const pod of selected(svc.spec.selector)) {
      if (!certificateNames(pod.spec).includes(host)) problems.push(`${where}: the certificate of ${pod.where} does not name ${host}`);
    }
  };
  for (const { where, spec } of pods) {
    if (spec.serviceAccountName) need(where, 'ServiceAccount', spec.serviceAccountName);
    for (const v of spec.volumes as Obj[]) {
      if (v.secret && !secrets.has(v.secret.secretName)) problems.push(`${where} mounts Secret ${v.secret.secretName}, which is not rendered`);
      if (v.persistentVolumeClaim) need(where, 'PersistentVolumeClaim', v.persistentVolumeClaim.claimName);
      if (v.configMap) need(where, 'ConfigMap', v.configMap.name);
    }
    for (const c of [...(spec.containers as Obj[]), ...((spec.initContainers ?? []) as Obj[])]) {
      for (const e of (c.env ?? []) as Obj[]) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref && !secrets.has(ref.name)) problems.push(`${where} reads ${e.name} from Secret ${ref.name}, which is not rendered`);
        if (e.name.endsWith('_ADDRESS')) address(`${where} ${e.name}`, e.value);
      }
      for (const arg of (c.args ?? []) as string[]) if (arg.startsWith('--address=')) address(`${where} ${arg}`, arg.slice('--address='.length));
    }
  }
  for (const d of docs) {
    const where = `${d.kind} ${d.metadata.name}`;
    if (d.kind === 'Service' || d.kind === 'PodDisruptionBudget' || d.kind === 'Deployment') needPods(where, d.spec.selector.matchLabels ?? d.spec.selector);
    if (d.kind === 'NetworkPolicy') {
      needPods(where, d.spec.podSelector.matchLabels);
      for (const peer of (d.spec.ingress as Obj[]).flatMap((r) => (r.from ?? []) as Obj[])) {
        // allowedClients name pods outside the release; the chart's own peers carry its instance label.
        if (peer.podSelector?.matchLabels?.['app.kubernetes.io/instance']) needPods(`${where} peer`, peer.podSelector.matchLabels);
      }
    }
    if (d.kind === 'HorizontalPodAutoscaler') need(where, d.spec.scaleTargetRef.kind, d.spec.scaleTargetRef.name);
    if (d.kind === 'RoleBinding') {
      need(where, d.roleRef.kind, d.roleRef.name);
      for (const s of d.subjects as Obj[]) need(where, s.kind, s.name);
    }
    if (d.kind === 'Certificate' && d.spec.issuerRef.kind === 'Issuer' && !external.includes(d.spec.issuerRef.name)) need(where, 'Issuer', d.spec.issuerRef.name);
    if (d.kind === 'Issuer' && d.spec.ca && !secrets.has(d.spec.ca.secretName)) problems.push(`${where} signs with Secret ${d.spec.ca.secretName}, which is not rendered`);
  }
  return problems;
}

/** Secrets ci/microservices-certmanager-values.yaml says exist outside the chart. */
const certManagerExternal = ['gantry-db', 'gantry-jwks'];

describe('charts/gantry', () => {
  before(async () => {
    helm = await helmPath();
  });

  const needsHelm = (t: { skip(msg: string): void }) => {
    if (!helm) t.skip('helm is not available (scripts/test-env/helm.sh failed; run npm ci)');
    return !helm;
  };

  test('helm lint passes with the default values and every ci values file', async (t) => {
    if (needsHelm(t)) return;
    const runs = await Promise.all([[], ['monolithic-values.yaml'], ['microservices-certmanager-values.yaml'], ['dev-values.yaml']].map((v) => runHelm(['lint', chart, '--strict', ...valuesArgs(v, [])])));
    for (const r of runs) assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  test('every GANTRY_* variable a container gets is a config key of the program (so none is refused at start)', async (t) => {
    if (needsHelm(t)) return;
    const known = envNamesOf(configSchemaFor(configSources(registry.all())));
    for (const values of [[], ['monolithic-values.yaml'], ['microservices-certmanager-values.yaml'], ['dev-values.yaml']]) {
      const names = new Set<string>();
      for (const doc of await render(values, ['database.url=postgres://u:p@db:5432/gantry', 'telemetry.otlpEndpoint=http://otel:4317'])) {
        const spec = (doc.spec as Obj | undefined)?.template ? ((doc.spec as Obj).template as Obj).spec as Obj : (doc.kind === 'Pod' ? (doc.spec as Obj) : undefined);
        for (const c of [...((spec?.containers as Obj[]) ?? []), ...((spec?.initContainers as Obj[]) ?? [])]) {
          for (const e of (c.env as Obj[]) ?? []) if (String(e.name).startsWith('GANTRY_')) names.add(String(e.name));
        }
      }
      assert.ok(names.size > 10, `${values.join(',') || 'defaults'}: found ${names.size} GANTRY_* names`);
      for (const name of names) assert.ok(known.has(name), `${values.join(',') || 'defaults'}: ${name} is not a config key of the program`);
    }
  });

  test('the default, monolithic and cert-manager renders keep every object name, so existing installs upgrade in place', async (t) => {
    if (needsHelm(t)) return;
    const [micro, mono, certManager] = await Promise.all([render(), render(['monolithic-values.yaml']), render(['microservices-certmanager-values.yaml'])]);
    const crds = ['featureflags.gantry.dev', 'webhooks.gantry.dev'];
    const targets = ['gy-approvals', 'gy-log', 'gy-settlement', 'gy-webhooks'];
    const components = ['gy-approvals', 'gy-gateway', 'gy-log', 'gy-operator', 'gy-settlement', 'gy-webhooks'];
    const services = ['gy-approvals', 'gy-approvals-headless', 'gy-gateway', 'gy-log', 'gy-log-headless', 'gy-settlement', 'gy-settlement-headless', 'gy-webhooks', 'gy-webhooks-headless'];
    const tests = targets.map((x) => `${x}-test-health`);
    const keys = { ConfigMap: ['gy-keys'], CronJob: ['gy-keys'], Job: ['gy-keys'] };
    assert.deepEqual(namesByKind(micro), {
      ...keys,
      CustomResourceDefinition: crds,
      Deployment: components,
      NetworkPolicy: components,
      Pod: tests,
      PodDisruptionBudget: components,
      Role: ['gy-keys', 'gy-operator'],
      RoleBinding: ['gy-keys', 'gy-operator'],
      Service: services,
      ServiceAccount: [...components, 'gy-keys'].sort(),
    });
    // The Secrets the keys Job makes keep the names the chart's own Secrets had.
    assert.deepEqual(plannedSecrets(keysPlanOf(micro)), ['gy-approvals-tls', 'gy-ca', 'gy-gateway-tls', 'gy-helm-test-tls', 'gy-log-signing-key', 'gy-log-tls', 'gy-operator-tls', 'gy-settlement-tls', 'gy-webhooks-keys', 'gy-webhooks-tls']);
    assert.deepEqual(plannedSecrets(keysPlanOf(mono)), ['gy-ca', 'gy-gantry-tls', 'gy-helm-test-tls', 'gy-log-signing-key', 'gy-operator-tls', 'gy-webhooks-keys']);
    assert.deepEqual(plannedSecrets(keysPlanOf(certManager)), ['gy-log-signing-key', 'gy-webhooks-keys']);
    assert.deepEqual(namesByKind(mono), {
      CustomResourceDefinition: crds,
      Deployment: ['gy-gantry', 'gy-operator'],
      NetworkPolicy: ['gy-gantry', 'gy-operator'],
      PersistentVolumeClaim: ['gy-gantry-data'],
      Pod: ['gy-gantry-test-health'],
      PodDisruptionBudget: ['gy-operator'],
      Role: ['gy-keys', 'gy-operator'],
      RoleBinding: ['gy-keys', 'gy-operator'],
      Service: ['gy-gantry'],
      ServiceAccount: ['gy-gantry', 'gy-keys', 'gy-operator'],
      ...keys,
    });
    assert.deepEqual(namesByKind(certManager), {
      Certificate: ['gy-approvals-tls', 'gy-ca', 'gy-gateway-tls', 'gy-helm-test-tls', 'gy-log-tls', 'gy-operator-tls', 'gy-settlement-tls', 'gy-webhooks-tls'],
      CustomResourceDefinition: crds,
      Deployment: components,
      HorizontalPodAutoscaler: ['gy-settlement'],
      Issuer: ['gy-ca', 'gy-selfsigned'],
      NetworkPolicy: components,
      Pod: tests,
      PodDisruptionBudget: ['gy-gateway', 'gy-log', 'gy-operator', 'gy-settlement', 'gy-webhooks'],
      Role: ['gy-keys', 'gy-operator'],
      RoleBinding: ['gy-keys', 'gy-operator'],
      Service: services,
      ServiceAccount: [...components, 'gy-keys'].sort(),
      ...keys,
    });
    for (const d of [...micro, ...mono, ...certManager]) assert.equal(d.metadata.labels['app.kubernetes.io/name'], 'gantry', `${d.kind} ${d.metadata.name}`);
    assert.deepEqual(danglingReferences(micro, ['gantry-database']), [], 'default values');
    assert.deepEqual(danglingReferences(mono), [], 'monolithic');
    assert.deepEqual(danglingReferences(certManager, certManagerExternal), [], 'cert-manager');
  });

  test('the dangling-reference check finds a missing Service, Secret, ServiceAccount, a wrong port and a certificate that does not name the host', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render();
    const without = (kind: string, name: string) => docs.filter((d) => !(d.kind === kind && d.metadata.name === name));
    assert.ok(danglingReferences(without('Service', `${release}-log-headless`)).some((p) => p.includes(`dns:///${headless('log')}:7443 names no Service`)));
    const dev = await render([], ['auth.devIssuer=true']);
    const unplanned = dev.filter((d) => !(d.kind === 'ConfigMap' && d.metadata.name === `${release}-keys`));
    assert.ok(danglingReferences(unplanned).some((p) => p.includes(`mounts Secret ${release}-dev-jwks`)), 'a Secret neither rendered nor planned');
    assert.ok(danglingReferences(without('ServiceAccount', operator)).some((p) => p.startsWith(`RoleBinding ${operator} names ServiceAccount`)));
    const moved = structuredClone(docs);
    named(moved, 'Service', `${release}-log-headless`).spec.ports[0].port = 7444;
    assert.ok(danglingReferences(moved).some((p) => p.includes(`has no port 7443`)));
    const miscertified = structuredClone(docs);
    const planMap = named(miscertified, 'ConfigMap', `${release}-keys`);
    const plan = JSON.parse(planMap.data['plan.json']) as KeysPlan;
    plan.tls!.leaves.find((l) => l.workload === 'log')!.dnsNames = plan.tls!.leaves.find((l) => l.workload === 'webhooks')!.dnsNames;
    planMap.data['plan.json'] = JSON.stringify(plan);
    assert.ok(danglingReferences(miscertified).some((p) => p.includes(`does not name ${headless('log')}`)));
  });

  test('fullnameOverride and nameOverride rename every object alike: no reference is left dangling', async (t) => {
    if (needsHelm(t)) return;
    const cases: [string, string[], string[], string, string][] = [
      ['fullnameOverride', [], ['fullnameOverride=pay'], 'pay', 'gantry'],
      ['fullnameOverride, monolithic', ['monolithic-values.yaml'], ['fullnameOverride=pay'], 'pay', 'gantry'],
      ['fullnameOverride, cert-manager', ['microservices-certmanager-values.yaml'], ['fullnameOverride=pay'], 'pay', 'gantry'],
      ['nameOverride', [], ['nameOverride=ledger'], `${release}-ledger`, 'ledger'],
      ['nameOverride, monolithic', ['monolithic-values.yaml'], ['nameOverride=ledger'], `${release}-ledger`, 'ledger'],
      ['nameOverride, cert-manager', ['microservices-certmanager-values.yaml'], ['nameOverride=ledger'], `${release}-ledger`, 'ledger'],
      ['both', [], ['fullnameOverride=pay', 'nameOverride=ledger'], 'pay', 'ledger'],
    ];
    await Promise.all(cases.map(async ([what, values, set, prefix, appName]) => {
      const docs = await render(values, set);
      for (const d of docs) {
        const where = `${what}: ${d.kind} ${d.metadata.name}`;
        if (d.kind !== 'CustomResourceDefinition') assert.ok(d.metadata.name.startsWith(`${prefix}-`) && !d.metadata.name.startsWith('gy-gy'), where);
        assert.equal(d.metadata.labels['app.kubernetes.io/name'], appName, where);
        assert.equal(d.metadata.labels['app.kubernetes.io/instance'], release, `${where}: still this release`);
      }
      const external = values.includes('microservices-certmanager-values.yaml') ? certManagerExternal : ['gantry-database'];
      assert.deepEqual(danglingReferences(docs, external), [], what);
      const operatorEnv = envOf(named(docs, 'Deployment', `${prefix}-operator`));
      assert.equal(operatorEnv.get('GANTRY_OPERATOR_LEASE_NAME')!.value, `${prefix}-operator`, `${what}: the Lease follows`);
      assert.deepEqual(named(docs, 'RoleBinding', `${prefix}-operator`).subjects, [{ kind: 'ServiceAccount', name: `${prefix}-operator`, namespace: ns }], what);
    }));
    // A release name that already holds nameOverride is not repeated (the bitnami rule).
    const r = await runHelm(['template', 'ledger-eu', chart, '--namespace', ns, '--set', 'nameOverride=ledger']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(parseAllDocuments(r.stdout).some((d) => (d.toJSON() as Obj | null)?.metadata?.name === 'ledger-eu-log'));
  });

  test('long names are cut so every object name stays a DNS label, and the schema refuses a fullnameOverride that would not fit', async (t) => {
    if (needsHelm(t)) return;
    const longRelease = 'a-release-name-of-fifty-three-characters-for-the-test';
    assert.equal(longRelease.length, 53, 'the longest release name Helm accepts');
    const r = await runHelm(['template', longRelease, chart, '--namespace', ns]);
    assert.equal(r.code, 0, r.stderr);
    for (const [docs, prefix] of [
      [parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj).filter(Boolean), longRelease.slice(0, 40)],
      [await render(['monolithic-values.yaml'], [`fullnameOverride=${'p'.repeat(40)}`]), 'p'.repeat(40)],
    ] as const) {
      assert.deepEqual(danglingReferences(docs, ['gantry-database']), []);
      for (const d of docs.filter((x) => x.kind !== 'CustomResourceDefinition')) {
        assert.ok(d.metadata.name.startsWith(`${prefix}-`), d.metadata.name);
        assert.ok(d.metadata.name.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(d.metadata.name), `${d.kind} ${d.metadata.name} is a DNS label`);
      }
    }
    for (const bad of [`fullnameOverride=${'p'.repeat(41)}`, 'fullnameOverride=Pay', 'nameOverride=ledger_1']) {
      const refused = await runHelm(['template', release, chart, '--set', bad]);
      assert.notEqual(refused.code, 0, bad);
      assert.match(refused.stderr, /values don't meet the specifications of the schema/, bad);
    }
  });

  test("podLabels and podAnnotations reach every gantry pod, a component's over the global ones, never over the chart's own labels", async (t) => {
    if (needsHelm(t)) return;
    const set = [
      'podLabels.team=payments', 'podLabels.app\\.kubernetes\\.io/component=mine', 'podAnnotations.prometheus\\.io/path=/metrics',
      'targets.log.podLabels.team=ledger', 'targets.log.podAnnotations.note=log-only', 'operator.podLabels.tier=control', 'monolithic.podAnnotations.note=monolith-only',
    ];
    for (const values of [[], ['monolithic-values.yaml']]) {
      const docs = await render(values, set);
      for (const d of ofKind(docs, 'Deployment')) {
        const { labels, annotations } = d.spec.template.metadata;
        const c = component(d)!;
        const where = `${d.metadata.name} (${values.join() || 'defaults'})`;
        assert.equal(labels['app.kubernetes.io/component'], c, `${where}: the chart's labels win`);
        assert.deepEqual(d.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'gantry', 'app.kubernetes.io/instance': release, 'app.kubernetes.io/component': c }, where);
        assert.equal(labels.team, c === 'log' ? 'ledger' : 'payments', `${where}: the component's podLabels over the global ones`);
        assert.equal(labels.tier, c === 'operator' ? 'control' : undefined, where);
        assert.equal(annotations['prometheus.io/path'], '/metrics', where);
        assert.equal(annotations.note, { log: 'log-only', gantry: 'monolith-only' }[c], where);
      }
      for (const pod of ofKind(docs, 'Pod')) assert.equal(pod.metadata.labels.team, undefined, `${pod.metadata.name}: helm test Pods keep their own labels`);
    }
    const plain = named(await render(), 'Deployment', `${release}-log`).spec.template.metadata;
    assert.equal(plain.annotations, undefined, 'no annotations by default');
  });

  test('serviceAccount: one per component, annotated globally and per component; only the operator gets an API token; create=false uses the named ones and binds the operator Role to its own', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render([], ['serviceAccount.annotations.iam\\.example\\.com/role=gantry', 'operator.serviceAccount.annotations.iam\\.example\\.com/role=gantry-operator', 'targets.webhooks.serviceAccount.name=egress']);
    // The keys Job's own ServiceAccount is a hook, created whatever serviceAccount says (its Role is bound to it).
    const accounts = ofKind(docs, 'ServiceAccount').filter((a) => a.metadata.name !== `${release}-keys`);
    assert.deepEqual(accounts.map((a) => a.metadata.name).sort(), [`${release}-approvals`, gateway, `${release}-log`, operator, `${release}-settlement`, 'egress'].sort());
    for (const a of accounts) {
      const isOperator = a.metadata.name === operator;
      assert.equal(a.metadata.annotations['iam.example.com/role'], isOperator ? 'gantry-operator' : 'gantry', a.metadata.name);
      assert.equal(a.automountServiceAccountToken, isOperator ? undefined : false, `${a.metadata.name}: no token unless it calls the API`);
    }
    for (const d of ofKind(docs, 'Deployment')) {
      const pod = d.spec.template.spec;
      assert.equal(pod.serviceAccountName, d.metadata.name === `${release}-webhooks` ? 'egress' : d.metadata.name, d.metadata.name);
      assert.equal(pod.automountServiceAccountToken, d.metadata.name === operator, d.metadata.name);
    }

    const external = await render([], ['serviceAccount.create=false', 'operator.serviceAccount.name=gantry-operator-sa', 'targets.log.serviceAccount.name=log-sa']);
    assert.deepEqual(ofKind(external, 'ServiceAccount').map((a) => a.metadata.name), [`${release}-keys`], "none created but the keys Job's");
    const runsAs = (name: string) => named(external, 'Deployment', name).spec.template.spec.serviceAccountName;
    assert.equal(runsAs(`${release}-log`), 'log-sa');
    assert.equal(runsAs(`${release}-settlement`), 'default', "unnamed: the namespace's default, with no token mounted");
    assert.equal(runsAs(operator), 'gantry-operator-sa');
    assert.deepEqual(named(external, 'RoleBinding', operator).subjects, [{ kind: 'ServiceAccount', name: 'gantry-operator-sa', namespace: ns }]);
    const mono = await render(['monolithic-values.yaml'], ['serviceAccount.create=false', 'operator.enabled=false']);
    assert.equal(named(mono, 'Deployment', `${release}-gantry`).spec.template.spec.serviceAccountName, 'default');
  });

  test('checksum/config rolls the target pods when database.url changes, and not when anything else does or on a second render', async (t) => {
    if (needsHelm(t)) return;
    const url = 'database.url=postgres://gantry:one@db:5432/gantry';
    const checksums = async (set: string[]) => {
      const docs = await render([], set);
      return new Map(ofKind(docs, 'Deployment').map((d) => [d.metadata.name as string, d.spec.template.metadata.annotations?.['checksum/config'] as string | undefined]));
    };
    const targets = ['log', 'settlement', 'approvals', 'webhooks'].map((x) => `${release}-${x}`);
    const [first, again, otherValues, otherUrl, noUrl] = await Promise.all([
      checksums([url]),
      checksums([url]),
      checksums([url, 'telemetry.logLevel=debug', 'targets.log.replicas=3', 'image.tag=0.2.0', 'podAnnotations.checksum/config=mine', 'webhooks.allowedCidrs=10.0.0.0/8']),
      checksums(['database.url=postgres://gantry:two@db:5432/gantry']),
      checksums([]),
    ]);
    for (const name of targets) {
      assert.match(first.get(name) ?? '', /^[0-9a-f]{64}$/, `${name} digests the database Secret it reads`);
      assert.equal(again.get(name), first.get(name), `${name}: a second render (fresh generated keys) changes nothing`);
      assert.equal(otherValues.get(name), first.get(name), `${name}: values outside the Secret (and a podAnnotation of the same name) do not change it`);
      assert.notEqual(otherUrl.get(name), first.get(name), `${name}: a new database.url rolls the pods`);
      assert.equal(noUrl.get(name), undefined, `${name}: with database.existingSecret the chart renders no config of its own`);
    }
    assert.equal(first.get(operator), undefined, 'the operator reads no database');
    const mono = await render(['monolithic-values.yaml'], [url]);
    assert.ok(ofKind(mono, 'Deployment').every((d) => !d.spec.template.metadata.annotations?.['checksum/config']), 'the monolith ignores database values');
  });

  test('every Deployment is hardened and probed by gRPC on the plaintext health port', async (t) => {
    if (needsHelm(t)) return;
    for (const values of [[], ['monolithic-values.yaml'], ['microservices-certmanager-values.yaml']]) {
      const deployments = ofKind(await render(values), 'Deployment');
      assert.ok(deployments.length > 0);
      for (const d of deployments) {
        const pod = d.spec.template.spec;
        const where = `${d.metadata.name} (${values.join() || 'defaults'})`;
        assert.equal(pod.securityContext.runAsNonRoot, true, where);
        assert.equal(pod.securityContext.runAsUser, 10001, where);
        assert.equal(pod.securityContext.fsGroup, 10001, where);
        assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault', where);
        assert.equal(pod.automountServiceAccountToken, d.metadata.name === operator, `${where}: only the operator gets an API token`);
        const graceMs = Number(envOf(d).get('GANTRY_LIMITS_SHUTDOWN_GRACE_MS')!.value);
        assert.ok(pod.terminationGracePeriodSeconds * 1000 > graceMs, `${where}: terminationGracePeriodSeconds above the shutdown grace`);
        for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
          assert.equal(c.securityContext.readOnlyRootFilesystem, true, where);
          assert.equal(c.securityContext.allowPrivilegeEscalation, false, where);
          assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], where);
        }
        const main = pod.containers[0];
        assertProbes(main, where);
        const mounts = new Map<string, Obj>(main.volumeMounts.map((m: Obj) => [m.mountPath, m]));
        assert.ok(mounts.has('/tmp') && mounts.has('/var/lib/gantry'), `${where}: writable /tmp and data dir`);
        assert.equal(mounts.get('/etc/gantry/tls')!.readOnly, true, where);
        const env = envOf(d);
        assert.equal(env.get('GANTRY_DATA_DIR')!.value, '/var/lib/gantry');
        assert.equal(env.get('GANTRY_TLS_CERT_FILE')!.value, '/etc/gantry/tls/tls.crt');
        for (const name of env.keys()) assert.match(name, /^GANTRY_/, `${where}: only GANTRY_* configuration`);
        if (d.metadata.name !== operator && d.metadata.name !== gateway) {
          // Connections age out so round_robin clients re-resolve; streams keep running (no grace limit).
          assert.equal(env.get('GANTRY_LIMITS_MAX_CONNECTION_AGE_MS')?.value, '300000', where);
          assert.equal(env.get('GANTRY_LIMITS_MAX_CONNECTION_AGE_GRACE_MS')?.value, '0', where);
        }
      }
    }
  });

  test('microservices: relays reach log and webhooks through their headless Services, from the database Secret', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render();
    assert.deepEqual(ofKind(docs, 'Deployment').map((d) => d.metadata.name).sort(), ['approvals', 'gateway', 'log', 'operator', 'settlement', 'webhooks'].map((x) => `${release}-${x}`));
    for (const target of ['log', 'settlement', 'approvals', 'webhooks']) {
      const svc = named(docs, 'Service', `${release}-${target}-headless`);
      assert.equal(svc.spec.clusterIP, 'None');
      assert.equal(svc.spec.ports[0].port, 7443);
      assert.equal(named(docs, 'Service', `${release}-${target}`).spec.type, 'ClusterIP');
      assert.equal(named(docs, 'ServiceAccount', `${release}-${target}`).automountServiceAccountToken, false);
      const env = envOf(named(docs, 'Deployment', `${release}-${target}`));
      assert.deepEqual(env.get('GANTRY_DATABASE_URL')!.valueFrom.secretKeyRef, { name: 'gantry-database', key: 'url' });
      assert.equal(env.get('GANTRY_DATABASE_STARTUP_TIMEOUT_MS')!.value, '300000', `${target}: a late database is waited for`);
      assert.equal(env.get('GANTRY_RATE_LIMIT_STORE')!.value, 'postgres', `${target}: 2 replicas share rate-limit counters`);
      if (target === 'settlement' || target === 'approvals') {
        assert.equal(env.get('GANTRY_PEERS_LOG_ADDRESS')!.value, `dns:///${headless('log')}:7443`);
        assert.equal(env.get('GANTRY_PEERS_WEBHOOKS_ADDRESS')!.value, `dns:///${headless('webhooks')}:7443`);
      } else {
        assert.ok(!env.has('GANTRY_PEERS_LOG_ADDRESS'), `${target} relays nothing`);
      }
    }
    const one = await render([], ['targets.log.replicas=1', 'database.url=postgres://u:p@db:5432/gantry']);
    const logEnv = envOf(named(one, 'Deployment', `${release}-log`));
    assert.equal(logEnv.get('GANTRY_RATE_LIMIT_STORE')!.value, 'memory');
    assert.deepEqual(logEnv.get('GANTRY_DATABASE_URL')!.valueFrom.secretKeyRef, { name: `${release}-database`, key: 'url' });
    assert.equal(Buffer.from(named(one, 'Secret', `${release}-database`).data.url, 'base64').toString(), 'postgres://u:p@db:5432/gantry');
    assert.ok(!ofKind(one, 'PodDisruptionBudget').some((p) => p.metadata.name === `${release}-log`), 'no PDB for a single replica');
  });

  test('NetworkPolicies let only the declared peers, the operator and allowedClients reach 7443, and anyone reach 7080', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render(['microservices-certmanager-values.yaml']);
    const callers = (target: string, from = docs) => {
      const policy = named(from, 'NetworkPolicy', `${release}-${target}`);
      const rules = policy.spec.ingress as Obj[];
      assert.deepEqual(rules.find((r) => r.ports[0].port === 7080), { ports: [{ port: 7080, protocol: 'TCP' }] });
      const grpc = rules.filter((r) => r.ports.some((p: Obj) => p.port === 7443));
      assert.equal(grpc.length, 1);
      return (grpc[0]!.from as Obj[]).map((f) => f.podSelector.matchLabels['app.kubernetes.io/component'] ?? f.podSelector.matchLabels['app.kubernetes.io/name']);
    };
    assert.deepEqual(callers('log'), ['settlement', 'approvals', 'operator', 'gateway', 'helm-test', 'gantry-clients']);
    assert.deepEqual(callers('webhooks'), ['settlement', 'approvals', 'operator', 'gateway', 'helm-test', 'gantry-clients']);
    assert.deepEqual(callers('settlement'), ['operator', 'gateway', 'helm-test', 'gantry-clients']);
    assert.deepEqual(callers('approvals'), ['operator', 'gateway', 'helm-test', 'gantry-clients']);
    const operatorPeer = (named(docs, 'NetworkPolicy', `${release}-log`).spec.ingress as Obj[])[1]!.from.find((f: Obj) => f.podSelector.matchLabels['app.kubernetes.io/component'] === 'operator');
    assert.deepEqual(operatorPeer.podSelector.matchLabels, named(docs, 'Deployment', operator).spec.selector.matchLabels, 'the peer selects exactly the operator pods');
    assert.deepEqual(named(docs, 'NetworkPolicy', operator).spec.ingress, [{ ports: [{ port: 7080, protocol: 'TCP' }] }], 'the operator takes no gRPC: health port only');
    const without = await render(['microservices-certmanager-values.yaml'], ['operator.enabled=false']);
    assert.deepEqual(callers('settlement', without), ['gateway', 'helm-test', 'gantry-clients']);
    assert.ok(!ofKind(without, 'NetworkPolicy').some((p) => p.metadata.name === operator));
  });

  test('cert-manager: a CA Issuer bootstrap and one Certificate per target naming its Services, headless included', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render(['microservices-certmanager-values.yaml']);
    assert.ok(named(docs, 'Issuer', `${release}-selfsigned`).spec.selfSigned);
    assert.equal(named(docs, 'Certificate', `${release}-ca`).spec.isCA, true);
    assert.equal(named(docs, 'Issuer', `${release}-ca`).spec.ca.secretName, `${release}-ca`);
    for (const target of ['log', 'settlement', 'approvals', 'webhooks']) {
      const cert = named(docs, 'Certificate', `${release}-${target}-tls`);
      for (const dns of [`${release}-${target}`, `${release}-${target}-headless`, headless(target), `${release}-${target}.${ns}.svc.cluster.local`]) {
        assert.ok(cert.spec.dnsNames.includes(dns), `${target} certificate names ${dns}`);
      }
      assert.ok(cert.spec.usages.includes('server auth') && cert.spec.usages.includes('client auth'));
      assert.equal(cert.spec.issuerRef.name, `${release}-ca`);
      assert.equal(named(docs, 'Deployment', `${release}-${target}`).spec.template.spec.volumes.find((v: Obj) => v.name === 'tls').secret.secretName, cert.spec.secretName);
    }
    const opCert = named(docs, 'Certificate', `${operator}-tls`);
    assert.deepEqual(opCert.spec.usages, ['client auth', 'digital signature'], 'the operator only calls');
    assert.deepEqual(opCert.spec.dnsNames, [operator]);
    assert.equal(opCert.spec.issuerRef.name, `${release}-ca`);
    assert.ok(!ofKind(docs, 'Secret').some((s) => s.metadata.name.endsWith('-tls')), 'no chart-generated certificates');
    const byRef = await render(['microservices-certmanager-values.yaml'], ['tls.certManager.issuerRef.name=corp-ca', 'tls.certManager.issuerRef.kind=ClusterIssuer']);
    assert.equal(ofKind(byRef, 'Issuer').length, 0);
    assert.deepEqual(named(byRef, 'Certificate', `${release}-log-tls`).spec.issuerRef, { name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  });

  test('external issuer: the JWKS file mounted from its Secret and no service token, autoscaled settlement has an HPA and no fixed replicas', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render(['microservices-certmanager-values.yaml']);
    const settlement = named(docs, 'Deployment', `${release}-settlement`);
    const env = envOf(settlement);
    assert.equal(env.get('GANTRY_AUTH_JWKS_FILE')!.value, '/etc/gantry/jwks/jwks.json');
    assert.equal(env.get('GANTRY_AUTH_ISSUER')!.value, 'https://issuer.example.com');
    assert.equal(env.get('GANTRY_TELEMETRY_OTLP_ENDPOINT')!.value, 'http://otel-collector.observability:4317');
    assert.ok(!env.has('GANTRY_PEERS_TOKEN_FILE'), 'the relay calls as its workload, by certificate');
    assert.equal(settlement.spec.replicas, undefined);
    assert.equal(named(docs, 'HorizontalPodAutoscaler', `${release}-settlement`).spec.maxReplicas, 10);
    assert.equal(envOf(named(docs, 'Deployment', `${release}-approvals`)).get('GANTRY_RATE_LIMIT_STORE')!.value, 'memory');
    assert.ok(!ofKind(docs, 'Secret').some((s) => s.metadata.name === `${release}-dev-jwt`));
  });

  test('keys: the keys Job (install, upgrade) and CronJob make the CA and a certificate per component with its workload ID once, at runtime; no render holds key material', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render();
    const plan = keysPlanOf(docs)!;
    assert.deepEqual(plan.tls!.leaves.map((l) => [l.secret, l.workload, l.usage]), [
      [`${release}-log-tls`, 'log', 'both'],
      [`${release}-settlement-tls`, 'settlement', 'both'],
      [`${release}-approvals-tls`, 'approvals', 'both'],
      [`${release}-webhooks-tls`, 'webhooks', 'both'],
      [`${operator}-tls`, 'operator', 'client'],
      [`${gateway}-tls`, 'gateway', 'both'],
      [`${release}-helm-test-tls`, 'helm-test', 'client'],
    ]);
    assert.ok(plan.tls!.leaves[0]!.dnsNames.includes(headless('log')));
    assert.deepEqual(plan.tls!.leaves[4]!.dnsNames, [operator], 'the operator serves nothing');
    assert.deepEqual([plan.tls!.certDays, plan.tls!.renewBeforeDays], [90, 30]);
    assert.equal(keysPlanOf(await render(['monolithic-values.yaml']))!.tls!.leaves[0]!.workload, 'all', 'the monolith is workload all');
    const job = named(docs, 'Job', `${release}-keys`);
    assert.equal(job.metadata.annotations['helm.sh/hook'], 'pre-install,pre-upgrade');
    for (const kind of ['ServiceAccount', 'Role', 'RoleBinding', 'ConfigMap']) {
      assert.ok(Number(named(docs, kind, `${release}-keys`).metadata.annotations['helm.sh/hook-weight']) < Number(job.metadata.annotations['helm.sh/hook-weight']), `${kind} exists before the Job runs`);
    }
    const cron = named(docs, 'CronJob', `${release}-keys`);
    for (const spec of [job.spec.template.spec, cron.spec.jobTemplate.spec.template.spec]) {
      assert.deepEqual(spec.containers[0].args, ['keys', 'ensure', '--plan=/etc/gantry/keys/plan.json']);
      assert.equal(spec.serviceAccountName, `${release}-keys`);
      assert.equal(spec.containers[0].securityContext.readOnlyRootFilesystem, true);
    }
    // It alone may create Secrets; it reads and updates only those of its plan.
    const [create, named_] = named(docs, 'Role', `${release}-keys`).rules as Obj[];
    assert.deepEqual(create, { apiGroups: [''], resources: ['secrets'], verbs: ['create'] });
    assert.deepEqual(named_!.verbs, ['get', 'update', 'patch']);
    assert.deepEqual([...named_!.resourceNames].sort(), plannedSecrets(plan));
    // GitOps: a render holds no key material, so two renders are the same and apply as no change.
    const text = JSON.stringify(docs);
    assert.doesNotMatch(text, /PRIVATE KEY|BEGIN CERTIFICATE/);
    assert.deepEqual(await render(), docs, 'a second render is identical');
  });

  test('no rendered pod mounts a private JWT key: by default none trusts a token issuer at all; with auth.devIssuer they mount its public JWKS only', async (t) => {
    if (needsHelm(t)) return;
    const podSpecs = (docs: Obj[]) => [
      ...ofKind(docs, 'Deployment').map((d) => [d.metadata.name, d.spec.template.spec] as const),
      ...ofKind(docs, 'Pod').map((p) => [p.metadata.name, p.spec] as const),
      ...ofKind(docs, 'Job').map((j) => [j.metadata.name, j.spec.template.spec] as const),
      ...ofKind(docs, 'CronJob').map((j) => [j.metadata.name, j.spec.jobTemplate.spec.template.spec] as const),
    ];
    const mounted = (spec: Obj) => ((spec.volumes ?? []) as Obj[]).map((v) => v.secret?.secretName as string | undefined).filter(Boolean);
    for (const values of [[], ['monolithic-values.yaml']]) {
      const docs = await render(values);
      for (const [name, spec] of podSpecs(docs)) {
        assert.ok(!mounted(spec).some((m) => /dev-jwt|jwks/.test(m!)), `${name} mounts no JWT key`);
        assert.equal(spec.initContainers, undefined, `${name}: no dev-key init container`);
        const env = new Map(((spec.containers[0].env ?? []) as Obj[]).map((e) => [e.name, e]));
        for (const key of ['GANTRY_AUTH_JWKS_FILE', 'GANTRY_AUTH_JWKS_URL', 'GANTRY_PEERS_TOKEN_FILE', 'GANTRY_AUTH_DEV_ISSUER']) assert.ok(!env.has(key), `${name}: ${key} is not set`);
      }
      assert.equal(keysPlanOf(docs)!.devIssuer, undefined);
    }
    const dev = await render([], ['auth.devIssuer=true']);
    assert.deepEqual(keysPlanOf(dev)!.devIssuer, { secret: `${release}-dev-jwt`, jwksSecret: `${release}-dev-jwks` });
    for (const [name, spec] of podSpecs(dev)) {
      assert.ok(!mounted(spec).includes(`${release}-dev-jwt`), `${name} does not mount the dev issuer's private key`);
      if (ofKind(dev, 'Deployment').some((d) => d.metadata.name === name) && name !== operator) {
        assert.ok(mounted(spec).includes(`${release}-dev-jwks`), `${name} trusts the dev issuer's public JWKS`);
        assert.equal(new Map((spec.containers[0].env as Obj[]).map((e) => [e.name, e.value])).get('GANTRY_AUTH_JWKS_FILE'), '/etc/gantry/jwks/jwks.json');
      }
    }
    const both = await runHelm(['template', release, chart, '--set', 'auth.devIssuer=true', '--set', 'auth.jwksUrl=https://issuer.example.com/jwks']);
    assert.notEqual(both.code, 0);
    assert.match(both.stderr, /set at most one token issuer/);
  });

  test('monolithic: one Deployment of every target on a PVC, Recreate, and no NetworkPolicy to peers', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render(['monolithic-values.yaml']);
    const [d, ...rest] = ofKind(docs, 'Deployment').filter((x) => x.metadata.name !== operator);
    assert.equal(rest.length, 0);
    assert.equal(d!.spec.replicas, 1);
    assert.equal(d!.spec.strategy.type, 'Recreate');
    assert.deepEqual(d!.spec.template.spec.containers[0].args, ['serve', '--target=all']);
    // PGlite's initdb peaks near 840 MiB on the first start (a 512Mi limit had it OOM-killed on a real node).
    assert.deepEqual(d!.spec.template.spec.containers[0].resources, { requests: { cpu: '100m', memory: '512Mi' }, limits: { memory: '1Gi' } });
    const pvc = named(docs, 'PersistentVolumeClaim', `${release}-gantry-data`);
    assert.equal(pvc.spec.resources.requests.storage, '2Gi');
    assert.equal(d!.spec.template.spec.volumes.find((v: Obj) => v.name === 'data').persistentVolumeClaim.claimName, pvc.metadata.name);
    const env = envOf(d!);
    assert.ok(!env.has('GANTRY_DATABASE_URL') && !env.has('GANTRY_PEERS_LOG_ADDRESS') && !env.has('GANTRY_PEERS_WEBHOOKS_ADDRESS'));
    assert.equal(env.get('GANTRY_RATE_LIMIT_STORE')!.value, 'memory');
    for (const kind of ['PodDisruptionBudget', 'HorizontalPodAutoscaler']) assert.equal(ofKind(docs, kind).filter((o) => component(o) !== 'operator').length, 0, kind);
    const policies = ofKind(docs, 'NetworkPolicy').filter((p) => component(p) !== 'operator');
    assert.equal(policies.length, 1);
    const from = (policies[0]!.spec.ingress as Obj[]).flatMap((r) => (r.from ?? []) as Obj[]);
    assert.deepEqual(
      from,
      [
        { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'gantry', 'app.kubernetes.io/instance': release, 'app.kubernetes.io/component': 'operator' } } },
        { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'gantry', 'app.kubernetes.io/instance': release, 'app.kubernetes.io/component': 'helm-test' } } },
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'clients' } } },
      ],
      'only the operator, the helm test Pods and allowedClients, no peer selectors',
    );
  });

  test('helm test: one Pod per served target runs gantry health over mTLS against its Service, for its gRPC service, hardened like the Deployments', async (t) => {
    if (needsHelm(t)) return;
    const micro = await render(['microservices-certmanager-values.yaml']);
    const pods = ofKind(micro, 'Pod');
    assert.deepEqual(pods.map((p) => p.metadata.name).sort(), ['log', 'settlement', 'approvals', 'webhooks'].map((x) => `${release}-${x}-test-health`).sort());
    for (const [target, service] of [['log', 'gantry.log.v1.LogService'], ['webhooks', 'gantry.webhooks.v1.WebhooksService']]) {
      const pod = named(micro, 'Pod', `${release}-${target}-test-health`);
      assert.equal(pod.metadata.annotations['helm.sh/hook'], 'test');
      assert.equal(pod.metadata.labels['app.kubernetes.io/component'], 'helm-test');
      const [c] = pod.spec.containers as Obj[];
      const host = `${release}-${target}.${ns}.svc.cluster.local`;
      assert.deepEqual(c!.args.slice(0, 3), ['health', `--address=${host}:7443`, `--server-name=${host}`]);
      assert.ok(c!.args.includes(`--service=${service}`));
      assert.equal(c!.securityContext.readOnlyRootFilesystem, true);
      assert.equal(pod.spec.volumes.find((v: Obj) => v.name === 'tls').secret.secretName, `${release}-helm-test-tls`, 'a certificate of its own, not the service workload identity');
    }
    const mono = ofKind(await render(['monolithic-values.yaml']), 'Pod');
    assert.deepEqual(mono.map((p) => p.metadata.name), [`${release}-gantry-test-health`]);
  });

  test('the operator runs serve --target=operator with 2 replicas, a PDB, an API token, health probes on 7080 and no gRPC port or Service', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render();
    const d = named(docs, 'Deployment', operator);
    const pod = d.spec.template.spec;
    const [main] = pod.containers as Obj[];
    assert.deepEqual(main!.args, ['serve', '--target=operator']);
    assert.equal(d.spec.replicas, 2, 'leader election: one leads, one stands by');
    assert.equal(pod.serviceAccountName, operator);
    assert.equal(pod.automountServiceAccountToken, true, 'it talks to the API server with its ServiceAccount');
    assert.deepEqual(main!.ports, [{ name: 'health', containerPort: 7080, protocol: 'TCP' }], 'no 7443 listener');
    assertProbes(main!, 'operator');
    assert.equal(pod.topologySpreadConstraints[0].labelSelector.matchLabels['app.kubernetes.io/component'], 'operator');
    assert.ok(!ofKind(docs, 'Service').some((svc) => component(svc) === 'operator'), 'nothing to call: no Service');
    assert.equal(named(docs, 'PodDisruptionBudget', operator).spec.maxUnavailable, 1);

    const env = envOf(d);
    const value = (name: string) => env.get(name)?.value as string | undefined;
    assert.equal(value('GANTRY_OPERATOR_NAMESPACE'), ns);
    assert.equal(value('GANTRY_OPERATOR_LEASE_NAME'), operator);
    assert.deepEqual(env.get('GANTRY_OPERATOR_IDENTITY')!.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
    assert.equal(value('GANTRY_OPERATOR_RESYNC_MS'), '300000');
    assert.equal(value('GANTRY_OPERATOR_WORKERS'), '2');
    assert.equal(value('GANTRY_OPERATOR_RENEW_DEADLINE_MS'), '10000');
    assert.equal(value('GANTRY_LISTEN_HEALTH_PORT'), '7080');
    for (const name of ['GANTRY_LISTEN_PORT', 'GANTRY_RATE_LIMIT_STORE', 'GANTRY_DATABASE_URL', 'GANTRY_PEERS_TOKEN_FILE', 'GANTRY_LIMITS_MAX_CONNECTION_AGE_MS']) assert.ok(!env.has(name), `${name} is not set`);
    for (const target of ['log', 'settlement', 'approvals', 'webhooks']) {
      assert.equal(value(`GANTRY_PEERS_${target.toUpperCase()}_ADDRESS`), `dns:///${headless(target)}:7443`, target);
    }
    assert.equal(pod.initContainers, undefined, 'it calls as its workload, by certificate: no key, no token');

    const sized = await render([], ['operator.replicas=1', 'targets.approvals.enabled=false', 'operator.resyncMs=60000', 'operator.resources.requests.cpu=20m']);
    const small = named(sized, 'Deployment', operator);
    assert.equal(small.spec.template.spec.topologySpreadConstraints, undefined);
    assert.deepEqual(small.spec.template.spec.containers[0].resources, { requests: { cpu: '20m' } });
    assert.equal(envOf(small).get('GANTRY_OPERATOR_RESYNC_MS')!.value, '60000');
    assert.ok(!envOf(small).has('GANTRY_PEERS_APPROVALS_ADDRESS'), 'only enabled targets are peers');
    assert.ok(!ofKind(sized, 'PodDisruptionBudget').some((p) => p.metadata.name === operator), 'no PDB for a single replica');

    const off = await render([], ['operator.enabled=false']);
    assert.deepEqual(off.filter((o) => component(o) === 'operator' || o.metadata.name.startsWith(operator)), [], 'operator.enabled=false renders nothing of it');
  });

  test('monolithic: the operator calls the monolith for every peer', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render(['monolithic-values.yaml']);
    const env = envOf(named(docs, 'Deployment', operator));
    const monolith = `dns:///${release}-gantry.${ns}.svc.cluster.local:7443`;
    for (const target of ['LOG', 'SETTLEMENT', 'APPROVALS', 'WEBHOOKS']) assert.equal(env.get(`GANTRY_PEERS_${target}_ADDRESS`)!.value, monolith, target);
    assert.ok(named(docs, 'Service', `${release}-gantry`));
  });

  test("the operator's rights: in the release namespace only its Lease and Events (no Secret: the platform's keys are there); in each watched namespace exactly the calls its code makes", async (t) => {
    if (needsHelm(t)) return;
    const docs = await render([], ['operator.watchNamespaces={team-a,team-b}']);
    const roles = ofKind(docs, 'Role').filter((r) => r.metadata.name === operator);
    assert.deepEqual(roles.map((r) => r.metadata.namespace), [ns, 'team-a', 'team-b']);
    assert.deepEqual(rulesOf(roles[0]!), [
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
      { apiGroups: ['', 'events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
    ]);
    for (const role of roles.slice(1)) {
      assert.deepEqual(rulesOf(role), [
        { apiGroups: ['gantry.dev'], resources: ['webhooks', 'featureflags'], verbs: ['get', 'list', 'watch', 'patch'] },
        { apiGroups: ['gantry.dev'], resources: ['webhooks/status', 'featureflags/status'], verbs: ['patch'] },
        { apiGroups: ['gantry.dev'], resources: ['webhooks/finalizers'], verbs: ['update'] },
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'] },
        { apiGroups: ['', 'events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
      ], role.metadata.namespace);
    }
    const bindings = ofKind(docs, 'RoleBinding').filter((r) => r.metadata.name === operator);
    assert.deepEqual(bindings.map((b) => b.metadata.namespace), [ns, 'team-a', 'team-b']);
    for (const binding of bindings) {
      assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: operator });
      assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: operator, namespace: ns }]);
    }
    assert.equal(envOf(named(docs, 'Deployment', operator)).get('GANTRY_OPERATOR_WATCH_NAMESPACES')!.value, 'team-a,team-b');
    for (const kind of ['ClusterRole', 'ClusterRoleBinding']) assert.equal(ofKind(docs, kind).length, 0, 'namespace-scoped rights only');
    const refused = await runHelm(['template', release, chart, '--namespace', ns, '--set', `operator.watchNamespaces={team-a,${ns}}`]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /operator.watchNamespaces: payments is the release namespace, whose Secrets hold the platform's keys/);
    assert.equal(envOf(named(await render(), 'Deployment', operator)).get('GANTRY_OPERATOR_WATCH_NAMESPACES')!.value, '', 'by default it watches nothing');
  });

  test('gateway: serve --target=gateway with its https port, health probes, every enabled target as a peer, its own certificate; HTTPS open to anyone unless allowedClients says otherwise', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render([], ['targets.webhooks.enabled=false', 'gateway.corsAllowedOrigins[0]=https://app.example.com']);
    const deployment = named(docs, 'Deployment', gateway);
    const main = deployment.spec.template.spec.containers[0];
    assert.deepEqual(main.args, ['serve', '--target=gateway']);
    assert.deepEqual(main.ports, [{ name: 'health', containerPort: 7080, protocol: 'TCP' }, { name: 'https', containerPort: 8443, protocol: 'TCP' }], 'no gRPC listener');
    assertProbes(main, gateway);
    const env = envOf(deployment);
    assert.equal(env.get('GANTRY_GATEWAY_PORT')!.value, '8443');
    assert.equal(env.get('GANTRY_GATEWAY_CORS_ALLOWED_ORIGINS')!.value, 'https://app.example.com');
    for (const target of ['log', 'settlement', 'approvals']) assert.equal(env.get(`GANTRY_PEERS_${target.toUpperCase()}_ADDRESS`)!.value, `dns:///${headless(target)}:7443`);
    assert.ok(!env.has('GANTRY_PEERS_WEBHOOKS_ADDRESS'), 'a disabled target is not a peer');
    assert.ok(!env.has('GANTRY_DATABASE_URL'), 'the gateway has no database');
    assert.deepEqual(named(docs, 'Service', gateway).spec.ports, [{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' }]);
    assert.deepEqual(named(docs, 'NetworkPolicy', gateway).spec.ingress, [{ ports: [{ port: 7080, protocol: 'TCP' }] }, { ports: [{ port: 8443, protocol: 'TCP' }] }]);
    assert.ok(!ofKind(docs, 'Ingress').length && !ofKind(docs, 'HTTPRoute').length, 'Ingress and HTTPRoute are off by default');
    const leaf = keysPlanOf(docs)!.tls!.leaves.find((l) => l.secret === `${gateway}-tls`)!;
    assert.equal(leaf.workload, 'gateway', 'it calls the services as the workload gateway, which is granted nothing');
    assert.ok(leaf.dnsNames.includes(`${gateway}.${ns}.svc.cluster.local`));

    const limited = await render([], ['gateway.allowedClients[0].namespaceSelector.matchLabels.name=ingress']);
    assert.deepEqual((named(limited, 'NetworkPolicy', gateway).spec.ingress as Obj[])[1], { ports: [{ port: 8443, protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { name: 'ingress' } } }] });
    const off = await render([], ['gateway.enabled=false']);
    assert.ok(!off.some((d) => d.metadata.name === gateway || d.metadata.name === `${gateway}-tls`), 'gateway.enabled=false renders none of it');
  });

  test('gateway: an optional Ingress and Gateway API HTTPRoute send to its Service, or to the monolith, which then exposes 8443', async (t) => {
    if (needsHelm(t)) return;
    const routes = ['gateway.ingress.enabled=true', 'gateway.ingress.className=nginx', 'gateway.ingress.hosts[0]=api.example.com', 'gateway.httpRoute.enabled=true', 'gateway.httpRoute.parentRefs[0].name=public', 'gateway.httpRoute.hostnames[0]=api.example.com'];
    for (const [values, service, port] of [[[], gateway, 443], [['monolithic-values.yaml'], `${release}-gantry`, 8443]] as const) {
      const docs = await render([...values], routes);
      const ingress = named(docs, 'Ingress', gateway);
      assert.equal(ingress.spec.ingressClassName, 'nginx');
      assert.deepEqual(ingress.spec.rules, [{ host: 'api.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: service, port: { number: port } } } }] } }]);
      const route = named(docs, 'HTTPRoute', gateway);
      assert.equal(route.apiVersion, 'gateway.networking.k8s.io/v1');
      assert.deepEqual(route.spec.parentRefs, [{ name: 'public' }]);
      assert.deepEqual(route.spec.rules[0].backendRefs, [{ name: service, port }]);
      assert.ok(named(docs, 'Service', service).spec.ports.some((p: Obj) => p.port === port && p.targetPort === 'https'), `${service} serves https on ${port}`);
      assert.deepEqual(danglingReferences(docs, ['gantry-database']), [], values.join() || 'defaults');
    }
    const mono = await render(['monolithic-values.yaml']);
    const monolith = named(mono, 'Deployment', `${release}-gantry`);
    assert.ok((monolith.spec.template.spec.containers[0].ports as Obj[]).some((p) => p.name === 'https' && p.containerPort === 8443));
    assert.equal(envOf(monolith).get('GANTRY_GATEWAY_PORT')!.value, '8443');
    assert.deepEqual((named(mono, 'NetworkPolicy', `${release}-gantry`).spec.ingress as Obj[]).at(-1), { ports: [{ port: 8443, protocol: 'TCP' }] });
  });

  test('the Webhook and FeatureFlag CRDs are templates behind crds.enabled, kept on uninstall with crds.keep, with status subresources and closed enums', async (t) => {
    if (needsHelm(t)) return;
    const crds = ofKind(await render(), 'CustomResourceDefinition');
    assert.deepEqual(crds.map((c) => c.metadata.name).sort(), ['featureflags.gantry.dev', 'webhooks.gantry.dev']);
    for (const crd of crds) {
      assert.equal(crd.metadata.annotations['helm.sh/resource-policy'], 'keep');
      const [v] = crd.spec.versions as Obj[];
      assert.equal(v!.name, 'v1alpha1');
      assert.deepEqual(v!.subresources, { status: {} });
      assert.equal(v!.schema.openAPIV3Schema.type, 'object');
    }
    const ff = named(crds, 'CustomResourceDefinition', 'featureflags.gantry.dev');
    assert.deepEqual(ff.spec.names.shortNames, ['ff']);
    assert.deepEqual(ff.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.targets.items.enum, ['log', 'settlement', 'approvals', 'webhooks']);
    assert.equal(ofKind(await render([], ['crds.enabled=false']), 'CustomResourceDefinition').length, 0);
    const unkept = ofKind(await render([], ['crds.keep=false']), 'CustomResourceDefinition');
    assert.ok(unkept.every((c) => !c.metadata.annotations?.['helm.sh/resource-policy']));
  });

  test('values that break the schema fail helm template and helm lint with a schema error', async (t) => {
    if (needsHelm(t)) return;
    const cases: [string[], RegExp][] = [
      [['targets.log.replica=3'], /at '\/targets\/log': additional properties 'replica' not allowed/],
      [['targets.log.replicas=three'], /at '\/targets\/log\/replicas': got string, want integer/],
      [['mode=hybrid'], /at '\/mode': value must be one of 'microservices', 'monolithic'/],
      [['securityContext.readOnlyRootFilesystem=false'], /readOnlyRootFilesystem/],
      [['extraEnv.FOO=bar'], /'FOO' does not match pattern/],
      [['operator.replica=3'], /at '\/operator': additional properties 'replica' not allowed/],
      [['operator.workers=0'], /at '\/operator\/workers'/],
      [['grpc.maxConnectionAgeMs=-1'], /at '\/grpc\/maxConnectionAgeMs'/],
      [['database.startupTimeoutMs=soon'], /at '\/database\/startupTimeoutMs': got string, want integer/],
      [['podLabels.team=-x'], /at '\/podLabels\/team'/],
      [['targets.log.serviceAccount.create=true'], /at '\/targets\/log\/serviceAccount': additional properties 'create' not allowed/],
    ];
    await Promise.all(cases.map(async ([set, message]) => {
      for (const cmd of [['template', release, chart], ['lint', chart]]) {
        const r = await runHelm([...cmd, ...valuesArgs([], set)]);
        assert.notEqual(r.code, 0, `${cmd[0]} ${set.join()} fails`);
        assert.match(r.stdout + r.stderr, /values don't meet the specifications of the schema/);
        assert.match(r.stdout + r.stderr, message);
      }
    }));
  });

  test('combinations the schema cannot express fail with a message saying what to set', async (t) => {
    if (needsHelm(t)) return;
    const cases: [string[], RegExp][] = [
      [['auth.existingSecret=jwks', 'auth.jwksUrl=https://idp.example.com/jwks'], /set at most one token issuer/],
      [['database.existingSecret='], /set database.url or database.existingSecret/],
      [['operator.leaderElection.renewDeadlineMs=20000'], /renewDeadlineMs must be less than leaseDurationMs/],
      [['probes.startup.failureThreshold=60'], /probes.startup: periodSeconds × failureThreshold \(120 s\) must exceed database.startupTimeoutMs \(300 s\)/],
      [['serviceAccount.create=false'], /operator.serviceAccount.name: with serviceAccount.create=false name the operator's existing ServiceAccount/],
    ];
    await Promise.all(cases.map(async ([set, message]) => {
      const r = await runHelm(['template', release, chart, ...valuesArgs([], set)]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, message);
    }));
  });
  test('metrics: a PodMonitor scraping GET /metrics on the health port of every serving pod and the operator, and a Grafana dashboard ConfigMap, both off by default', async (t) => {
    if (needsHelm(t)) return;
    const off = await render();
    assert.equal(off.filter((d) => d.kind === 'PodMonitor').length, 0);
    assert.equal(off.filter((d) => d.kind === 'ConfigMap' && String(d.metadata.name).endsWith('-dashboard')).length, 0);
    for (const values of [[], ['monolithic-values.yaml']]) {
      const docs = await render(values, ['metrics.podMonitor.enabled=true', 'metrics.podMonitor.labels.release=kube-prometheus', 'metrics.dashboard.enabled=true']);
      const [monitor, ...more] = docs.filter((d) => d.kind === 'PodMonitor');
      assert.equal(more.length, 0);
      assert.equal(monitor!.metadata.labels.release, 'kube-prometheus');
      assert.deepEqual(monitor!.spec.podMetricsEndpoints, [{ port: 'health', path: '/metrics', interval: '30s', scrapeTimeout: '10s' }]);
      const selects = (labels: Obj) =>
        Object.entries(monitor!.spec.selector.matchLabels as Obj).every(([k, v]) => labels[k] === v) &&
        (monitor!.spec.selector.matchExpressions as Obj[]).every((e) => (e.values as string[]).includes(labels[e.key]));
      const deployments = docs.filter((d) => d.kind === 'Deployment');
      assert.ok(deployments.length >= 2, `${values.join(',') || 'defaults'}: a server and the operator`);
      for (const d of deployments) {
        assert.ok(selects(d.spec.template.metadata.labels), `${d.metadata.name}'s pods are scraped`);
        assert.ok((d.spec.template.spec.containers as Obj[]).some((c) => (c.ports as Obj[] | undefined)?.some((p) => p.name === 'health')), `${d.metadata.name} names its health port`);
      }
      for (const other of docs.filter((d) => ['Pod', 'Job', 'CronJob'].includes(d.kind))) {
        const labels = other.kind === 'Pod' ? other.metadata.labels : other.kind === 'Job' ? other.spec.template.metadata.labels : other.spec.jobTemplate.spec.template.metadata.labels;
        assert.ok(!selects(labels), `${other.kind} ${other.metadata.name} is not scraped`);
      }
      const dashboard = docs.find((d) => d.kind === 'ConfigMap' && String(d.metadata.name).endsWith('-dashboard'))!;
      assert.equal(dashboard.metadata.labels.grafana_dashboard, '1');
      const json = JSON.parse(dashboard.data['gantry.json']) as { uid: string; panels: { type: string; targets?: { expr: string }[] }[] };
      assert.equal(json.uid, 'gantry-overview');
      // Every query reads metrics the program exports (tests/platform/metrics.test.ts scrapes most of them).
      const exported = /^(rpc_server_duration|target_info|gantry_settlement_draws|gantry_approvals_pending|gantry_outbox_(events_sent|send_failures|relay_lag)|gantry_operator_(queue_depth|reconcile_duration|reconcile_errors)|gantry_webhooks_(deliveries|queue_depth)|gantry_log_entries_appended|nodejs_eventloop_delay_p99|v8js_memory_heap_used|gantry_process_memory)/;
      const exprs = json.panels.flatMap((p) => p.targets ?? []).map((q) => q.expr);
      assert.ok(exprs.length >= 10);
      for (const expr of exprs) {
        const names = [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((m) => m[1]!);
        assert.ok(names.length > 0 && names.every((n) => exported.test(n)), `${expr} reads only exported metrics`);
      }
    }
  });
});
