import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
// `yaml` is in node_modules (hoisted from the workspace's dependencies); helm template has no JSON output.
import { parse, parseAllDocuments, stringify } from 'yaml';
import { repoRoot, runGantry } from '../support/gantry-process.js';
import { ok, testKube, waitForCrds, type TestKube } from '../support/kube.js';

// charts/gantry installed by helm into a real API server (tests/support/kube.ts): the server
// validates every object, allocates Service IPs, enforces the schema of each kind, and answers the
// chart's `lookup`s. No kubelet runs, so pods never start: nothing here waits for readiness.

const chart = join(repoRoot, 'charts/gantry');
const execFileAsync = promisify(execFile);
const release = 'gy';
const targets = ['log', 'settlement', 'approvals', 'webhooks'];
const operator = `${release}-operator`;

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- API objects are untyped JSON here

// The chart's CustomResourceDefinitions (when it has them) are cluster-scoped: in one shared test
// cluster only one release may own them, so these namespaced installs leave them out.
const chartValues = parse(readFileSync(join(chart, 'values.yaml'), 'utf8')) as Obj;
const common = 'crds' in chartValues ? ['--set', 'crds.enabled=false'] : [];

let kube: TestKube | undefined;
let skipReason = '';

/** Skips (locally) or fails (CI=true, inside testKube) when the API server is not there. */
function needsKube(t: TestContext): TestKube | undefined {
  if (!kube) t.skip(skipReason);
  return kube;
}

async function getAll(k: TestKube, ns: string, kinds: string): Promise<Obj[]> {
  return (JSON.parse(ok(await k.kubectl(['get', kinds, '--namespace', ns, '-o', 'json']), `kubectl get ${kinds}`)) as Obj).items as Obj[];
}

const names = (items: Obj[], kind: string) => items.filter((o) => o.kind === kind).map((o) => o.metadata.name as string).sort();
const byName = (items: Obj[], kind: string, name: string) => {
  const found = items.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `${kind} ${name} exists`);
  return found;
};
const secretData = (secrets: Obj[]) => new Map(secrets.map((s) => [s.metadata.name as string, JSON.stringify(s.data)]));

interface Access {
  verb: string;
  resource: string;
  name?: string;
  group?: string;
  subresource?: string;
  /** Default: the release namespace; '' asks cluster-wide. */
  namespace?: string;
}

/**
 * Whether the server's RBAC authorizer lets the operator's ServiceAccount do it: a SubjectAccessReview,
 * what `kubectl auth can-i --as=system:serviceaccount:...` sends, with the group spelt out, since
 * kubectl maps `webhooks.gantry.dev` through discovery and these installs leave the CRDs out.
 */
async function serviceAccountCan(k: TestKube, ns: string, serviceAccount: string, a: Access): Promise<boolean> {
  const review = {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: `system:serviceaccount:${ns}:${serviceAccount}`,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
      resourceAttributes: { verb: a.verb, group: a.group ?? '', resource: a.resource, subresource: a.subresource ?? '', namespace: a.namespace ?? ns, name: a.name ?? '' },
    },
  };
  const answer = JSON.parse(ok(await k.kubectl(['create', '-f', '-', '-o', 'json'], JSON.stringify(review)), 'creating a SubjectAccessReview')) as Obj;
  return answer.status.allowed === true;
}

const operatorCan = (k: TestKube, ns: string, a: Access) => serviceAccountCan(k, ns, operator, a);

/**
 * What the keys Job does at install and upgrade, without a kubelet to run it: its hook objects
 * (ServiceAccount, Role, RoleBinding, plan ConfigMap) applied, then `gantry keys ensure` run here on
 * the plan they carry. Releases here are installed with --no-hooks, since helm would wait for a Job
 * no kubelet runs.
 */
