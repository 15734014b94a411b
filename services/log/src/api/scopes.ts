import type { ScopeTable } from '@gantry/kit';
import { logv1 } from '@gantry/proto';

/** Every LogService RPC and the scopes it needs. */
export const logScopes: ScopeTable<typeof logv1.LogServiceService> = {
  append: ['log.append'],
  appendBatch: ['log.append'],
  read: ['log.read'],
  tail: ['log.read'],
  verify: ['log.read'],
  listPartitions: ['log.read'],
  getLastEntry: ['log.read'],
  getCheckpoint: ['log.read'],
  getInclusionProof: ['log.read'],
  getConsistencyProof: ['log.read'],
};
