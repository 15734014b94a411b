// The custom resources the operator reconciles (charts/gantry/templates/crds), as TypeScript
// types. The API server has already checked them against the CRD schema; the reconcilers check
// only what the schema cannot express.
import type { KubernetesObject, V1ObjectMeta } from '@kubernetes/client-node';
import type { FeatureFlagSpec as KitFeatureFlagSpec } from '@gantry/kit';
import type { ResourceType } from './runtime/index.js';

export const GROUP = 'gantry.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const WEBHOOKS: ResourceType = { group: GROUP, version: VERSION, plural: 'webhooks', kind: 'Webhook' };
export const FEATURE_FLAGS: ResourceType = { group: GROUP, version: VERSION, plural: 'featureflags', kind: 'FeatureFlag' };
export const SECRETS: ResourceType = { group: '', version: 'v1', plural: 'secrets', kind: 'Secret' };

/** metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface Meta extends V1ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
}

export interface WebhookSpec {
  url: string;
  eventTypes: string[];
  headers?: Record<string, string>;
  description?: string;
  rateLimitPerSecond?: number;
  maxConcurrency?: number;
  paused?: boolean;
  secret?: { name?: string; key?: string };
}

export interface WebhookStatus {
  observedGeneration?: number;
  webhookId?: string;
  secretName?: string;
  conditions?: Condition[];
}

export interface WebhookResource extends KubernetesObject {
  metadata: Meta;
  spec: WebhookSpec;
  status?: WebhookStatus;
}

export const FLAG_TARGETS = ['log', 'settlement', 'approvals', 'webhooks'] as const;
export type FlagTarget = (typeof FLAG_TARGETS)[number];

/** The kit's FeatureFlag spec (what becomes the flag), with the targets the operator pushes it to. */
export interface FeatureFlagSpec extends Omit<KitFeatureFlagSpec, 'targets'> {
  targets: FlagTarget[];
}

export interface FlagServiceStatus {
  name: string;
  synced: boolean;
  version?: string;
  message?: string;
}

export interface FeatureFlagStatus {
  observedGeneration?: number;
  services?: FlagServiceStatus[];
  conditions?: Condition[];
}

export interface FeatureFlagResource extends KubernetesObject {
  metadata: Meta;
  spec: FeatureFlagSpec;
  status?: FeatureFlagStatus;
}

/** The finalizer that makes deletion wait until the services have forgotten the object. */
export const FINALIZER = 'gantry.dev/cleanup';
/** Label on the Secrets the operator writes (its Secret informer watches only these). */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'gantry-operator';
