import { readFileSync } from 'node:fs';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type { Server } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

const HEALTH_SERVICE = 'grpc.health.v1.Health';

/**
 * Adds gRPC reflection for `services` (plus grpc.health.v1.Health) from buf-built
 * FileDescriptorSets. The descriptors are handed over exactly as buf wrote them: proto-loader's
 * own round trip drops each file's `dependency` list and breaks map entries, which makes grpcurl
 * fail on any message using google.protobuf.Timestamp, Struct or a map.
 */
export function addReflection(server: Server, descriptorSetPaths: readonly string[], services: readonly string[]): void {
  const files = descriptorSetPaths.flatMap((path) =>
    fromBinary(FileDescriptorSetSchema, readFileSync(path)).file.map((file) => toBinary(FileDescriptorProtoSchema, file)),
  );
  // @grpc/reflection reads only `fileDescriptorProtos` from each package definition entry.
  const definition = { descriptors: { fileDescriptorProtos: files } } as unknown as PackageDefinition;
  new ReflectionService(definition, { services: [...services, HEALTH_SERVICE] }).addToServer(server);
}
