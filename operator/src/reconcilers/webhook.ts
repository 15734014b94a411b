// Webhook → an endpoint in the webhooks service, and its signing secret in a Secret the Webhook
// owns. Level-triggered: every pass reads the resource, the registration and the Secret, and
// converges whatever differs (drift included), so a missed event or a lost write heals itself.
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import type { ConditionUpdate } from '../conditions.js';
import { followFinalizer, type KubeApi } from '../kube.js';
import type { Peers } from '../peers.js';
import { API_VERSION, FINALIZER, MANAGED_BY, MANAGED_BY_LABEL, WEBHOOKS, type WebhookResource, type WebhookStatus } from '../resources.js';
import type { StatusWriter } from '../status.js';
import { describeError, grpcCode } from './grpc-errors.js';
import { desiredSpec, externalIdOf, sameSpec, secretKeyOf, secretNameOf } from './webhook-spec.js';
import { TerminalError, type EventRecorder, type ObjectReconciler, type ReconcileResult } from '../runtime/index.js';

/** Re-checked this often while the webhooks service has no configured address. */
const NO_ADDRESS_RETRY_MS = 60_000;

export interface WebhookReconcilerDeps {
  kube: KubeApi;
  peers: Peers;
  events: EventRecorder;
  status: StatusWriter;
  log: Logger;
}

/** A failure whose condition has been written; `retry` says whether backing off can help. */
class SyncError extends Error {
  constructor(readonly reason: string, message: string, readonly retry: boolean) {
    super(message);
  }
}

/** Turns a failed call into the condition reason users see, and whether a retry can help. */
function classify(err: unknown, what: string): SyncError {
  if (err instanceof SyncError) return err;
  const code = grpcCode(err);
  const detail = describeError(err);
  if (code === GrpcStatus.INVALID_ARGUMENT) return new SyncError('Rejected', `the webhooks service refused the spec: ${detail}; fix the Webhook`, false);
  if (code === GrpcStatus.UNAVAILABLE || code === GrpcStatus.DEADLINE_EXCEEDED) {
    return new SyncError('WebhooksUnavailable', `the webhooks service cannot be reached (${detail}); retrying with backoff`, true);
  }
  if (code === GrpcStatus.UNAUTHENTICATED || code === GrpcStatus.PERMISSION_DENIED) {
    return new SyncError('Unauthorized', `the webhooks service refused the operator (${detail}); it needs scopes webhooks.read and webhooks.manage, and events.<family>.read for the platform's event types`, true);
  }
  return new SyncError('SyncFailed', `${what} failed: ${detail}`, true);
}

export class WebhookReconciler implements ObjectReconciler<WebhookResource> {
  constructor(private readonly deps: WebhookReconcilerDeps) {}

  async reconcile(wh: WebhookResource, signal: AbortSignal): Promise<ReconcileResult | void> {
    if (!(await followFinalizer(this.deps.kube, WEBHOOKS, wh, FINALIZER, (w) => this.finalize(w, signal)))) return;
    const webhooks = this.deps.peers.webhooks;
    if (!webhooks) {
      await this.writeStatus(wh, {}, { type: 'Synced', status: 'False', reason: 'NoAddress', message: 'the operator has no address for the webhooks service; set GANTRY_PEERS_WEBHOOKS_ADDRESS' });
      return { requeueAfterMs: NO_ADDRESS_RETRY_MS };
    }

    let remote: webhooksv1.Webhook;
    let secretName: string;
    try {
      const registered = await this.register(wh, signal);
      remote = registered.webhook;
      secretName = await this.ensureSecret(wh, remote, registered.secret, signal);
    } catch (err) {
      signal.throwIfAborted(); // the operator is stopping and cancelled the calls: nothing to report
      const failure = classify(err, 'registering the endpoint');
      await this.writeStatus(wh, {}, { type: 'Synced', status: 'False', reason: failure.reason, message: failure.message });
      this.deps.events.event(wh, 'Warning', failure.reason, failure.message);
      throw failure.retry ? failure : new TerminalError(failure.message, { cause: failure });
    }

    const disabled = remote.status === webhooksv1.WebhookStatus.WEBHOOK_STATUS_DISABLED;
    await this.writeStatus(
      wh,
      { webhookId: remote.webhookId, secretName },
      { type: 'Synced', status: 'True', reason: 'Registered', message: `registered as ${remote.webhookId}` },
      disabled
        ? { type: 'Ready', status: 'False', reason: 'Disabled', message: `the webhooks service disabled the endpoint (${remote.disabledReason || 'sustained failures'}); edit the Webhook to re-enable it` }
        : { type: 'Ready', status: 'True', reason: wh.spec.paused ? 'Paused' : 'Active', message: wh.spec.paused ? 'registered; deliveries are paused' : 'registered; deliveries are active' },
    );
  }

