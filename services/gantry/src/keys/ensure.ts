// `gantry keys ensure`: makes every key and certificate of the plan that is missing, and issues a
// leaf certificate again when it nears expiry or no longer says what the plan says. Nothing that
// exists is regenerated (the CA, the log's key, the key ring, the dev issuer): re-running it is safe.
import { ApiException, CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { CertificateAuthority } from '@gantry/kit';
import { jwksOf, leafReissueReason, newCa, newEd25519Pem, newEs256Pem, newKeyRing, newLeaf, usableCa } from './material.js';
import type { KeysPlan } from './plan.js';

/** Helm leaves a resource with this annotation in place when a release stops rendering it. */
const KEEP = { 'helm.sh/resource-policy': 'keep' };
const FIELD_MANAGER = 'gantry-keys';
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export interface EnsureOptions {
  namespace: string;
  plan: KeysPlan;
  now?: () => Date;
  /** One line per Secret made, renewed or kept. */
  report?: (line: string) => void;
}

type Data = Record<string, string>;

/** Reads and writes the Secrets of one namespace; data is plain text here, base64 on the wire. */
class Secrets {
  private readonly core: CoreV1Api;

  constructor(kc: KubeConfig, private readonly namespace: string, private readonly labels: Record<string, string>) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async read(name: string): Promise<{ data: Data; secret: V1Secret } | undefined> {
    try {
      const secret = await this.core.readNamespacedSecret({ namespace: this.namespace, name });
      const data = Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
      return { data, secret };
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    }
  }

  private body(name: string, type: string, data: Data, resourceVersion?: string): V1Secret {
    const encoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
    return { apiVersion: 'v1', kind: 'Secret', type, data: encoded, metadata: { name, namespace: this.namespace, labels: this.labels, annotations: KEEP, ...(resourceVersion ? { resourceVersion } : {}) } };
  }

  /** Creates the Secret; false when another run created it first (then it is read again). */
  async create(name: string, type: string, data: Data): Promise<boolean> {
    try {
      await this.core.createNamespacedSecret({ namespace: this.namespace, body: this.body(name, type, data), fieldManager: FIELD_MANAGER });
      return true;
    } catch (err) {
      if (err instanceof ApiException && err.code === 409) return false;
      throw err;
    }
  }

  /** Replaces the Secret if it is still at the version read (a concurrent run's write wins). */
  async replace(current: V1Secret, type: string, data: Data): Promise<void> {
    const name = current.metadata!.name!;
    await this.core.replaceNamespacedSecret({ namespace: this.namespace, name, body: this.body(name, type, data, current.metadata!.resourceVersion), fieldManager: FIELD_MANAGER });
  }

  /** Marks a Secret an older chart rendered as kept, so an upgrade that stops rendering it does not delete it. */
  async keep(current: V1Secret): Promise<void> {
    if (current.metadata?.annotations?.['helm.sh/resource-policy'] === 'keep') return;
    await this.core.patchNamespacedSecret({ namespace: this.namespace, name: current.metadata!.name!, body: { metadata: { annotations: KEEP } }, fieldManager: FIELD_MANAGER }, MERGE_PATCH);
  }
}

/** A Secret made once: created with `make()` when absent, else left as it is (only marked kept). */
async function once(secrets: Secrets, name: string, key: string, make: () => Data, report: (l: string) => void): Promise<void> {
  const existing = await secrets.read(name);
  if (existing && existing.data[key]) {
    await secrets.keep(existing.secret);
    report(`${name}: present, kept`);
    return;
  }
  if (existing) throw new Error(`Secret ${name} exists without key ${key}; delete it (its holders lose that key) or fix it by hand`);
  report((await secrets.create(name, 'Opaque', make())) ? `${name}: created` : `${name}: created by another run`);
}

/** The CA: loaded, created when absent, or replaced when it cannot sign (every leaf is then issued again). */
async function ensureCa(secrets: Secrets, tls: NonNullable<KeysPlan['tls']>, now: Date, report: (l: string) => void): Promise<CertificateAuthority> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const existing = await secrets.read(tls.caSecret);
    const ca = await usableCa(existing?.data['tls.crt'], existing?.data['tls.key']);
    if (typeof ca !== 'string') {
      await secrets.keep(existing!.secret);
      report(`${tls.caSecret}: CA present, kept`);
      return ca;
    }
    const fresh = await newCa(`${tls.caSecret}`, tls.caDays, now);
    const data = { 'ca.crt': fresh.certPem, 'tls.crt': fresh.certPem, 'tls.key': fresh.keyPem };
    if (existing) {
      await secrets.replace(existing.secret, 'kubernetes.io/tls', data);
      report(`${tls.caSecret}: CA replaced: ${ca}`);
      return fresh;
    }
    if (await secrets.create(tls.caSecret, 'kubernetes.io/tls', data)) {
      report(`${tls.caSecret}: CA created`);
      return fresh;
    }
  }
  throw new Error(`could not settle the CA Secret ${tls.caSecret}: it kept changing under this run`);
}