async function runKeysJob(k: TestKube, ns: string): Promise<void> {
  const hooks = parseAllDocuments(ok(await k.helm(['get', 'hooks', release, '--namespace', ns]), 'helm get hooks')).map((d) => d.toJSON() as Obj).filter(Boolean);
  const objects = hooks.filter((h) => h.kind !== 'Job' && h.kind !== 'Pod');
  ok(await k.kubectl(['apply', '--namespace', ns, '-f', '-'], objects.map((o) => stringify(o)).join('---\n')), 'applying the keys hooks');
  const plan = objects.find((o) => o.kind === 'ConfigMap')!.data['plan.json'] as string;
  const dir = mkdtempSync(join(tmpdir(), 'gantry-keys-plan-'));
  writeFileSync(join(dir, 'plan.json'), plan);
  const run = await runGantry(['keys', 'ensure', `--plan=${join(dir, 'plan.json')}`, `--namespace=${ns}`, `--kubeconfig=${k.kubeconfig}`]);
  assert.equal(run.code, 0, run.stderr + run.stdout);
}

/** The keys Job's ServiceAccount may create Secrets and read or update only those of its plan. */
async function assertKeysRights(k: TestKube, ns: string, planned: readonly string[]): Promise<void> {
  const can = (a: Access) => serviceAccountCan(k, ns, `${release}-keys`, a);
  for (const name of planned) {
    for (const verb of ['get', 'update']) assert.ok(await can({ verb, resource: 'secrets', name }), `${verb} ${name}`);
  }
  assert.ok(await can({ verb: 'create', resource: 'secrets' }));
  for (const a of [{ verb: 'get', resource: 'secrets', name: 'gantry-database' }, { verb: 'list', resource: 'secrets' }, { verb: 'delete', resource: 'secrets', name: planned[0]! }, { verb: 'get', resource: 'secrets', name: planned[0]!, namespace: 'default' }]) {
    assert.equal(await can(a), false, `${a.verb} ${a.name ?? 'secrets'} is refused`);
  }
}

/** The operator's Deployment, ServiceAccount, Role and RoleBinding exist, and its rights are exactly what it needs. */
async function assertOperatorInstalled(k: TestKube, ns: string, tenant: string): Promise<void> {
  const objects = await getAll(k, ns, 'deployments,serviceaccounts,roles,rolebindings');
  const deployment = byName(objects, 'Deployment', operator);
  assert.deepEqual(deployment.spec.template.spec.containers[0].args, ['serve', '--target=operator']);
  assert.equal(deployment.spec.template.spec.serviceAccountName, operator);
  assert.equal(deployment.spec.template.spec.automountServiceAccountToken, true);
  byName(objects, 'ServiceAccount', operator);
  byName(objects, 'Role', operator);
  assert.deepEqual(byName(objects, 'RoleBinding', operator).subjects, [{ kind: 'ServiceAccount', name: operator, namespace: ns }]);
  assert.deepEqual(byName(await getAll(k, tenant, 'rolebindings'), 'RoleBinding', operator).subjects, [{ kind: 'ServiceAccount', name: operator, namespace: ns }]);
  const gantry = (verb: string, resource: string, subresource?: string, namespace = tenant): Access => ({ verb, group: 'gantry.dev', resource, subresource, namespace });
  const lease = (verb: string, namespace?: string): Access => ({ verb, group: 'coordination.k8s.io', resource: 'leases', namespace });
  const secrets = (verb: string, namespace?: string): Access => ({ verb, resource: 'secrets', namespace });
  const allowed: Access[] = [
    gantry('patch', 'webhooks', 'status'),
    gantry('patch', 'featureflags', 'status'),
    gantry('watch', 'featureflags'),
    gantry('patch', 'webhooks'),
    gantry('update', 'webhooks', 'finalizers'),
    secrets('create', tenant),
    secrets('delete', tenant),
    { verb: 'create', resource: 'events', namespace: tenant },
    lease('create'),
    lease('update'),
    { verb: 'create', resource: 'events' },
    { verb: 'patch', group: 'events.k8s.io', resource: 'events' },
  ];
  const refused: Access[] = [
    // The release namespace's Secrets hold the platform's keys.
    secrets('get'),
    secrets('list'),
    secrets('create'),
    gantry('watch', 'webhooks', undefined, ns),
    gantry('delete', 'webhooks'),
    gantry('create', 'featureflags'),
    gantry('update', 'webhooks'),
    gantry('update', 'featureflags', 'status'),
    secrets('patch', tenant),
    lease('list'),
    { verb: 'list', resource: 'pods' },
    { verb: 'get', resource: 'configmaps' },
    gantry('watch', 'featureflags', undefined, 'default'),
    lease('create', 'kube-system'),
    secrets('list', ''),
  ];
  const show = (a: Access) => `${a.verb} ${[a.resource, a.group].filter(Boolean).join('.')}${a.subresource ? `/${a.subresource}` : ''} in ${a.namespace ?? ns}`;
  const answers = await Promise.all([...allowed, ...refused].map(async (a) => `${(await operatorCan(k, ns, a)) ? 'yes' : 'no'}: ${show(a)}`));
  assert.deepEqual(answers, [...allowed.map((a) => `yes: ${show(a)}`), ...refused.map((a) => `no: ${show(a)}`)]);
}

