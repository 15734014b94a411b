import { z } from 'zod';
import { booleanFlag, splitList, type ConfigSlice } from '@gantry/kit';

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The operator target's settings (docs/operator.md): config key `operator`, environment variables GANTRY_OPERATOR_*. */
export const operatorConfigSchema = z.strictObject({
  /** A kubeconfig file; unset: the in-cluster service account when running in a pod, else $KUBECONFIG or ~/.kube/config. */
  kubeconfig: z.string().min(1).optional(),
  /** Its own namespace (its Lease); unset: its own pod's namespace (else the kubeconfig context's, else "default"). */
  namespace: z.string().regex(NAMESPACE, 'must be a namespace name').optional(),
  /**
   * The namespaces whose Webhooks and FeatureFlags it reconciles, and whose Secrets it writes;
   * unset or empty: none, so it reaches no namespace it was not given. The chart lists tenants'
   * namespaces and never the platform's own, whose Secrets hold the platform's keys (docs/security.md).
   */
  watchNamespaces: z.preprocess(splitList, z.array(z.string().regex(NAMESPACE, 'must be namespace names')).max(64)).optional(),
  /** The Lease replicas elect a leader with (in `namespace`); only the leader reconciles. */
  leaseName: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be a Kubernetes object name').default('gantry-operator'),
  /** This replica's name in the Lease; unset: the pod name (hostname) plus a random suffix. */
  identity: z.string().min(1).max(128).optional(),
  leaderElection: booleanFlag().default(true),
  /** A standby takes over this long after the leader stopped renewing. */
  leaseDurationMs: z.coerce.number().int().min(1000).max(300_000).default(15_000),
  /** The leader stops reconciling when it could not renew for this long (less than leaseDurationMs). */
  renewDeadlineMs: z.coerce.number().int().min(500).max(300_000).default(10_000),
  /** How often the leader renews and a standby retries. */
  retryPeriodMs: z.coerce.number().int().min(100).max(60_000).default(2_000),
  /** Every object is reconciled again this often, which corrects drift in the services. */
  resyncMs: z.coerce.number().int().min(1000).max(24 * 3600 * 1000).default(300_000),
  /** Objects of one kind reconciled at once. */
  workers: z.coerce.number().int().min(1).max(64).default(2),
}).prefault({}).refine((o) => o.renewDeadlineMs < o.leaseDurationMs, { message: 'renewDeadlineMs must be less than leaseDurationMs', path: ['renewDeadlineMs'] });

export type OperatorConfig = z.infer<typeof operatorConfigSchema>;

/** The operator module's slice of the program's config. */
export const operatorConfig = { key: 'operator', schema: operatorConfigSchema } satisfies ConfigSlice;
