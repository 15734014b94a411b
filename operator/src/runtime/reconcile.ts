// What a reconciler is, in controller-runtime's terms (pkg/reconcile): a function from a key to a
// result, errors that say whether retrying can help, and the adapter that reads the object for it.
import type { KubernetesObject } from '@kubernetes/client-node';
import { formatKey, type ObjectKey } from './keys.js';

export interface ReconcileResult {
  /** Reconcile this key again after this long even if nothing changes. */
  requeueAfterMs?: number;
}

/** Converges one object; throwing counts as a failure and the key is retried with backoff (unless the error is a TerminalError). */
export interface Reconciler {
  reconcile(key: ObjectKey, signal: AbortSignal): Promise<ReconcileResult | void>;
}

/**
 * "Do not retry": the failure needs a person (an invalid spec, a conflict with another object), so
 * backing off and trying again cannot help. The controller records it and forgets the key until the
 * object changes (or the next resync).
 */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

/** Converges one object, read fresh from the informer cache by {@link asReconciler}. */
export interface ObjectReconciler<T extends KubernetesObject> {
  reconcile(obj: T, signal: AbortSignal): Promise<ReconcileResult | void>;
}

/**
 * controller-runtime's ObjectReconciler adapter: reads the key's object from the cache and hands it
 * over; an object that is gone needs nothing (whatever its finalizer had to clean up was done before
 * the API server deleted it). This is the one place "gone" is decided, for every reconciler.
 */
export function asReconciler<T extends KubernetesObject>(cache: { get(key: string): T | undefined }, reconciler: ObjectReconciler<T>): Reconciler {
  return {
    async reconcile(key, signal) {
      const obj = cache.get(formatKey(key));
      if (!obj) return;
      return reconciler.reconcile(obj, signal);
    },
  };
}
