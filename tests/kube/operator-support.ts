// What the operator tests share: the CRDs from the chart, services the operator talks to (started
// in this process on a port that survives a restart), an operator in this process or in a child
// process, and reads of custom resources through kubectl.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { configSources, loadConfig, silentLogger, startRuntime, type ConfigInput, type GantryConfig, type GantryModule, type Runtime } from '@gantry/kit';
import { OPERATOR_SCOPES, operatorModule, startOperator, type Operator, type OperatorProcessConfig } from '@gantry/operator';
import { freshPgliteDir } from '@gantry/test-support/databases';
import { repoRoot } from '../support/gantry-process.js';
import { deleteNamespace, ok, waitForCrds, type TestKube } from '../support/kube.js';

const chart = join(repoRoot, 'charts/gantry');
export const CRDS = ['webhooks.gantry.dev', 'featureflags.gantry.dev'];

/** Applies the chart's CRDs (rendered by helm) and waits until the server serves them. */
export async function installCrds(k: TestKube): Promise<void> {
  const rendered = ok(await k.helm(['template', 'crds', chart, '--show-only', 'templates/crds/webhooks.gantry.dev.yaml', '--show-only', 'templates/crds/featureflags.gantry.dev.yaml']), 'helm template CRDs');
  ok(await k.kubectl(['apply', '--server-side', '-f', '-'], rendered), 'kubectl apply CRDs');
  await waitForCrds(k.kubectl, CRDS);
}

/**
 * Deletes the CRDs and every object of their kinds. No operator runs any more to release the
 * objects' finalizers, and a CRD is not deleted while objects of it remain (a later create fails
 * with "terminating"), so the finalizers are cleared first, as an administrator would.
 */
