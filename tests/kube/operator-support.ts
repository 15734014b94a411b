// What the operator tests share: the CRDs from the chart, services the operator talks to (started
// in this process on a port that survives a restart), an operator in this process or replicas of it
// in child processes on one Lease, and reads of custom resources through kubectl or the API.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoordinationV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { configSources, loadConfig, silentLogger, startRuntime, type ConfigInput, type GantryConfig, type GantryModule, type Runtime } from '@gantry/kit';
import { OPERATOR_SCOPES, operatorModule, startOperator, type Operator, type OperatorProcessConfig } from '@gantry/operator';
import { freshPgliteDir } from '@gantry/test-support/databases';
import { gantryBundle, repoRoot } from '../support/gantry-process.js';
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

/** The operators' lease timings here: short, so a handover fits in a test. */
export const LEASE = { durationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 } as const;

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
    GANTRY_OPERATOR_LEASE_DURATION_MS: String(LEASE.durationMs),
    GANTRY_OPERATOR_RENEW_DEADLINE_MS: String(LEASE.renewDeadlineMs),
    GANTRY_OPERATOR_RETRY_PERIOD_MS: String(LEASE.retryPeriodMs),
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

export interface OperatorChild {
  child: ChildProcess;
  logs: string[];
  exited: Promise<number | null>;
}

/**
 * `gantry serve --target=operator` as a child process, for kill -9: under tsx, or the bundled
 * program (`gantryBundle()`) when `program` names it.
 */
function operatorProcess(kube: TestKube, s: OperatorSettings, program?: string): OperatorChild {
  const main = join(repoRoot, 'services/gantry/src/main.ts');
  const env = { ...process.env, ...operatorEnv(kube, s) };
  for (const name of Object.keys(env)) if (name.startsWith('GANTRY_TEST_')) delete env[name];
  const args = program ? [program] : ['--import', 'tsx', main];
  const child = spawn(process.execPath, [...args, 'serve', '--target=operator'], { cwd: repoRoot, env });
  const logs: string[] = [];
  child.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, logs, exited };
}

const alive = (p: OperatorChild) => p.child.exitCode === null && p.child.signalCode === null;

/**
 * Operator processes campaigning for one Lease, each under an identity of its own, as the
 * replicas of a Deployment do; a test kills them with SIGKILL and starts others. `close()` kills
 * whatever still runs and removes the bundle.
 */
export class OperatorReplicas {
  readonly byIdentity = new Map<string, OperatorChild>();
  private readonly leases: CoordinationV1Api;

  private constructor(
    private readonly kube: TestKube,
    private readonly settings: OperatorSettings & { leaseName: string },
    private readonly bundle: { script: string; dir: string } | undefined,
  ) {
    const kc = new KubeConfig();
    kc.loadFromFile(kube.kubeconfig);
    this.leases = kc.makeApiClient(CoordinationV1Api);
  }

  /** `bundled`: run the bundled program, which starts in about half the time tsx takes (for many restarts). */
  static async create(kube: TestKube, settings: OperatorSettings & { leaseName: string }, opts: { bundled?: boolean } = {}): Promise<OperatorReplicas> {
    return new OperatorReplicas(kube, settings, opts.bundled ? await gantryBundle() : undefined);
  }

  start(identity: string): OperatorChild {
    const p = operatorProcess(this.kube, { ...this.settings, identity }, this.bundle?.script);
    this.byIdentity.set(identity, p);
    return p;
  }

  /** The Lease's holder, or undefined when no one holds it. */
  async holder(): Promise<string | undefined> {
    try {
      const lease = await this.leases.readNamespacedLease({ name: this.settings.leaseName, namespace: this.settings.namespace });
      return lease.spec?.holderIdentity || undefined;
    } catch (err) {
      if ((err as { code?: unknown }).code === 404) return undefined;
      throw err;
    }
  }

  /**
   * True once `identity` has read the Lease held by `leader` (it logs "new leader observed"): from
   * then on its clock for the Lease's expiry runs, so it can take over within the lease duration.
   */
  observes(identity: string, leader: string): boolean {
    const p = this.byIdentity.get(identity);
    if (!p || !alive(p)) return false;
    return p.logs
      .join('')
      .split('\n')
      .some((line) => line.includes('"new leader observed"') && line.includes(`"leader":${JSON.stringify(leader)}`));
  }

  /** SIGKILL; resolves once the process is gone. */
  async kill(identity: string): Promise<void> {
    const p = this.byIdentity.get(identity);
    if (!p) throw new Error(`no operator ${identity}`);
    if (alive(p)) p.child.kill('SIGKILL');
    await p.exited;
  }

  /** The output of every replica, for a failure message. */
  logs(): string {
    return [...this.byIdentity].map(([id, p]) => `--- ${id}\n${p.logs.join('')}`).join('\n');
  }

  async close(): Promise<void> {
    for (const p of this.byIdentity.values()) if (alive(p)) p.child.kill('SIGKILL');
    await Promise.all([...this.byIdentity.values()].map((p) => p.exited));
    if (this.bundle) rmSync(this.bundle.dir, { recursive: true, force: true });
  }
}

/** The custom objects API of the test server: cheaper than a kubectl process per call, for loads and polls. */
export function customObjects(kube: TestKube): CustomObjectsApi {
  const kc = new KubeConfig();
  kc.loadFromFile(kube.kubeconfig);
  return kc.makeApiClient(CustomObjectsApi);
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