async function ensureLeaves(secrets: Secrets, plan: KeysPlan, ca: CertificateAuthority, now: Date, report: (l: string) => void): Promise<void> {
  const tls = plan.tls!;
  for (const leaf of tls.leaves) {
    const existing = await secrets.read(leaf.secret);
    const reason = existing?.data['ca.crt'] === ca.certPem ? leafReissueReason(existing.data['tls.crt'], ca, leaf, { trustDomain: plan.trustDomain, renewBeforeDays: tls.renewBeforeDays, now }) : existing ? 'its ca.crt is not the current CA' : 'there is none';
    if (!reason) {
      await secrets.keep(existing!.secret);
      report(`${leaf.secret}: certificate valid, kept`);
      continue;
    }
    const issued = await newLeaf(ca, leaf, { trustDomain: plan.trustDomain, certDays: tls.certDays, now });
    const data = { 'ca.crt': ca.certPem, 'tls.crt': issued.certPem, 'tls.key': issued.keyPem };
    if (existing) await secrets.replace(existing.secret, 'kubernetes.io/tls', data);
    else if (!(await secrets.create(leaf.secret, 'kubernetes.io/tls', data))) throw new Error(`Secret ${leaf.secret} appeared during this run; run again`);
    report(`${leaf.secret}: certificate issued for ${leaf.workload} (${reason})`);
  }
}

/** Makes what the plan lists in `namespace`; throws with what to fix when it cannot. */
export async function ensureKeys(kc: KubeConfig, opts: EnsureOptions): Promise<void> {
  const { plan } = opts;
  const now = (opts.now ?? (() => new Date()))();
  const report = opts.report ?? (() => undefined);
  const secrets = new Secrets(kc, opts.namespace, { ...plan.labels, 'app.kubernetes.io/managed-by': 'gantry-keys' });
  if (plan.tls) {
    const ca = await ensureCa(secrets, plan.tls, now, report);
    await ensureLeaves(secrets, plan, ca, now, report);
  }
  if (plan.logSigningKey) await once(secrets, plan.logSigningKey.secret, 'signing-key.pem', () => ({ 'signing-key.pem': newEd25519Pem() }), report);
  if (plan.webhooksKeyRing) await once(secrets, plan.webhooksKeyRing.secret, 'keys', () => ({ keys: newKeyRing() }), report);
  if (plan.devIssuer) {
    await once(secrets, plan.devIssuer.secret, 'signing-key.pem', () => ({ 'signing-key.pem': newEs256Pem() }), report);
    // The JWKS follows the private key that won (another run's, or an older one).
    const key = (await secrets.read(plan.devIssuer.secret))!.data['signing-key.pem']!;
    await ensureJwks(secrets, plan.devIssuer.jwksSecret, key, report);
  }
}

/** The dev issuer's public JWKS, made again whenever it does not match its private key. */
async function ensureJwks(secrets: Secrets, name: string, keyPem: string, report: (l: string) => void): Promise<void> {
  const jwks = jwksOf(keyPem);
  const existing = await secrets.read(name);
  if (existing?.data['jwks.json'] === jwks) {
    await secrets.keep(existing.secret);
    report(`${name}: present, kept`);
    return;
  }
  if (existing) await secrets.replace(existing.secret, 'Opaque', { 'jwks.json': jwks });
  else await secrets.create(name, 'Opaque', { 'jwks.json': jwks });
  report(`${name}: JWKS written`);
}
