// The service's records: what the store reads and writes and the API converts. No I/O here.

/** What an owner sets (WebhookSpec). */
export interface Spec {
  url: string;
  eventTypes: string[];
  headers: Record<string, string>;
  description: string;
  paused: boolean;
  rateLimitPerSecond: number;
  maxConcurrency: number;
  labels: Record<string, string>;
}

export type EndpointState = 'ENABLED' | 'DISABLED' | 'DELETED';

/**
 * A registered endpoint without its secrets. Its `spec.headers` hold the names only, each with an
 * empty value: the values are sealed like the signing secret and opened only to deliver.
 */
export interface WebhookRecord {
  id: string;
  owner: string;
  externalId: string;
  spec: Spec;
  /** The platform event families it receives (domain/families.ts), '*' for every one. */
  families: string[];
  /** Its internal target was approved by an admin or a platform workload: unqualified allow-list entries apply to it. */
  internalApproved: boolean;
  state: EndpointState;
  disabledReason: string;
  consecutiveFailures: number;
  secretRotatedAt: Date;
  previousSecretExpiresAt: Date | null;
  version: bigint;
  createdVersion: bigint;
  createdAt: Date;
  updatedAt: Date;
}

export type RegistryChangeType = 'CREATED' | 'UPDATED' | 'DELETED' | 'SECRET_ROTATED';

export type DeliveryState = 'PENDING' | 'SUCCEEDED' | 'DEAD_LETTERED' | 'CANCELLED';

export interface AttemptRecord {
  attemptNumber: number;
  startedAt: Date;
  latencyMs: number;
  responseStatus: number;
  error: string;
  responseBodyExcerpt: string;
}

export interface DeliveryRecord {
  id: string;
  seq: bigint;
  webhookId: string;
  eventId: string;
  eventType: string;
  status: DeliveryState;
  attempts: AttemptRecord[];
  maxAttempts: number;
  nextAttemptAt: Date | null;
  createdAt: Date;
  completedAt: Date | null;
}

/** The spec fields UpdateWebhook's mask may name (WebhookSpec field names). */
export const SPEC_FIELDS = ['url', 'event_types', 'headers', 'description', 'paused', 'rate_limit_per_second', 'max_concurrency', 'labels'] as const;
export type SpecField = (typeof SPEC_FIELDS)[number];

const FIELD_KEYS: Record<SpecField, keyof Spec> = {
  url: 'url',
  event_types: 'eventTypes',
  headers: 'headers',
  description: 'description',
  paused: 'paused',
  rate_limit_per_second: 'rateLimitPerSecond',
  max_concurrency: 'maxConcurrency',
  labels: 'labels',
};

/** Header names only, each with an empty value: how a record keeps them (the values are sealed). */
export function headerNamesOnly(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(headers).map((k) => [k, '']));
}

/** `current` with the masked fields taken from `next`. */
export function applyMask(current: Spec, next: Spec, fields: readonly SpecField[]): Spec {
  const out: Spec = { ...current };
  for (const f of fields) (out as unknown as Record<string, unknown>)[FIELD_KEYS[f]] = next[FIELD_KEYS[f]];
  return out;
}

/** The record as JSON for the registry history (dates as ISO strings, versions as strings). */
export function webhookToJson(w: WebhookRecord): unknown {
  return { ...w, version: w.version.toString(), createdVersion: w.createdVersion.toString() };
}

export function webhookFromJson(j: unknown): WebhookRecord {
  const o = j as Record<string, unknown> & { spec: Spec };
  const d = (v: unknown) => new Date(v as string);
  return {
    id: o.id as string,
    owner: o.owner as string,
    externalId: o.externalId as string,
    spec: o.spec,
    // History written before these fields existed: entitled to nothing, approved for nothing.
    families: (o.families as string[] | undefined) ?? [],
    internalApproved: (o.internalApproved as boolean | undefined) ?? false,
    state: o.state as EndpointState,
    disabledReason: o.disabledReason as string,
    consecutiveFailures: o.consecutiveFailures as number,
    secretRotatedAt: d(o.secretRotatedAt),
    previousSecretExpiresAt: o.previousSecretExpiresAt ? d(o.previousSecretExpiresAt) : null,
    version: BigInt(o.version as string),
    createdVersion: BigInt(o.createdVersion as string),
    createdAt: d(o.createdAt),
    updatedAt: d(o.updatedAt),
  };
}
