// The few API calls the reconcilers make, on @kubernetes/client-node's typed clients. Status goes
// through the status subresource only; metadata changes carry the resourceVersion they were
// computed from, so a concurrent change makes them fail (409) and the key is reconciled again.
import { ApiException, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig, type KubernetesObject, type V1Secret } from '@kubernetes/client-node';
import type { ResourceType } from './runtime/index.js';

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
/** Whoever changes an object is named in its managedFields. */
const FIELD_MANAGER = 'gantry-operator';

export function httpStatus(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

export class KubeApi {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;

  constructor(kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** Replaces `.status` of a custom object (a merge patch on the status subresource). */
  async patchStatus(r: ResourceType, namespace: string, name: string, status: object): Promise<void> {
    await this.custom.patchNamespacedCustomObjectStatus({ group: r.group, version: r.version, plural: r.plural, namespace, name, body: { status }, fieldManager: FIELD_MANAGER }, MERGE_PATCH);
  }

  /** Sets the finalizers of a custom object, if it is still at `resourceVersion`. */
  async setFinalizers(r: ResourceType, namespace: string, name: string, finalizers: string[], resourceVersion: string): Promise<void> {
    const body = { metadata: { finalizers, resourceVersion } };
    await this.custom.patchNamespacedCustomObject({ group: r.group, version: r.version, plural: r.plural, namespace, name, body, fieldManager: FIELD_MANAGER }, MERGE_PATCH);
  }

  /** The Secret, or undefined when there is none. */
  async readSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({ namespace, name });
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw err;
    }
  }

  async createSecret(namespace: string, secret: V1Secret): Promise<void> {
    await this.core.createNamespacedSecret({ namespace, body: secret, fieldManager: FIELD_MANAGER });
  }

  /** Replaces a Secret; `secret.metadata.resourceVersion` makes it conditional. */
  async replaceSecret(namespace: string, secret: V1Secret): Promise<void> {
    await this.core.replaceNamespacedSecret({ namespace, name: secret.metadata!.name!, body: secret, fieldManager: FIELD_MANAGER });
  }

  async deleteSecret(namespace: string, name: string, uid: string): Promise<void> {
    try {
      // The precondition keeps a Secret someone re-created under the same name.
      await this.core.deleteNamespacedSecret({ namespace, name, body: { preconditions: { uid } } });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
    }
  }
}

/**
 * The finalizer protocol both reconcilers follow. A deleted object still carrying `finalizer` is
 * cleaned up by `finalize` (which throws to retry), then released so the API server deletes it. A
 * live object without it gets it first; that update wakes the key again. Returns true only for a
 * live object that carries the finalizer: the one to converge.
 */
export async function followFinalizer<T extends KubernetesObject>(kube: KubeApi, resource: ResourceType, obj: T, finalizer: string, finalize: (obj: T) => Promise<void>): Promise<boolean> {
  const meta = obj.metadata!;
  const finalizers = meta.finalizers ?? [];
  const has = finalizers.includes(finalizer);
  if (meta.deletionTimestamp) {
    if (has) {
      await finalize(obj);
      await kube.setFinalizers(resource, meta.namespace!, meta.name!, finalizers.filter((f) => f !== finalizer), meta.resourceVersion!);
    }
    return false;
  }
  if (!has) await kube.setFinalizers(resource, meta.namespace!, meta.name!, [...finalizers, finalizer], meta.resourceVersion!);
  return has;
}
