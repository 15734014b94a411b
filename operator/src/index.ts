export { startOperator, loadKubeConfig, type Operator, type OperatorOptions } from './operator.js';
export { connectPeers, operatorTls, OPERATOR_SCOPES, OPERATOR_SUBJECT, type Peers } from './peers.js';
export * from './resources.js';