  /**
   * The registration, created or corrected. CreateWebhook with the resource's uid as external_id
   * is idempotent, so a pass that died between the call and the status write finds the same one.
   */
  private async register(wh: WebhookResource, signal: AbortSignal): Promise<{ webhook: webhooksv1.Webhook; secret?: string }> {
    const webhooks = this.deps.peers.webhooks!;
    const spec = desiredSpec(wh);
    let existing: webhooksv1.Webhook | undefined;
    if (wh.status?.webhookId) {
      try {
        existing = (await webhooks.call((c) => c.getWebhook, { webhookId: wh.status.webhookId }, signal)).webhook;
      } catch (err) {
        if (grpcCode(err) !== GrpcStatus.NOT_FOUND) throw err;
        this.deps.log.warn({ webhook: `${wh.metadata.namespace}/${wh.metadata.name}`, webhook_id: wh.status.webhookId }, 'registration deleted outside the operator; registering again');
      }
      if (existing && existing.externalId !== externalIdOf(wh)) existing = undefined;
    }
    if (!existing) {
      const created = await webhooks.call((c) => c.createWebhook, { owner: '', externalId: externalIdOf(wh), spec, secret: '' }, signal);
      if (created.created) {
        this.deps.events.event(wh, 'Normal', 'Registered', `registered in the webhooks service as ${created.webhook!.webhookId}`);
        return { webhook: created.webhook!, secret: created.secret };
      }
      existing = created.webhook!;
    }
    // Edits re-enable an endpoint the service disabled: the user changed something to fix it.
    const edited = (wh.status?.observedGeneration ?? 0) < (wh.metadata.generation ?? 0);
    const reenable = existing.status === webhooksv1.WebhookStatus.WEBHOOK_STATUS_DISABLED && edited;
    // Header values cannot be read back to compare: an edit sends them again.
    const headersMayDiffer = edited && Object.keys(spec.headers).length > 0;
    if (!sameSpec(spec, existing) || reenable || headersMayDiffer) {
      const updated = await webhooks.call((c) => c.updateWebhook, { webhookId: existing.webhookId, spec, updateMask: undefined, reenable }, signal);
      this.deps.events.event(wh, 'Normal', 'Updated', reenable ? 're-enabled and updated the registration' : 'updated the registration to match the spec');
      existing = updated.webhook!;
    }
    return { webhook: existing };
  }

