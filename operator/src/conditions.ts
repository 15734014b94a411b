import type { Condition } from './resources.js';

/** A condition as a reconciler states it; the transition time is worked out by {@link setCondition}. */
export type ConditionUpdate = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

/**
 * metav1 semantics: the condition replaces the one of its type, keeping lastTransitionTime when
 * the status did not change, so a resync that finds nothing new writes nothing new.
 */
export function setCondition(conditions: readonly Condition[] | undefined, update: ConditionUpdate, generation: number, now: Date): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === update.type);
  const previous = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    ...update,
    message: update.message.slice(0, MAX_MESSAGE_CHARS),
    observedGeneration: generation,
    lastTransitionTime: previous && previous.status === update.status ? previous.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

/** The CRDs cap a condition message at 32 KiB; service errors are cut well below that. */
const MAX_MESSAGE_CHARS = 4096;

/** True when two status objects would serialise the same (skips a status write that changes nothing). */
export function sameStatus(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, x]) => [k, canonical(x)]),
    );
  }
  return v;
}
