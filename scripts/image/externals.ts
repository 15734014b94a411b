/**
 * Packages left out of the image's bundle (scripts/image/bundle.ts) and shipped in its node_modules
 * instead, and why: each loads files by path relative to its own module (`__dirname`, or a native
 * addon beside it), which a bundle cannot keep. grpc-js is external too so that it stays one instance with @grpc/reflection and
 * grpc-health-check, which require it themselves. Other programs that run in the image with its
 * node_modules (the cluster tests' driver) leave out the same ones.
 */
export const EXTERNAL = [
  '@electric-sql/pglite', // postgres.wasm and its data files
  '@grpc/grpc-js', // channelz and ORCA .proto files
  '@grpc/reflection', // reflection .proto files
  'grpc-health-check', // health.proto
  'sodium-native', // a native addon: prebuilds/<platform>/sodium-native.node
] as const;