  /**
   * Writes the signing secret to the owned Secret. A secret the service returned now (a new
   * registration) is written as is; when the Secret is missing or lost its key, the only way to
   * learn a secret again is to rotate it. A Secret of that name the Webhook does not own is left
   * alone and reported.
   */
  private async ensureSecret(wh: WebhookResource, remote: webhooksv1.Webhook, fresh: string | undefined, signal: AbortSignal): Promise<string> {
    const { namespace, uid } = wh.metadata;
    const name = secretNameOf(wh);
    const key = secretKeyOf(wh);
    const current = await this.deps.kube.readSecret(namespace, name);
    if (current && !current.metadata?.ownerReferences?.some((o) => o.uid === uid)) {
      throw new SyncError('SecretConflict', `Secret ${name} exists and is not owned by this Webhook; delete it or choose another spec.secret.name`, false);
    }
    let secret = fresh;
    if (!secret && current?.data?.[key]) return name; // already holds the secret
    if (!secret) {
      const rotated = await this.deps.peers.webhooks!.call((c) => c.rotateSecret, { webhookId: remote.webhookId, overlap: undefined, secret: '' }, signal);
      secret = rotated.secret;
      this.deps.events.event(wh, 'Normal', 'SecretRotated', `Secret ${name} had no signing secret; rotated it and wrote the new one`);
    }
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name,
        namespace,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
        ownerReferences: [{ apiVersion: API_VERSION, kind: 'Webhook', name: wh.metadata.name, uid, controller: true, blockOwnerDeletion: true }],
        ...(current ? { resourceVersion: current.metadata!.resourceVersion } : {}),
      },
      type: 'Opaque',
      data: { [key]: Buffer.from(secret).toString('base64') },
    };
    if (current) await this.deps.kube.replaceSecret(namespace, body);
    else await this.deps.kube.createSecret(namespace, body);
    await this.removeStaleSecrets(wh, name);
    return name;
  }

  /** Secrets this Webhook owns under an earlier spec.secret.name. */
  private async removeStaleSecrets(wh: WebhookResource, keep: string): Promise<void> {
    const previous = wh.status?.secretName;
    if (!previous || previous === keep) return;
    const old = await this.deps.kube.readSecret(wh.metadata.namespace, previous);
    if (old?.metadata?.ownerReferences?.some((o) => o.uid === wh.metadata.uid)) await this.deps.kube.deleteSecret(wh.metadata.namespace, previous, old.metadata.uid!);
  }

  /** Deregisters and deletes the owned Secret; the finalizer is released after. */
  private async finalize(wh: WebhookResource, signal: AbortSignal): Promise<void> {
    const webhooks = this.deps.peers.webhooks;
    if (!webhooks) {
      await this.writeStatus(wh, {}, { type: 'Synced', status: 'False', reason: 'NoAddress', message: 'cannot deregister: the operator has no address for the webhooks service (GANTRY_PEERS_WEBHOOKS_ADDRESS)' });
      throw new Error('cannot deregister without a webhooks address');
    }
    try {
      const found = await webhooks.call((c) => c.listWebhooks, { owner: '', status: webhooksv1.WebhookStatus.WEBHOOK_STATUS_UNSPECIFIED, externalId: externalIdOf(wh), pageSize: 10, pageToken: '' }, signal);
      for (const w of found.webhooks) {
        try {
          await webhooks.call((c) => c.deleteWebhook, { webhookId: w.webhookId }, signal);
        } catch (err) {
          if (grpcCode(err) !== GrpcStatus.NOT_FOUND) throw err;
        }
      }
    } catch (err) {
      signal.throwIfAborted();
      const failure = classify(err, 'deregistering the endpoint');
      await this.writeStatus(wh, {}, { type: 'Synced', status: 'False', reason: failure.reason, message: `deletion waits: ${failure.message}` });
      throw failure;
    }
    const name = wh.status?.secretName ?? secretNameOf(wh);
    const secret = await this.deps.kube.readSecret(wh.metadata.namespace, name);
    // Garbage collection would delete it too; doing it here does not depend on a controller manager.
    if (secret?.metadata?.ownerReferences?.some((o) => o.uid === wh.metadata.uid)) await this.deps.kube.deleteSecret(wh.metadata.namespace, name, secret.metadata.uid!);
    this.deps.events.event(wh, 'Normal', 'Deregistered', 'removed the endpoint from the webhooks service');
  }

  /** Writes status when it differs from what is there; the conditions given replace theirs. */
  private writeStatus(wh: WebhookResource, fields: Partial<WebhookStatus>, ...conditions: ConditionUpdate[]): Promise<void> {
    // A failed sync leaves Ready as it was only when it was already False; a working endpoint whose
    // spec can no longer be applied is not Ready for this generation.
    const synced = conditions.find((c) => c.type === 'Synced');
    const ready: ConditionUpdate[] = synced && !conditions.some((c) => c.type === 'Ready') ? [{ type: 'Ready', status: 'False', reason: synced.reason, message: synced.message }] : [];
    return this.deps.status.write(WEBHOOKS, wh, fields, [...conditions, ...ready]);
  }
}
