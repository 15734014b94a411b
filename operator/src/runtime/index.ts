// The operator's controller runtime: informers, a rate-limited work queue, controllers, Lease leader
// election, Kubernetes Events and a manager tying them together. Reconcilers code against this file;
// time (Clock, Backoff) is the kit's, shared with the services' poll loops.
export { type ObjectKey, type ResourceType, keyOf, parseKey, formatKey, apiVersionOf, collectionPath } from './keys.js';
export { Informer, type InformerEvent, type InformerHandler, type InformerOptions } from './informer.js';
export { WorkQueue, type WorkQueueOptions } from './queue.js';
export { Controller, type ControllerOptions, type Watch } from './controller.js';
export { asReconciler, TerminalError, type ObjectReconciler, type Reconciler, type ReconcileResult } from './reconcile.js';
export { LeaderElector, type LeaderCallbacks, type LeaderElectorOptions } from './leader.js';
export { EventRecorder, type EventType } from './events.js';
export { Manager, LeadershipLostError, type ManagerOptions } from './manager.js';
export { KubeApiError, isGone } from './kube-http.js';
