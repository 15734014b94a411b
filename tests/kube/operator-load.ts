// A write load on Webhook and FeatureFlag custom resources for the operator's kill test, and the
// check of what the cluster and the services hold once the operator has converged. Each worker
// owns its names, so the last acknowledged write of a name (create, update or delete, as the API
// server answered it) is known exactly; `divergences()` lists every way the world differs from it.
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type CustomObjectsApi } from '@kubernetes/client-node';
import { FEATURE_FLAGS, FINALIZER, MANAGED_BY, MANAGED_BY_LABEL, WEBHOOKS } from '@gantry/operator';
import { flagsv1, type webhooksv1 } from '@gantry/proto';
import type { TestKube } from '../support/kube.js';
import { condition, type Conditioned } from './operator-support.js';

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
/** Of the writes to a name that exists, this share deletes it; the rest update its spec. */
const DELETE_SHARE = 0.2;
/** Event type sets a Webhook cycles through (no platform family, so no scope is involved). */
const EVENT_SETS = [['*'], ['orders.created'], ['orders.created', 'orders.paid']];

type Kind = 'webhook' | 'flag';

/** A name's last acknowledged state: the object as the write's answer showed it. */
interface Acked {
  uid: string;
  generation: number;
  spec: Record<string, unknown>;
}

interface CustomObject extends Conditioned {
  metadata: Conditioned['metadata'] & { name: string; deletionTimestamp?: string };
  spec: Record<string, unknown>;
  status?: Conditioned['status'] & { webhookId?: string; secretName?: string; services?: { name: string; synced: boolean; version?: string }[] };
}

export interface LoadCounts {
  creates: number;
  updates: number;
  deletes: number;
  /** Creates refused with 409: the name's previous object was still being finalized. */
  refused: number;
}

/** What the services hold, read by the test with its own clients. */
export interface ServiceView {
  /** Every registration in the webhooks service (all owners). */
  registrations(): Promise<webhooksv1.Webhook[]>;
  /** Every flag the webhooks service serves. */
  flags(): Promise<flagsv1.Flag[]>;
}

const kindOf: Record<Kind, typeof WEBHOOKS> = { webhook: WEBHOOKS, flag: FEATURE_FLAGS };
const sorted = (xs: unknown) => [...((xs as string[] | undefined) ?? [])].sort();

export class CustomResourceLoad {
  readonly acked: Record<Kind, Map<string, Acked | 'deleted'>> = { webhook: new Map(), flag: new Map() };
  readonly counts: LoadCounts = { creates: 0, updates: 0, deletes: 0, refused: 0 };
  private readonly names: { kind: Kind; name: string }[];
  private readonly core: CoreV1Api;
  private revision = 0;

