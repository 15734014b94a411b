// The log client library's public surface: the gRPC client, and verification of what a log
// server sends.
export * from './verify.js';
export { LogServiceClient } from './log-service-client.js';
