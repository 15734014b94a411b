import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { TokenVerifier, ensureDevSigningKey, mintToken } from '@gantry/kit';
// `yaml` is in node_modules (hoisted from the workspace's dependencies); helm template has no JSON output.
import { parseAllDocuments } from 'yaml';

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

const ofKind = (docs: Obj[], kind: string) => docs.filter((d) => d.kind === kind);
const named = (docs: Obj[], kind: string, name: string) => {
  const found = docs.find((d) => d.kind === kind && d.metadata.name === name);
  assert.ok(found, `${kind} ${name} is rendered`);
  return found;
};
const envOf = (deployment: Obj) => new Map<string, Obj>((deployment.spec.template.spec.containers[0].env as Obj[]).map((e) => [e.name, e]));
const headless = (target: string) => `${release}-${target}-headless.${ns}.svc.cluster.local`;

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
        assert.equal(pod.automountServiceAccountToken, false, where);
        const graceMs = Number(envOf(d).get('GANTRY_SHUTDOWN_GRACE_MS')!.value);
        assert.ok(pod.terminationGracePeriodSeconds * 1000 > graceMs, `${where}: terminationGracePeriodSeconds above the shutdown grace`);
        for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
          assert.equal(c.securityContext.readOnlyRootFilesystem, true, where);
          assert.equal(c.securityContext.allowPrivilegeEscalation, false, where);
          assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], where);
        }
        const main = pod.containers[0];
        for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) assert.deepEqual(main[probe].grpc, { port: 7080 }, `${where} ${probe}`);
        const mounts = new Map<string, Obj>(main.volumeMounts.map((m: Obj) => [m.mountPath, m]));
        assert.ok(mounts.has('/tmp') && mounts.has('/var/lib/gantry'), `${where}: writable /tmp and data dir`);
        assert.equal(mounts.get('/etc/gantry/tls')!.readOnly, true, where);
        const env = envOf(d);
        assert.equal(env.get('GANTRY_DATA_DIR')!.value, '/var/lib/gantry');
        assert.equal(env.get('GANTRY_TLS_CERT_FILE')!.value, '/etc/gantry/tls/tls.crt');
        for (const name of env.keys()) assert.match(name, /^GANTRY_/, `${where}: only GANTRY_* configuration`);
      }
    }
  });

  test('microservices: relays reach log and webhooks through their headless Services, from the database Secret', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render();
    assert.deepEqual(ofKind(docs, 'Deployment').map((d) => d.metadata.name).sort(), ['approvals', 'log', 'settlement', 'webhooks'].map((x) => `${release}-${x}`));
    for (const target of ['log', 'settlement', 'approvals', 'webhooks']) {
      const svc = named(docs, 'Service', `${release}-${target}-headless`);
      assert.equal(svc.spec.clusterIP, 'None');
      assert.equal(svc.spec.ports[0].port, 7443);
      assert.equal(named(docs, 'Service', `${release}-${target}`).spec.type, 'ClusterIP');
      assert.equal(named(docs, 'ServiceAccount', `${release}-${target}`).automountServiceAccountToken, false);
      const env = envOf(named(docs, 'Deployment', `${release}-${target}`));
      assert.deepEqual(env.get('GANTRY_DATABASE_URL')!.valueFrom.secretKeyRef, { name: 'gantry-database', key: 'url' });
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

  test('NetworkPolicies let only the declared peers and allowedClients reach 7443, and anyone reach 7080', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render(['microservices-certmanager-values.yaml']);
    const callers = (target: string) => {
      const policy = named(docs, 'NetworkPolicy', `${release}-${target}`);
      const rules = policy.spec.ingress as Obj[];
      assert.deepEqual(rules.find((r) => r.ports[0].port === 7080), { ports: [{ port: 7080, protocol: 'TCP' }] });
      const grpc = rules.filter((r) => r.ports.some((p: Obj) => p.port === 7443));
      assert.equal(grpc.length, 1);
      return (grpc[0]!.from as Obj[]).map((f) => f.podSelector.matchLabels['app.kubernetes.io/component'] ?? f.podSelector.matchLabels['app.kubernetes.io/name']);
    };
    assert.deepEqual(callers('log'), ['settlement', 'approvals', 'helm-test', 'gantry-clients']);
    assert.deepEqual(callers('webhooks'), ['settlement', 'approvals', 'helm-test', 'gantry-clients']);
    assert.deepEqual(callers('settlement'), ['helm-test', 'gantry-clients']);
    assert.deepEqual(callers('approvals'), ['helm-test', 'gantry-clients']);
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
    assert.ok(!ofKind(docs, 'Secret').some((s) => s.metadata.name.endsWith('-tls')), 'no chart-generated certificates');
    const byRef = await render(['microservices-certmanager-values.yaml'], ['tls.certManager.issuerRef.name=corp-ca', 'tls.certManager.issuerRef.kind=ClusterIssuer']);
    assert.equal(ofKind(byRef, 'Issuer').length, 0);
    assert.deepEqual(named(byRef, 'Certificate', `${release}-log-tls`).spec.issuerRef, { name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  });

  test('external issuer: JWKS file and service token mounted from Secrets, autoscaled settlement has an HPA and no fixed replicas', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render(['microservices-certmanager-values.yaml']);
    const settlement = named(docs, 'Deployment', `${release}-settlement`);
    const env = envOf(settlement);
    assert.equal(env.get('GANTRY_JWT_JWKS_FILE')!.value, '/etc/gantry/jwks/jwks.json');
    assert.equal(env.get('GANTRY_JWT_ISSUER')!.value, 'https://issuer.example.com');
    assert.equal(env.get('GANTRY_PEERS_TOKEN_FILE')!.value, '/etc/gantry/peer-token/token');
    assert.equal(env.get('GANTRY_OTLP_ENDPOINT')!.value, 'http://otel-collector.observability:4317');
    assert.ok(!envOf(named(docs, 'Deployment', `${release}-log`)).has('GANTRY_PEERS_TOKEN_FILE'));
    assert.equal(settlement.spec.template.spec.initContainers, undefined, 'no dev key');
    assert.equal(settlement.spec.replicas, undefined);
    assert.equal(named(docs, 'HorizontalPodAutoscaler', `${release}-settlement`).spec.maxReplicas, 10);
    assert.equal(envOf(named(docs, 'Deployment', `${release}-approvals`)).get('GANTRY_RATE_LIMIT_STORE')!.value, 'memory');
    assert.ok(!ofKind(docs, 'Secret').some((s) => s.metadata.name === `${release}-dev-jwt`));
    const role = named(docs, 'Role', `${release}-operator`);
    const verbs = (resource: string) => (role.rules as Obj[]).filter((r) => r.resources.includes(resource)).flatMap((r) => r.verbs as string[]);
    assert.ok(verbs('webhooks').includes('watch') && verbs('featureflags').includes('patch') && verbs('webhooks/status').includes('patch'));
    assert.ok(!verbs('webhooks').includes('delete') && !verbs('webhooks').includes('create'));
    assert.deepEqual(verbs('leases').sort(), ['create', 'get', 'update']);
    assert.deepEqual(verbs('events').sort(), ['create', 'patch']);
    assert.equal(ofKind(docs, 'ClusterRole').length, 0, 'namespace-scoped rights only');
  });

  test('generated PKI: leaf certificates are signed by the chart CA for server and client auth and name the headless Service', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render();
    const pem = (s: Obj, key: string) => Buffer.from(s.data[key], 'base64').toString();
    const ca = new X509Certificate(pem(named(docs, 'Secret', `${release}-ca`), 'tls.crt'));
    assert.equal(ca.ca, true);
    for (const target of ['log', 'settlement', 'approvals', 'webhooks']) {
      const secret = named(docs, 'Secret', `${release}-${target}-tls`);
      assert.equal(pem(secret, 'ca.crt'), ca.toString());
      const leaf = new X509Certificate(pem(secret, 'tls.crt'));
      assert.ok(leaf.verify(ca.publicKey), `${target} certificate is signed by the CA`);
      assert.ok(leaf.subjectAltName!.includes(`DNS:${headless(target)}`), leaf.subjectAltName);
      assert.ok(leaf.checkPrivateKey(createPrivateKey(pem(secret, 'tls.key'))));
      assert.deepEqual([...(leaf.keyUsage ?? [])].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    }
  });

  test("the dev key init script lays out a key the process trusts: a token minted with it verifies", async (t) => {
    if (needsHelm(t)) return;
    const docs = await render();
    const pod = named(docs, 'Deployment', `${release}-settlement`).spec.template.spec;
    const init = (pod.initContainers as Obj[]).find((c) => c.name === 'dev-key')!;
    assert.deepEqual(init.command.slice(0, 2), ['node', '-e']);
    const dir = mkdtempSync(join(tmpdir(), 'gantry-chart-'));
    try {
      const keyFile = join(dir, 'signing-key.pem');
      writeFileSync(keyFile, Buffer.from(named(docs, 'Secret', `${release}-dev-jwt`).data['signing-key.pem'], 'base64'));
      await exec(process.execPath, ['-e', init.command[2]], { env: { ...process.env, DATA_DIR: join(dir, 'data'), DEV_KEY_FILE: keyFile } });
      const key = await ensureDevSigningKey(join(dir, 'data', 'jwt'));
      assert.equal(readFileSync(keyFile, 'utf8').includes('EC PRIVATE KEY'), true);
      const token = mintToken({ subject: 'service:settlement', scopes: ['log.append'], issuer: 'gantry', audience: 'gantry', ttlSec: 60, key: key.privateKey, kid: key.kid });
      const verifier = TokenVerifier.fromConfig({ issuer: 'gantry', audience: 'gantry', clockToleranceSec: 30, maxTokenAgeSec: 86400 } as never, key.jwksFile);
      assert.equal((await verifier.verify(token)).subject, 'service:settlement');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('monolithic: one Deployment of every target on a PVC, Recreate, and no NetworkPolicy to peers', async (t) => {
    if (needsHelm(t)) return;
    const docs = await render(['monolithic-values.yaml']);
    const [d, ...rest] = ofKind(docs, 'Deployment');
    assert.equal(rest.length, 0);
    assert.equal(d!.spec.replicas, 1);
    assert.equal(d!.spec.strategy.type, 'Recreate');
    assert.deepEqual(d!.spec.template.spec.containers[0].args, ['serve', '--target=all']);
    const pvc = named(docs, 'PersistentVolumeClaim', `${release}-gantry-data`);
    assert.equal(pvc.spec.resources.requests.storage, '2Gi');
    assert.equal(d!.spec.template.spec.volumes.find((v: Obj) => v.name === 'data').persistentVolumeClaim.claimName, pvc.metadata.name);
    const env = envOf(d!);
    assert.ok(!env.has('GANTRY_DATABASE_URL') && !env.has('GANTRY_PEERS_LOG_ADDRESS') && !env.has('GANTRY_PEERS_WEBHOOKS_ADDRESS'));
    assert.equal(env.get('GANTRY_RATE_LIMIT_STORE')!.value, 'memory');
    for (const kind of ['PodDisruptionBudget', 'HorizontalPodAutoscaler']) assert.equal(ofKind(docs, kind).length, 0, kind);
    const policies = ofKind(docs, 'NetworkPolicy');
    assert.equal(policies.length, 1);
    const from = (policies[0]!.spec.ingress as Obj[]).flatMap((r) => (r.from ?? []) as Obj[]);
    assert.deepEqual(
      from,
      [{ podSelector: { matchLabels: { 'app.kubernetes.io/instance': release, 'app.kubernetes.io/component': 'helm-test' } } }, { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'clients' } } }],
      'only the helm test Pods and allowedClients, no peer selectors',
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
      assert.equal(pod.spec.volumes.find((v: Obj) => v.name === 'tls').secret.secretName, `${release}-${target}-tls`);
    }
    const mono = ofKind(await render(['monolithic-values.yaml']), 'Pod');
    assert.deepEqual(mono.map((p) => p.metadata.name), [`${release}-gantry-test-health`]);
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
      [['auth.existingSecret=jwks'], /set exactly one of auth.existingSecret/],
      [['auth.generateDevKey=false', 'auth.jwksUrl=https://idp.example.com/jwks'], /auth.serviceTokenSecret: with an external issuer/],
      [['database.existingSecret='], /set database.url or database.existingSecret/],
    ];
    await Promise.all(cases.map(async ([set, message]) => {
      const r = await runHelm(['template', release, chart, ...valuesArgs([], set)]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, message);
    }));
  });
});
