// grpc.channelz.v1.Channelz from grpc-js, served through the kit's call path (mTLS, JWT, the
// `admin` scope, limits, tracing) rather than added raw to the server: channelz lists every
// channel, server and socket of the process with their peers' addresses, which is for operators.
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { getChannelzHandlers, getChannelzServiceDefinition, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { GantryError, Status } from '../errors.js';
import { defineService, type ServiceModule } from '../rpc/service.js';

type UnaryHandler = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;
type FieldDescriptor = { name: string; number: number; type: string; label: string };
type LoaderMethod = { path: string; requestType: { type: { field: FieldDescriptor[] } }; requestDeserialize: unknown };

/** The field types channelz requests use: ids, counts and one flag, all varints. */
const VARINT_READERS: Record<string, (r: BinaryReader) => string | boolean> = {
  TYPE_INT64: (r) => String(r.int64()),
  TYPE_UINT64: (r) => String(r.uint64()),
  TYPE_INT32: (r) => String(r.int32()),
  TYPE_UINT32: (r) => String(r.uint32()),
  TYPE_BOOL: (r) => r.bool(),
};

/**
 * A request deserializer built from the method's descriptor that reads from a BinaryReader, as
 * the kit's strict decoding needs (proto-loader's own does not): the request as grpc-js's handlers
 * expect it (field names as in the .proto, 64-bit integers as strings). Fails at start-up if a
 * future channelz request grows a field that is not a scalar varint.
 */
function varintRequestDeserializer(method: LoaderMethod): (input: Buffer) => Record<string, string | boolean> {
  const fields = new Map<number, { name: string; read: (r: BinaryReader) => string | boolean }>();
  for (const f of method.requestType.type.field) {
    const read = VARINT_READERS[f.type];
    if (!read || f.label === 'LABEL_REPEATED') throw new Error(`${method.path}: field ${f.name} is ${f.label} ${f.type}, which the channelz request decoder does not read`);
    fields.set(f.number, { name: f.name, read });
  }
  return (input) => {
    const reader = input instanceof BinaryReader ? input : new BinaryReader(input);
    const request: Record<string, string | boolean> = {};
    while (reader.pos < reader.len) {
      const [number, wireType] = reader.tag();
      const field = fields.get(number);
      if (!field) reader.skip(wireType);
      else if (wireType !== WireType.Varint) throw new Error(`field ${field.name} has wire type ${wireType}, not a varint`);
      else request[field.name] = field.read(reader);
    }
    return request;
  };
}

/**
 * Channelz for this process, every method behind `scope`. Its handlers read only `call.request`
 * (grpc-js, channelz.ts), so each is called with a call that carries the decoded request; its
 * responses are encoded by grpc-js's own (proto-loader) serializers.
 */
export function channelzService(scope: string): ServiceModule {
  const loaded = getChannelzServiceDefinition() as unknown as Record<string, LoaderMethod>;
  const grpcHandlers = getChannelzHandlers() as unknown as Record<string, UnaryHandler>;
  const definition: Record<string, LoaderMethod> = {};
  const scopes: Record<string, readonly string[]> = {};
  const handlers: Record<string, (request: unknown) => Promise<unknown>> = {};
  for (const [method, loaderMethod] of Object.entries(loaded)) {
    definition[method] = { ...loaderMethod, requestDeserialize: varintRequestDeserializer(loaderMethod) };
    const handler = grpcHandlers[method];
    if (!handler) continue; // a method this grpc-js does not implement answers UNIMPLEMENTED
    scopes[method] = [scope];
    handlers[method] = (request) =>
      new Promise((resolve, reject) =>
        handler({ request } as ServerUnaryCall<unknown, unknown>, (err, value) => {
          if (!err) return resolve(value);
          const { code = Status.UNKNOWN, details = 'channelz failed' } = err as Partial<ServiceError>;
          reject(new GantryError(code, details));
        }),
      );
  }
  return defineService({
    name: 'grpc.channelz.v1.Channelz',
    definition: definition as never,
    scopes: scopes as never,
    handlers: handlers as never,
    unimplementedReason: 'this grpc-js does not implement it',
  });
}
