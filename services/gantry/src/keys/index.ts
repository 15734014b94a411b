export { ensureKeys, type EnsureOptions } from './ensure.js';
export { keysPlanSchema, readKeysPlan, type KeysPlan, type LeafPlan } from './plan.js';
