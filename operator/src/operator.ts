// `gantry serve --target=operator`: informers on Webhooks, FeatureFlags and the Secrets the
// operator writes, one controller per kind, all behind Lease leader election.
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { KubeConfig, type KubernetesObject, type V1Secret } from '@kubernetes/client-node';
import type { GantryConfig, Logger } from '@gantry/kit';
import type { OperatorConfig } from './config.js';
import { KubeApi } from './kube.js';
import { connectPeers, type Peers } from './peers.js';
import { FeatureFlagReconciler } from './reconcilers/featureflag.js';
import { WebhookReconciler } from './reconcilers/webhook.js';
import { FEATURE_FLAGS, MANAGED_BY, MANAGED_BY_LABEL, SECRETS, WEBHOOKS, type FeatureFlagResource, type WebhookResource } from './resources.js';
import { asReconciler, Controller, EventRecorder, Informer, Manager, WorkQueue } from './runtime/index.js';
import { StatusWriter } from './status.js';

/** Where a pod finds its own namespace. */
const SERVICE_ACCOUNT_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The program's config as the operator reads it: the kit's settings and its own slice. */
export type OperatorProcessConfig = GantryConfig & { operator: OperatorConfig };

export interface OperatorOptions {
  config: OperatorProcessConfig;
  log: Logger;
  /** Tests pass a kubeconfig; otherwise config.operator.kubeconfig, in-cluster, or the default. */
  kubeConfig?: KubeConfig;
  /** Tests pass peers; otherwise connected from config.peers. */
  peers?: Peers;
  /** Tests shorten the work queues' backoff cap. */
  maxBackoffMs?: number;
}

export interface Operator {
  identity: string;
  namespace: string;
  readonly isLeader: boolean;
  /** Resolves when the informers have listed (the operator is useful even as a standby). */
  synced(): Promise<void>;
  /**
   * Rejects when the operator stops by itself: it lost the leader Lease (LeadershipLostError).
   * `gantry serve` then exits non-zero so the pod restarts and campaigns again, as controller-runtime does.
   */
  readonly failed: Promise<never>;
  /** Graceful: in-flight reconciles finish, the lease is released, watches close. */
  stop(): Promise<void>;
}

export function loadKubeConfig(config: OperatorProcessConfig): KubeConfig {
  const kc = new KubeConfig();
  if (config.operator.kubeconfig) kc.loadFromFile(config.operator.kubeconfig);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes cluster configured: set GANTRY_OPERATOR_KUBECONFIG (or KUBECONFIG), or run the operator in a pod');
  return kc;
}

function ownNamespace(config: OperatorProcessConfig, kc: KubeConfig): string {
  if (config.operator.namespace) return config.operator.namespace;
  if (existsSync(SERVICE_ACCOUNT_NAMESPACE_FILE)) return readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, 'utf8').trim();
  return kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
}

/** The Webhook that owns a Secret the operator wrote, as a work-queue key. */
function ownerWebhook(o: KubernetesObject): string[] {
  const owner = o.metadata?.ownerReferences?.find((r) => r.controller && r.kind === WEBHOOKS.kind && r.apiVersion.startsWith(`${WEBHOOKS.group}/`));
  return owner ? [`${o.metadata!.namespace}/${owner.name}`] : [];
}

/** The informers one operator reads: the two kinds it reconciles and the Secrets it writes. */
interface Informers {
  webhooks: Informer<WebhookResource>;
  flags: Informer<FeatureFlagResource>;
  secrets: Informer<V1Secret & KubernetesObject>;
}

function informersFor(kc: KubeConfig, namespace: string, log: Logger): Informers {
  return {
    webhooks: new Informer<WebhookResource>({ kc, resource: WEBHOOKS, namespace, log }),
    flags: new Informer<FeatureFlagResource>({ kc, resource: FEATURE_FLAGS, namespace, log }),
    // Only the Secrets it wrote: a deleted or edited signing Secret is put back.
    secrets: new Informer<V1Secret & KubernetesObject>({ kc, resource: SECRETS, namespace, labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}`, log }),
  };
}

/** One controller per kind and watched namespace, each reading its objects fresh from the cache through asReconciler. */
function controllersFor(opts: OperatorOptions, namespace: string, informers: Informers, peers: Peers, kube: KubeApi, events: EventRecorder): Controller[] {
  const { config, log } = opts;
  const status = new StatusWriter(kube);
  const common = { workers: config.operator.workers, resyncMs: config.operator.resyncMs, log, events };
  const queue = () => new WorkQueue(opts.maxBackoffMs !== undefined ? { maxDelayMs: opts.maxBackoffMs } : {});
  const webhook = new WebhookReconciler({ kube, peers, events, status, log: log.child({ controller: 'webhook' }) });
  const featureFlag = new FeatureFlagReconciler({ kube, peers, events, status, log: log.child({ controller: 'featureflag' }) });
  return [
    new Controller({ name: `webhook ${namespace}`, informer: informers.webhooks, watches: [{ informer: informers.secrets, map: ownerWebhook }], reconciler: asReconciler(informers.webhooks, webhook), queue: queue(), ...common }),
    new Controller({ name: `featureflag ${namespace}`, informer: informers.flags, reconciler: asReconciler(informers.flags, featureFlag), queue: queue(), ...common }),
  ];
}

export async function startOperator(opts: OperatorOptions): Promise<Operator> {
  const { config, log } = opts;
  const kc = opts.kubeConfig ?? loadKubeConfig(config);
  const namespace = ownNamespace(config, kc);
  const watched = config.operator.watchNamespaces ?? [];
  const identity = config.operator.identity ?? `${hostname()}-${randomBytes(3).toString('hex')}`;
  const peers = opts.peers ?? (await connectPeers(config));
  const events = new EventRecorder({ kc, component: 'gantry-operator', instance: identity, log: log.child({ component: 'events' }) });
  const informers = watched.map((ns) => ({ ns, informers: informersFor(kc, ns, log) }));
  if (watched.length === 0) log.warn('watching no namespace (operator.watchNamespaces is empty): no Webhook or FeatureFlag is reconciled');
  const manager = new Manager({
    kc,
    namespace,
    leaseName: config.operator.leaseName,
    identity,
    log,
    leaderElection: config.operator.leaderElection,
    leaseDurationMs: config.operator.leaseDurationMs,
    renewDeadlineMs: config.operator.renewDeadlineMs,
    retryPeriodMs: config.operator.retryPeriodMs,
  });
  const kube = new KubeApi(kc);
  for (const { ns, informers: of } of informers) {
    for (const controller of controllersFor(opts, ns, of, peers, kube, events)) manager.add(controller);
  }

  const stopping = new AbortController();
  const running = manager.start(stopping.signal);
  const failed = running.then(
    () => new Promise<never>(() => undefined), // a requested stop is not a failure
    (err: unknown) => {
      log.error({ err }, 'the operator stopped by itself');
      throw err;
    },
  );
  failed.catch(() => undefined); // observed by whoever awaits it
  log.info({ namespace, watched, identity, lease: config.operator.leaseName }, 'operator started; waiting to lead');
  return {
    identity,
    namespace,
    get isLeader() {
      return manager.isLeader;
    },
    failed,
    synced: async () => {
      await Promise.all(informers.flatMap(({ informers: i }) => [i.webhooks.synced(), i.flags.synced(), i.secrets.synced()]));
    },
    async stop() {
      stopping.abort();
      await running.catch(() => undefined);
      if (!opts.peers) peers.close();
    },
  };
}
