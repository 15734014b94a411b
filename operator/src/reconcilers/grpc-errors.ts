import type { ServiceError } from '@grpc/grpc-js';

/** The gRPC status code of a failed call, if it was one. */
export function grpcCode(err: unknown): number | undefined {
  return typeof (err as ServiceError)?.code === 'number' ? (err as ServiceError).code : undefined;
}

/** What a failed call said, for a condition message. */
export function describeError(err: unknown): string {
  return (err as ServiceError)?.details || (err as Error)?.message || String(err);
}
