import { readFileSync } from 'node:fs';
import { z } from 'zod';

const secretName = z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'a Secret name');
const workload = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/);

/**
 * What `gantry keys ensure` keeps in the namespace, as the chart renders it (a ConfigMap): names
 * and lifetimes only, never key material, so a render (helm template, Argo CD, Flux) changes
 * nothing and every key is made once, at runtime, by the keys Job.
 */
export const keysPlanSchema = z.strictObject({
  /** Labels put on every Secret made (the chart's). */
  labels: z.record(z.string(), z.string()).default({}),
  trustDomain: z.string().min(1).max(253).default('gantry.local'),
  /** The platform CA and the leaf certificates it signs; absent when cert-manager issues them. */
  tls: z.strictObject({
    caSecret: secretName,
    caDays: z.number().int().min(30).max(36_500),
    certDays: z.number().int().min(1).max(3650),
    /** A leaf is issued again when less than this is left of it. */
    renewBeforeDays: z.number().int().min(0).max(3650),
    leaves: z.array(z.strictObject({
      secret: secretName,
      /** Its SPIFFE ID's name: `spiffe://<trustDomain>/<workload>`. */
      workload,
      commonName: z.string().min(1).max(64),
      dnsNames: z.array(z.string().min(1).max(253)).max(64).default([]),
      usage: z.enum(['server', 'client', 'both']),
    })).max(32),
  }).optional(),
  /** The log's checkpoint signing key (Ed25519), made once. */
  logSigningKey: z.strictObject({ secret: secretName }).optional(),
  /** The webhooks key ring that encrypts stored endpoint secrets, made once. */
  webhooksKeyRing: z.strictObject({ secret: secretName }).optional(),
  /** Development only: an ES256 issuer key (no pod mounts it) and its public JWKS (every pod's). */
  devIssuer: z.strictObject({ secret: secretName, jwksSecret: secretName }).optional(),
});

export type KeysPlan = z.infer<typeof keysPlanSchema>;
export type LeafPlan = NonNullable<KeysPlan['tls']>['leaves'][number];

export function readKeysPlan(file: string): KeysPlan {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read the keys plan ${file}: ${(err as Error).message}`);
  }
  const parsed = keysPlanSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`the keys plan ${file} is invalid: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
