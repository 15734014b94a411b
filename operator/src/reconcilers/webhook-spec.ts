// What a Webhook asks of the webhooks service, in the service's terms: the registration's spec,
// its stable external id, and where its signing secret goes. Pure functions of the resource.
import type { webhooksv1 } from '@gantry/proto';
import { sameStatus } from '../conditions.js';
import type { WebhookResource } from '../resources.js';

/** The key of the signing secret in its Secret unless spec.secret.key says otherwise. */
const DEFAULT_SECRET_KEY = 'secret';

/** The registration's stable key in the webhooks service: the resource's uid, never reused. */
export const externalIdOf = (wh: WebhookResource) => `k8s:${wh.metadata.uid}`;
export const secretNameOf = (wh: WebhookResource) => wh.spec.secret?.name ?? `${wh.metadata.name}-webhook`;
export const secretKeyOf = (wh: WebhookResource) => wh.spec.secret?.key ?? DEFAULT_SECRET_KEY;

/** The registration the Webhook describes, normalised as the service stores it. */
export function desiredSpec(wh: WebhookResource): webhooksv1.WebhookSpec {
  const s = wh.spec;
  return {
    url: s.url,
    eventTypes: [...new Set(s.eventTypes)].sort(),
    // The service stores header names lower-cased; compare and send them that way.
    headers: Object.fromEntries(Object.entries(s.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    description: s.description ?? '',
    paused: s.paused ?? false,
    rateLimitPerSecond: s.rateLimitPerSecond ?? 0,
    maxConcurrency: s.maxConcurrency ?? 0,
    labels: { 'k8s.namespace': wh.metadata.namespace, 'k8s.name': wh.metadata.name },
  };
}

/**
 * True when the service's registration already matches (event types in any order). Header values
 * are write-only in the service, so only their names can be compared; a changed value reaches the
 * service with the update a new generation makes (WebhookReconciler.register).
 */
export function sameSpec(a: webhooksv1.WebhookSpec, b: webhooksv1.Webhook | undefined): boolean {
  const names = (h: Record<string, string>) => Object.keys(h).sort();
  return b?.spec !== undefined && sameStatus(
    { ...a, eventTypes: [...a.eventTypes].sort(), headers: names(a.headers) },
    { ...b.spec, eventTypes: [...b.spec.eventTypes].sort(), headers: [...b.headerNames].sort() },
  );
}