  constructor(
    kube: TestKube,
    private readonly api: CustomObjectsApi,
    private readonly namespace: string,
    private readonly opts: { webhooks: number; flags: number; webhookUrl: string; pauseMs: number },
  ) {
    this.names = [
      ...Array.from({ length: opts.webhooks }, (_, i) => ({ kind: 'webhook' as const, name: `wh-${i}` })),
      ...Array.from({ length: opts.flags }, (_, i) => ({ kind: 'flag' as const, name: `ff-${i}` })),
    ];
    const kc = new KubeConfig();
    kc.loadFromFile(kube.kubeconfig);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  get writes(): number {
    return this.counts.creates + this.counts.updates + this.counts.deletes;
  }

  /** `workers` loops, each over its own share of the names, until `stopping()`. */
  run(workers: number, stopping: () => boolean): Promise<void>[] {
    return Array.from({ length: workers }, async (_, w) => {
      const mine = this.names.filter((_, i) => i % workers === w);
      while (!stopping()) {
        const { kind, name } = mine[Math.floor(Math.random() * mine.length)]!;
        await this.step(kind, name);
        await new Promise((r) => setTimeout(r, this.opts.pauseMs));
      }
    });
  }

  /** Creates the name if it is gone, else updates its spec or deletes it. */
  async step(kind: Kind, name: string): Promise<void> {
    const r = kindOf[kind];
    const at = { group: r.group, version: r.version, plural: r.plural, namespace: this.namespace };
    const state = this.acked[kind].get(name);
    const spec = this.spec(kind, ++this.revision);
    if (state === undefined || state === 'deleted') {
      try {
        const created = (await this.api.createNamespacedCustomObject({ ...at, body: { apiVersion: `${r.group}/${r.version}`, kind: r.kind, metadata: { name }, spec } })) as CustomObject;
        this.acked[kind].set(name, ackedOf(created));
        this.counts.creates++;
      } catch (err) {
        if ((err as { code?: unknown }).code !== 409) throw err;
        this.counts.refused++;
      }
    } else if (Math.random() < DELETE_SHARE) {
      await this.api.deleteNamespacedCustomObject({ ...at, name });
      this.acked[kind].set(name, 'deleted');
      this.counts.deletes++;
    } else {
      const patched = (await this.api.patchNamespacedCustomObject({ ...at, name, body: { spec } }, MERGE_PATCH)) as CustomObject;
      this.acked[kind].set(name, ackedOf(patched));
      this.counts.updates++;
    }
  }

  /** A spec for revision `rev`: each revision differs from the one before in what the operator carries over. */
  private spec(kind: Kind, rev: number): Record<string, unknown> {
    if (kind === 'webhook') return { url: this.opts.webhookUrl, eventTypes: EVENT_SETS[rev % EVENT_SETS.length], description: `rev ${rev}`, paused: rev % 4 === 0 };
    return { state: rev % 5 === 0 ? 'DISABLED' : 'ENABLED', type: 'boolean', variants: { on: true, off: false }, defaultVariant: rev % 2 ? 'on' : 'off', targets: ['webhooks'] };
  }

  private async list(kind: Kind): Promise<Map<string, CustomObject>> {
    const r = kindOf[kind];
    const listed = (await this.api.listNamespacedCustomObject({ group: r.group, version: r.version, plural: r.plural, namespace: this.namespace })) as { items: CustomObject[] };
    return new Map(listed.items.map((o) => [o.metadata.name, o]));
  }

  /** Every way the objects, their Secrets and the services differ from the acknowledged writes; empty once converged. */
  async divergences(services: ServiceView): Promise<string[]> {
    const [webhooks, flags, registrations, served, secrets] = await Promise.all([
      this.list('webhook'),
      this.list('flag'),
      services.registrations(),
      services.flags(),
      this.core.listNamespacedSecret({ namespace: this.namespace, labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` }),
    ]);
    const problems: string[] = [];
    const live = { webhook: this.present('webhook', webhooks, problems), flag: this.present('flag', flags, problems) };

    // Registrations: exactly one per live Webhook, under its uid, with its current spec; none for a deleted one.
    const ours = registrations.filter((w) => w.spec?.labels['k8s.namespace'] === this.namespace);
    const byExternalId = new Map<string, webhooksv1.Webhook[]>();
    for (const w of ours) byExternalId.set(w.externalId, [...(byExternalId.get(w.externalId) ?? []), w]);
    for (const [externalId, regs] of byExternalId) if (regs.length > 1) problems.push(`${regs.length} registrations for ${externalId}`);
    const liveUids = new Set(live.webhook.map((o) => `k8s:${o.metadata.uid}`));
    for (const w of ours) if (!liveUids.has(w.externalId)) problems.push(`registration ${w.webhookId} (${w.externalId}, ${w.spec?.labels['k8s.name']}) belongs to no live Webhook`);
    for (const o of live.webhook) {
      const name = o.metadata.name;
      const reg = byExternalId.get(`k8s:${o.metadata.uid}`)?.[0];
      if (!reg) {
        problems.push(`webhook ${name}: not registered`);
        continue;
      }
      if (reg.webhookId !== o.status?.webhookId) problems.push(`webhook ${name}: status.webhookId ${o.status?.webhookId} but registered as ${reg.webhookId}`);
      const want = { url: o.spec.url, eventTypes: sorted(o.spec.eventTypes), description: o.spec.description, paused: o.spec.paused };
      const got = { url: reg.spec?.url, eventTypes: sorted(reg.spec?.eventTypes), description: reg.spec?.description, paused: reg.spec?.paused };
      if (JSON.stringify(want) !== JSON.stringify(got)) problems.push(`webhook ${name}: registered ${JSON.stringify(got)}, spec ${JSON.stringify(want)}`);
      const ready = condition(o, 'Ready');
      if (ready?.status !== 'True' || ready.reason !== (o.spec.paused ? 'Paused' : 'Active')) problems.push(`webhook ${name}: Ready ${JSON.stringify(ready)} for generation ${o.metadata.generation}`);
    }
    // Signing Secrets: one per live Webhook, owned by it; none left by a deleted one.
    const owners = new Map(live.webhook.map((o) => [o.metadata.uid, o.metadata.name]));
    const secretOwners = secrets.items.map((s) => ({ name: s.metadata!.name!, uid: s.metadata!.ownerReferences?.find((r) => r.controller)?.uid ?? '' }));
    for (const s of secretOwners) if (!owners.has(s.uid)) problems.push(`Secret ${s.name} is owned by no live Webhook`);
    for (const [uid, name] of owners) if (!secretOwners.some((s) => s.uid === uid && s.name === `${name}-webhook`)) problems.push(`webhook ${name}: no Secret ${name}-webhook`);

    // Flags: each live FeatureFlag's spec is what the webhooks service serves, at the version in status; no other flag of ours.
    const source = (name: string) => `operator:${this.namespace}/${name}`;
    const loadSources = new Set(this.names.filter((n) => n.kind === 'flag').map((n) => source(n.name)));
    const servedBySource = new Map(served.filter((f) => loadSources.has(f.source)).map((f) => [f.source, f]));
    for (const o of live.flag) {
      const name = o.metadata.name;
      const flag = servedBySource.get(source(name));
      servedBySource.delete(source(name));
      const want = { key: name, state: flagsv1.FlagState[`FLAG_STATE_${o.spec.state as 'ENABLED' | 'DISABLED'}`], defaultVariant: o.spec.defaultVariant };
      const got = flag && { key: flag.key, state: flag.state, defaultVariant: flag.defaultVariant };
      if (JSON.stringify(want) !== JSON.stringify(got)) problems.push(`flag ${name}: served ${JSON.stringify(got)}, spec ${JSON.stringify(want)}`);
      const status = o.status?.services ?? [];
      if (status.length !== 1 || status[0]!.name !== 'webhooks' || !status[0]!.synced || status[0]!.version !== String(flag?.version)) {
        problems.push(`flag ${name}: status.services ${JSON.stringify(status)}, served version ${flag?.version}`);
      }
      const synced = condition(o, 'Synced');
      if (synced?.status !== 'True' || condition(o, 'Ready')?.status !== 'True') problems.push(`flag ${name}: Synced ${JSON.stringify(synced)} for generation ${o.metadata.generation}`);
    }
    for (const f of servedBySource.values()) problems.push(`flag ${f.key} (${f.source}) is served but its FeatureFlag is deleted`);
    return problems;
  }

  /**
   * The live objects of a kind, checked against the acknowledged writes: a deleted name is gone
   * (its finalizer released), a live one is the acknowledged object with status for its generation.
   */
  private present(kind: Kind, objects: Map<string, CustomObject>, problems: string[]): CustomObject[] {
    const live: CustomObject[] = [];
    for (const { name } of this.names.filter((n) => n.kind === kind)) {
      const want = this.acked[kind].get(name);
      const o = objects.get(name);
      if (want === undefined || want === 'deleted') {
        if (o) problems.push(`${kind} ${name}: deleted, but still there${o.metadata.deletionTimestamp ? ' (terminating)' : ''} with finalizers ${JSON.stringify(o.metadata.finalizers)}`);
        continue;
      }
      if (!o) {
        problems.push(`${kind} ${name}: acknowledged (generation ${want.generation}) but gone`);
        continue;
      }
      if (o.metadata.uid !== want.uid || o.metadata.generation !== want.generation || JSON.stringify(o.spec) !== JSON.stringify(want.spec)) {
        problems.push(`${kind} ${name}: ${o.metadata.uid} generation ${o.metadata.generation}, acknowledged ${want.uid} generation ${want.generation}`);
      }
      if (o.status?.observedGeneration !== o.metadata.generation) problems.push(`${kind} ${name}: observedGeneration ${o.status?.observedGeneration}, generation ${o.metadata.generation}`);
      if (JSON.stringify(o.metadata.finalizers) !== JSON.stringify([FINALIZER])) problems.push(`${kind} ${name}: finalizers ${JSON.stringify(o.metadata.finalizers)}`);
      live.push(o);
    }
    return live;
  }
}

function ackedOf(o: CustomObject): Acked {
  return { uid: o.metadata.uid, generation: o.metadata.generation, spec: o.spec };
}