describe('charts/gantry on a real Kubernetes API server', () => {
  before(async () => {
    const k = await testKube();
    if (typeof k === 'string') skipReason = k;
    else kube = k;
  });

  test('default values: every object is accepted, Services get cluster IPs, the operator and the keys Job get only their rights, and an upgrade keeps the CA, certificates and keys', async (t) => {
    const k = needsKube(t);
    if (!k) return;
    const ns = await k.namespace(t, 'chart-default');
    ok(await k.kubectl(['create', 'secret', 'generic', 'gantry-database', '--namespace', ns, '--from-literal=url=postgres://gantry:gantry@db:5432/gantry']), 'creating the database Secret');
    const tenant = await k.namespace(t, 'chart-tenant');
    ok(await k.helm(['install', release, chart, '--namespace', ns, '--no-hooks', '--set', `operator.watchNamespaces={${tenant}}`, ...common]), 'helm install');
    await runKeysJob(k, ns);

    const objects = await getAll(k, ns, 'deployments,services,networkpolicies,serviceaccounts,poddisruptionbudgets,secrets');
    // The HTTP gateway (gateway.enabled, on by default) is a workload of its own beside the targets.
    const components = [...targets, 'gateway', 'operator'].map((x) => `${release}-${x}`).sort();
    assert.deepEqual(names(objects, 'Deployment'), components);
    assert.deepEqual(names(objects, 'NetworkPolicy'), components);
    assert.deepEqual(names(objects, 'PodDisruptionBudget'), components);
    assert.ok(!names(objects, 'Service').includes(operator), 'the operator serves nothing');
    await assertOperatorInstalled(k, ns, tenant);
    for (const target of targets) {
      const svc = byName(objects, 'Service', `${release}-${target}`);
      assert.match(svc.spec.clusterIP, /^10\.0\.0\.\d+$/, `${target}: the server allocated an IP from --service-cluster-ip-range`);
      assert.equal(byName(objects, 'Service', `${release}-${target}-headless`).spec.clusterIP, 'None');
      assert.equal(byName(objects, 'ServiceAccount', `${release}-${target}`).automountServiceAccountToken, false);
      const deployment = byName(objects, 'Deployment', `${release}-${target}`);
      assert.equal(deployment.spec.replicas, 2);
      assert.equal(deployment.spec.template.spec.serviceAccountName, `${release}-${target}`);
    }

    const secrets = objects.filter((o) => o.kind === 'Secret' && o.type !== 'helm.sh/release.v1');
    const kept = [`${release}-ca`, ...targets.map((x) => `${release}-${x}-tls`), `${release}-gateway-tls`, `${operator}-tls`, `${release}-helm-test-tls`, `${release}-log-signing-key`, `${release}-webhooks-keys`];
    assert.deepEqual(names(secrets, 'Secret'), ['gantry-database', ...kept].sort());
    await assertKeysRights(k, ns, kept);
    const decode = (s: Obj, key: string) => Buffer.from(s.data[key], 'base64').toString();
    const ca = new X509Certificate(decode(byName(secrets, 'Secret', `${release}-ca`), 'tls.crt'));
    for (const target of targets) {
      const leaf = new X509Certificate(decode(byName(secrets, 'Secret', `${release}-${target}-tls`), 'tls.crt'));
      assert.ok(leaf.verify(ca.publicKey), `${target}'s certificate is signed by the chart's CA`);
      assert.ok(leaf.subjectAltName?.includes(`DNS:${release}-${target}-headless.${ns}.svc.cluster.local`), leaf.subjectAltName);
      assert.ok(leaf.subjectAltName?.includes(`URI:spiffe://gantry.local/${target}`), leaf.subjectAltName);
    }

    // Nothing is regenerated on upgrade: the render holds no keys, and the keys Job keeps what exists.
    ok(await k.helm(['upgrade', release, chart, '--namespace', ns, '--no-hooks', '--reuse-values', ...common]), 'helm upgrade');
    await runKeysJob(k, ns);
    const after = (await getAll(k, ns, 'secrets')).filter((s) => kept.includes(s.metadata.name));
    const before = secretData(secrets.filter((s) => kept.includes(s.metadata.name)));
    assert.equal(after.length, kept.length);
    for (const [name, data] of secretData(after)) assert.equal(data, before.get(name), `${name} is unchanged by helm upgrade`);
    const history = JSON.parse(ok(await k.helm(['history', release, '--namespace', ns, '-o', 'json']), 'helm history')) as Obj[];
    assert.deepEqual(history.map((h) => h.status), ['superseded', 'deployed']);
  });

  test('monolithic values: one Recreate Deployment with its PVC, Services and NetworkPolicy, and the operator beside it', async (t) => {
    const k = needsKube(t);
    if (!k) return;
    const ns = await k.namespace(t, 'chart-monolithic');
    const tenant = await k.namespace(t, 'mono-tenant');
    ok(await k.helm(['install', release, chart, '--namespace', ns, '-f', join(chart, 'ci/monolithic-values.yaml'), '--no-hooks', '--set', `operator.watchNamespaces={${tenant}}`, ...common]), 'helm install');
    await runKeysJob(k, ns);

    const objects = await getAll(k, ns, 'deployments,services,networkpolicies,persistentvolumeclaims,secrets');
    assert.deepEqual(names(objects, 'Deployment'), [`${release}-gantry`, operator]);
    const deployment = byName(objects, 'Deployment', `${release}-gantry`);
    assert.equal(deployment.spec.replicas, 1);
    assert.equal(deployment.spec.strategy.type, 'Recreate');
    const pvc = byName(objects, 'PersistentVolumeClaim', `${release}-gantry-data`);
    assert.equal(pvc.spec.resources.requests.storage, '2Gi');
    assert.equal(pvc.status.phase, 'Pending', 'no storage provisioner runs: the claim stays Pending, which is fine');
    assert.match(byName(objects, 'Service', `${release}-gantry`).spec.clusterIP, /^10\.0\.0\.\d+$/);
    assert.deepEqual(names(objects, 'NetworkPolicy'), [`${release}-gantry`, operator]);
    const policy = byName(objects, 'NetworkPolicy', `${release}-gantry`);
    assert.ok(JSON.stringify(policy.spec.ingress).includes('"kubernetes.io/metadata.name":"clients"'), 'allowedClients reach the server as written');
    assert.ok(names(objects, 'Secret').includes(`${release}-ca`));
    for (const name of [`${release}-gantry-tls`, `${operator}-tls`]) assert.ok(names(objects, 'Secret').includes(name), name);
    assert.ok(!names(objects, 'Secret').includes(`${release}-dev-jwt`), 'no dev issuer unless asked for');
    await assertOperatorInstalled(k, ns, tenant);
  });

  test('values breaking the schema (a misspelt key, a wrong type) are refused with a schema error and create nothing', async (t) => {
    const k = needsKube(t);
    if (!k) return;
    const ns = await k.namespace(t, 'chart-schema');
    ok(await k.kubectl(['create', 'secret', 'generic', 'gantry-database', '--namespace', ns, '--from-literal=url=postgres://gantry:gantry@db:5432/gantry']), 'creating the database Secret');
    for (const bad of ['targets.log.replica=3', 'shutdownGraceMs=soon']) {
      const r = await k.helm(['install', release, chart, '--namespace', ns, '--set', bad, ...common]);
      assert.notEqual(r.code, 0, `${bad} is refused`);
      assert.match(r.stderr, /schema/i, `${bad}: ${r.stderr}`);
    }
    const left = ok(await k.kubectl(['get', 'all,secrets,configmaps,networkpolicies,serviceaccounts,persistentvolumeclaims', '--namespace', ns, '-o', 'name']), 'kubectl get');
    assert.deepEqual(left.split('\n').filter(Boolean), ['secret/gantry-database'], 'only the Secret made before the installs');
    assert.deepEqual(JSON.parse(ok(await k.helm(['list', '--namespace', ns, '--deployed', '--failed', '--pending', '-o', 'json']), 'helm list')), [], 'no release recorded');
  });

  test("cert-manager values: with cert-manager's own CRDs installed, the server accepts every rendered object, Issuers and Certificates included (a dry run)", async (t) => {
    const k = needsKube(t);
    if (!k) return;
    // cert-manager's CRDs from its Go module (scripts/test-env/cert-manager-crds.sh): the API server
    // then checks the Issuers and Certificates against cert-manager's real schemas.
    const crdDir = (await execFileAsync('bash', [join(repoRoot, 'scripts/test-env/cert-manager-crds.sh')], { timeout: 300_000 })).stdout.trim();
    const crdFiles = readdirSync(crdDir).filter((f) => f.endsWith('.yaml')).map((f) => join(crdDir, f));
    ok(await k.kubectl(['apply', '--server-side', ...crdFiles.flatMap((f) => ['-f', f])]), "applying cert-manager's CRDs");
    t.after(async () => ok(await k.kubectl(['delete', ...crdFiles.flatMap((f) => ['-f', f]), '--ignore-not-found', '--wait=false']), "deleting cert-manager's CRDs"));
    await waitForCrds(k.kubectl, ['certificates.cert-manager.io', 'issuers.cert-manager.io']);
    const ns = await k.namespace(t, 'chart-certmanager');
    const rendered = ok(await k.helm(['template', release, chart, '--namespace', ns, '-f', join(chart, 'ci/microservices-certmanager-values.yaml'), ...common]), 'helm template');
    const docs = parseAllDocuments(rendered).map((d) => d.toJSON() as Obj).filter(Boolean);
    const certManager = docs.filter((d) => String(d.apiVersion).startsWith('cert-manager.io/'));
    assert.ok(certManager.length > targets.length, 'the Issuers and Certificates are rendered');
    const applied = await k.kubectl(['apply', '--dry-run=server', '--namespace', ns, '-f', '-'], docs.map((d) => stringify(d)).join('---\n'));
    assert.equal(applied.code, 0, applied.stderr);
    const accepted = applied.stdout.split('\n').filter((l) => l.endsWith('(server dry run)'));
    assert.equal(accepted.length, docs.length, applied.stdout);
    for (const kind of ['certificate.cert-manager.io', 'issuer.cert-manager.io', 'deployment.apps', 'horizontalpodautoscaler.autoscaling', 'networkpolicy.networking.k8s.io', 'role.rbac.authorization.k8s.io', 'rolebinding.rbac.authorization.k8s.io']) {
      assert.ok(accepted.some((l) => l.startsWith(`${kind}/`)), `${kind} accepted: ${applied.stdout}`);
    }
    assert.deepEqual(ok(await k.kubectl(['get', 'all,certificates,issuers', '--namespace', ns, '-o', 'name']), 'kubectl get').trim(), '', 'a dry run creates nothing');

    // The schemas bite: a Certificate cert-manager would refuse is refused here too.
    const certificate = certManager.find((d) => d.kind === 'Certificate')!;
    const { secretName: _dropped, ...withoutSecret } = certificate.spec as Obj;
    const refused = await k.kubectl(['apply', '--dry-run=server', '--namespace', ns, '-f', '-'], stringify({ ...certificate, spec: withoutSecret }));
    assert.notEqual(refused.code, 0, 'a Certificate without secretName is refused');
    assert.match(refused.stderr, /secretName: Required value/);
  });
});