export async function deleteCrds(k: Pick<TestKube, 'kubectl'>): Promise<void> {
  const present = ok(await k.kubectl(['get', 'crd', ...CRDS, '--ignore-not-found', '-o', 'name']), 'kubectl get crd').trim();
  if (!present) return;
  for (const kind of present.split('\n').map((line) => line.replace(/^.*\//, ''))) {
    const listed = ok(await k.kubectl(['get', kind, '--all-namespaces', '-o', 'json']), `kubectl get ${kind}`);
    const items = (JSON.parse(listed) as { items: { metadata: { name: string; namespace: string; finalizers?: string[] } }[] }).items;
    for (const { metadata: m } of items.filter((i) => i.metadata.finalizers?.length)) {
      const release = () => k.kubectl(['patch', kind, m.name, '--namespace', m.namespace, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      let r = await release();
      if (/namespaces ".*" not found/.test(r.stderr)) {
        // Orphaned by an interrupted run: the API serves no write in a namespace that does not exist.
        ok(await k.kubectl(['create', 'namespace', m.namespace]), `recreating namespace ${m.namespace}`);
        r = await release();
        await deleteNamespace(k.kubectl, m.namespace);
      }
      if (r.code !== 0 && !/NotFound/.test(r.stderr)) throw new Error(`releasing the finalizer of ${kind} ${m.namespace}/${m.name} failed:\n${r.stderr}`);
    }
  }
  ok(await k.kubectl(['delete', 'crd', ...CRDS, '--ignore-not-found', '--timeout=60s']), 'kubectl delete crd');
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Services in this process on a fixed port and data dir, so `restart()` brings them back where the
 * operator (which shares the data dir's dev PKI and signing key) finds them.
 */
export class Services {
  runtime: Runtime | undefined;
  readonly dataDir: string;
  port = 0;
  private config: GantryConfig | undefined;
  private readonly ownsDataDir: boolean;

  /** `dataDir` shares another's dev PKI and signing key (replicas, and the operator, trust them). */
  constructor(
    private readonly services: GantryModule[],
    private readonly overrides: ConfigInput = {},
    dataDir?: string,
  ) {
    this.ownsDataDir = dataDir === undefined;
    this.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), 'gantry-op-'));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (!this.config) {
      this.port = await freePort();
      if (!this.overrides.database?.url) await freshPgliteDir(join(this.dataDir, 'db'));
      this.config = loadConfig({ env: { GANTRY_AUTH_DEV_ISSUER: 'true' }, modules: configSources(this.services), overrides: { dataDir: this.dataDir, listen: { host: '127.0.0.1', port: this.port, healthPort: 0 }, telemetry: { logLevel: 'silent' }, rateLimit: { points: 100_000 }, ...this.overrides } });
    }
    // The operator calls as its workload (the dev PKI's operator certificate), granted as `gantry serve` grants it.
    this.runtime = await startRuntime({ config: this.config, modules: this.services, log: silentLogger(), readinessIntervalMs: 500, workloads: new Map([['operator', { scopes: OPERATOR_SCOPES, families: [] }]]) });
  }

  async stop(): Promise<void> {
    await this.runtime?.stop(0);
    this.runtime = undefined;
  }

  async close(): Promise<void> {
    await this.stop();
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export interface OperatorSettings {
  namespace: string;
  dataDir: string;
  peers: Partial<Record<'webhooks' | 'log' | 'settlement' | 'approvals', string>>;
  leaseName?: string;
  identity?: string;
  resyncMs?: number;
}

/** The operator's config as GANTRY_* variables (a child process takes exactly these). */
export function operatorEnv(kube: TestKube, s: OperatorSettings): Record<string, string> {
  const env: Record<string, string> = {
    GANTRY_DATA_DIR: s.dataDir,
    GANTRY_LISTEN_HOST: '127.0.0.1',
    GANTRY_LISTEN_HEALTH_PORT: '0',
    GANTRY_TELEMETRY_LOG_LEVEL: 'info',
    GANTRY_PEERS_SERVER_NAME: 'localhost',
    GANTRY_OPERATOR_KUBECONFIG: kube.kubeconfig,
    GANTRY_OPERATOR_NAMESPACE: s.namespace,
    GANTRY_OPERATOR_WATCH_NAMESPACES: s.namespace,
    GANTRY_OPERATOR_LEASE_NAME: s.leaseName ?? 'gantry-operator',
    // Short lease timings so a handover fits in a test.
    GANTRY_OPERATOR_LEASE_DURATION_MS: '3000',
    GANTRY_OPERATOR_RENEW_DEADLINE_MS: '2000',
    GANTRY_OPERATOR_RETRY_PERIOD_MS: '300',
    GANTRY_OPERATOR_RESYNC_MS: String(s.resyncMs ?? 60_000),
  };
  if (s.identity) env.GANTRY_OPERATOR_IDENTITY = s.identity;
  for (const [target, address] of Object.entries(s.peers)) env[`GANTRY_PEERS_${target.toUpperCase()}_ADDRESS`] = address;
  return env;
}

/** An operator in this process. */
export async function operatorInProcess(kube: TestKube, s: OperatorSettings): Promise<Operator> {
  // The operator's slice, and the peer addresses of the service targets it calls.
  const peers = ['log', 'settlement', 'approvals', 'webhooks'].map((name) => ({ name, servesGrpc: true }));
  const config = loadConfig({ env: operatorEnv(kube, s), modules: [...configSources([operatorModule]), ...peers] }) as OperatorProcessConfig;
  const kc = new KubeConfig();
  kc.loadFromFile(kube.kubeconfig);
  const operator = await startOperator({ config, log: silentLogger(), kubeConfig: kc, maxBackoffMs: 1000 });
  await operator.synced();
  return operator;
}

/** `gantry serve --target=operator` as a child process, for kill -9. */
export function operatorProcess(kube: TestKube, s: OperatorSettings): { child: ChildProcess; logs: string[]; exited: Promise<number | null> } {
  const main = join(repoRoot, 'services/gantry/src/main.ts');
  const env = { ...process.env, ...operatorEnv(kube, s) };
  for (const name of Object.keys(env)) if (name.startsWith('GANTRY_TEST_')) delete env[name];
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'serve', '--target=operator'], { cwd: repoRoot, env });
  const logs: string[] = [];
  child.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, logs, exited };
}

/** A custom resource (or any object) as JSON, or undefined when it does not exist. */
export async function getObject<T>(k: TestKube, kind: string, name: string, namespace: string): Promise<T | undefined> {
  const r = await k.kubectl(['get', kind, name, '--namespace', namespace, '-o', 'json', '--ignore-not-found']);
  const out = ok(r, `kubectl get ${kind} ${name}`).trim();
  return out ? (JSON.parse(out) as T) : undefined;
}

export interface Conditioned {
  metadata: { generation: number; finalizers?: string[]; uid: string; resourceVersion: string };
  status?: { observedGeneration?: number; conditions?: { type: string; status: string; reason: string; message: string; observedGeneration?: number }[] };
}

/** The condition `type`, when the status describes the object's current generation. */
export function condition(o: Conditioned | undefined, type: string): { status: string; reason: string; message: string } | undefined {
  const c = o?.status?.conditions?.find((x) => x.type === type);
  return c && c.observedGeneration === o!.metadata.generation ? c : undefined;
}
