export { startOperator, loadKubeConfig, type Operator, type OperatorOptions } from './operator.js';
export { connectPeers, operatorTls, OPERATOR_SCOPES, type Peers } from './peers.js';
export * from './resources.js';
export { operatorModule } from './module.js';
export { operatorConfig, operatorConfigSchema, type OperatorConfig } from './config.js';
export type { OperatorProcessConfig } from './operator.js';
