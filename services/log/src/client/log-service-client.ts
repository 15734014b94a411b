// The log's gRPC client as the client library ships it: the generated client, with Read and Tail
// responses decoded by entry-wire.ts (bytes fields as views of the message, about a quarter of
// the generated decoder's CPU per entry). Everything else is the generated code's.
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { logv1 } from '@gantry/proto';
import { decodeReadResponse, decodeTailResponse } from './entry-wire.js';

/** LogService for clients: the generated definition with the faster Read and Tail decoders. */
const logClientDefinition = {
  ...logv1.LogServiceService,
  read: { ...logv1.LogServiceService.read, responseDeserialize: decodeReadResponse },
  tail: { ...logv1.LogServiceService.tail, responseDeserialize: decodeTailResponse },
} satisfies typeof logv1.LogServiceService;

/**
 * A drop-in for logv1.LogServiceClient. The entries it reads hold views of their message: keep
 * a copy (`Buffer.from(entry.data)`) of an entry kept long, so it does not hold the whole message.
 */
export const LogServiceClient = makeGenericClientConstructor(logClientDefinition, 'gantry.log.v1.LogService') as unknown as typeof logv1.LogServiceClient;
