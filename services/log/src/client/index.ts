// The log client library's public surface: verification of what a log server sends.
export * from './verify.js';
