// The one way the reconcilers write status: through the status subresource, conditions with
// metav1 semantics, observedGeneration the generation they describe, and nothing written when
// nothing would change (a resync that finds everything in order costs no API write).
import type { KubernetesObject } from '@kubernetes/client-node';
import { sameStatus, setCondition, type ConditionUpdate } from './conditions.js';
import type { KubeApi } from './kube.js';
import type { Condition, Meta } from './resources.js';
import type { ResourceType } from './runtime/index.js';

/** What every status the operator writes has. */
export interface CommonStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

/** A custom object of the operator's, with its status of type S. */
export interface ObjectWithStatus<S extends CommonStatus> extends KubernetesObject {
  metadata: Meta;
  status?: S;
}

export class StatusWriter {
  constructor(
    private readonly kube: KubeApi,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Writes obj's status with `fields` replaced and `conditions` set in order (each replacing the
   * one of its type), for obj's current generation; skips the write when the result equals what is there.
   */
  async write<S extends CommonStatus>(resource: ResourceType, obj: ObjectWithStatus<S>, fields: Partial<S>, conditions: readonly ConditionUpdate[]): Promise<void> {
    const generation = obj.metadata.generation ?? 0;
    let list = obj.status?.conditions ?? [];
    for (const c of conditions) list = setCondition(list, c, generation, this.now());
    const next = { ...obj.status, ...fields, observedGeneration: generation, conditions: list };
    if (sameStatus(next, obj.status)) return;
    await this.kube.patchStatus(resource, obj.metadata.namespace, obj.metadata.name, next);
  }
}
