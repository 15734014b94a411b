// An OpenAPI 3.0 document of the gateway's routes, from the same descriptors and google.api.http
// options the gateway routes by, in the proto3 JSON mapping it speaks. scripts/proto-gen.sh writes
// it to proto/src/gen/openapi.json at build time; the gateway serves that file.
import type { DescEnum, DescField, DescMessage } from '@bufbuild/protobuf';
import type { Route, RouteTable } from './routes.js';

type Schema = Record<string, unknown>;

/** Well-known types and their JSON forms (the proto3 JSON mapping). */
const WKT: Record<string, Schema> = {
  'google.protobuf.Timestamp': { type: 'string', format: 'date-time' },
  'google.protobuf.Duration': { type: 'string', pattern: '^-?[0-9]+(\\.[0-9]{1,9})?s$', example: '1.5s' },
  'google.protobuf.FieldMask': { type: 'string', description: 'Comma-separated field paths in lowerCamelCase' },
  'google.protobuf.Struct': { type: 'object', additionalProperties: true },
  'google.protobuf.Value': { description: 'Any JSON value' },
  'google.protobuf.ListValue': { type: 'array', items: {} },
  'google.protobuf.Empty': { type: 'object' },
  'google.protobuf.Any': { type: 'object', properties: { '@type': { type: 'string' } }, additionalProperties: true },
  'google.protobuf.StringValue': { type: 'string', nullable: true },
  'google.protobuf.BytesValue': { type: 'string', format: 'byte', nullable: true },
  'google.protobuf.BoolValue': { type: 'boolean', nullable: true },
  'google.protobuf.Int32Value': { type: 'integer', format: 'int32', nullable: true },
  'google.protobuf.UInt32Value': { type: 'integer', format: 'int64', minimum: 0, nullable: true },
  'google.protobuf.Int64Value': { type: 'string', format: 'int64', nullable: true },
  'google.protobuf.UInt64Value': { type: 'string', format: 'uint64', nullable: true },
  'google.protobuf.DoubleValue': { type: 'number', format: 'double', nullable: true },
  'google.protobuf.FloatValue': { type: 'number', format: 'float', nullable: true },
};

/** Scalar types by @bufbuild/protobuf's ScalarType number: 64-bit integers are strings in JSON. */
const SCALAR: Record<number, Schema> = {
  1: { type: 'number', format: 'double' },
  2: { type: 'number', format: 'float' },
  3: { type: 'string', format: 'int64' },
  4: { type: 'string', format: 'uint64' },
  5: { type: 'integer', format: 'int32' },
  6: { type: 'string', format: 'uint64' },
  7: { type: 'integer', format: 'int64', minimum: 0 },
  8: { type: 'boolean' },
  9: { type: 'string' },
  12: { type: 'string', format: 'byte' },
  13: { type: 'integer', format: 'int64', minimum: 0 },
  15: { type: 'integer', format: 'int32' },
  16: { type: 'string', format: 'int64' },
  17: { type: 'integer', format: 'int32' },
  18: { type: 'string', format: 'int64' },
};

const STATUS_REF = { $ref: '#/components/schemas/google.rpc.Status' };
const STATUS_SCHEMA: Schema = {
  type: 'object',
  description: 'google.rpc.Status: every error the gateway answers',
  properties: { code: { type: 'integer', format: 'int32' }, message: { type: 'string' }, details: { type: 'array', items: { type: 'object', additionalProperties: true } } },
  required: ['code', 'message', 'details'],
};

class SchemaBuilder {
  readonly schemas: Record<string, Schema> = { 'google.rpc.Status': STATUS_SCHEMA };

  ref(message: DescMessage): Schema {
    const wkt = WKT[message.typeName];
    if (wkt) return wkt;
    if (!(message.typeName in this.schemas)) {
      this.schemas[message.typeName] = {}; // placeholder: recursive messages refer to themselves
      this.schemas[message.typeName] = this.messageSchema(message);
    }
    return { $ref: `#/components/schemas/${message.typeName}` };
  }

  private enumSchema(desc: DescEnum): Schema {
    return { type: 'string', enum: desc.values.map((v) => v.name) };
  }

  private single(field: DescField, kind: 'scalar' | 'enum' | 'message'): Schema {
    if (kind === 'enum') return this.enumSchema(field.enum!);
    if (kind === 'message') return this.ref(field.message!);
    return SCALAR[field.scalar as number] ?? { type: 'string' };
  }

  fieldSchema(field: DescField): Schema {
    switch (field.fieldKind) {
      case 'list':
        return { type: 'array', items: this.single(field, field.listKind) };
      case 'map':
        return { type: 'object', additionalProperties: this.single(field, field.mapKind) };
      default:
        return this.single(field, field.fieldKind);
    }
  }

  private messageSchema(message: DescMessage): Schema {
    const properties: Record<string, Schema> = {};
    for (const field of message.fields) properties[field.jsonName] = this.fieldSchema(field);
    return { type: 'object', properties, additionalProperties: false };
  }
}

/** `/v1/flags/{flag.key}` stays as is; `{name=things/*}` becomes `{name}`; the verb stays literal. */
function openapiPath(route: Route): string {
  return route.template.source.replace(/\{([^}=]+)=[^}]*\}/g, '{$1}');
}

/** Query parameters: the top-level fields neither in the path nor in the body, whose JSON is a scalar or a list of them. */
function queryParameters(route: Route, builder: SchemaBuilder): Schema[] {
  if (route.body === '*') return [];
  const inPath = new Set(route.template.variables.map((v) => v.fieldPath.join('.')));
  return route.method.input.fields
    .filter((f) => !inPath.has(f.name) && f.name !== route.body && f.fieldKind !== 'map')
    .filter((f) => f.fieldKind !== 'message' || f.message.typeName in WKT)
    .map((f) => ({ name: f.jsonName, in: 'query', required: false, schema: builder.fieldSchema(f), ...(f.fieldKind === 'list' ? { style: 'form', explode: true } : {}) }));
}

function operationOf(route: Route, builder: SchemaBuilder): Schema {
  const m = route.method;
  const kind = m.methodKind;
  const parameters = [
    ...route.template.variables.map((v) => ({ name: v.fieldPath.join('.'), in: 'path', required: true, schema: { type: 'string' } })),
    ...queryParameters(route, builder),
  ];
  const input = builder.ref(m.input);
  const bodySchema = kind === 'client_streaming' ? { type: 'array', items: input } : route.body === '*' ? input : undefined;
  const bodyField = route.body && route.body !== '*' ? m.input.fields.find((f) => f.name === route.body) : undefined;
  const requestSchema = bodySchema ?? (bodyField ? builder.fieldSchema(bodyField) : undefined);
  const output = route.responseBody ? builder.fieldSchema(m.output.fields.find((f) => f.name === route.responseBody)!) : builder.ref(m.output);
  const ok =
    kind === 'server_streaming'
      ? { description: `Server-Sent Events: one \`data:\` line per ${m.output.typeName} (JSON), then \`event: status\` with the final google.rpc.Status`, content: { 'text/event-stream': { schema: { type: 'string' } } } }
      : { description: m.output.typeName, content: { 'application/json': { schema: output } } };
  const responses: Record<string, unknown> = kind === 'bidi_streaming' ? {} : { '200': ok };
  responses.default = { description: 'An error: google.rpc.Status, with the HTTP status of its gRPC code', content: { 'application/json': { schema: STATUS_REF } } };
  const notes = kind === 'bidi_streaming' ? ' Bidirectional stream: not carried over HTTP (answers 501); call it over gRPC.' : kind === 'client_streaming' ? ' Client stream: the body is a JSON array of request messages.' : '';
  return {
    operationId: `${m.parent.name}_${m.name}`,
    tags: [m.parent.typeName],
    summary: `${m.parent.typeName}.${m.name}`,
    description: `gRPC ${route.grpcPath} (${kind.replace('_', ' ')}).${notes}`,
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(requestSchema ? { requestBody: { required: true, content: { 'application/json': { schema: requestSchema } } } } : {}),
    responses,
    security: [{ bearer: [] }],
  };
}

/** The gateway's own endpoints (server.ts), which need no token. */
function ownEndpoints(): Record<string, Record<string, Schema>> {
  const json = (description: string, schema: Schema = { type: 'object', additionalProperties: true }) => ({ description, content: { 'application/json': { schema } } });
  const op = (operationId: string, summary: string, responses: Record<string, unknown>, parameters?: Schema[]) => ({
    get: { operationId, tags: ['gateway'], summary, ...(parameters ? { parameters } : {}), responses, security: [] },
  });
  const health = { '200': json('every configured service SERVING: {status, timestamp, services: {<name>: {status, grpc_status, latency_ms}}}'), '503': json('some service is not SERVING, or none is configured') };
  return {
    '/healthz': op('gateway_healthz', 'This gateway process is up', { '200': json('{"status":"ok"}') }),
    '/health': op('gateway_health', "Every service's grpc.health.v1 status and check latency", health),
    '/readyz': op('gateway_readyz', 'The same as /health', health),
    '/ping': op('gateway_ping', 'pong', { '200': json('{"message":"pong","timestamp":"..."}') }),
    '/ping/{service}': op('gateway_pingService', "One service's grpc.health.v1 status", { '200': json('SERVING'), '503': json('not SERVING'), '404': json('no such service', STATUS_REF) }, [{ name: 'service', in: 'path', required: true, schema: { type: 'string' } }]),
    '/openapi.json': op('gateway_openapi', 'This document', { '200': json('OpenAPI 3.0.3') }),
  };
}

/** The OpenAPI 3.0.3 document of `table`'s routes. Deterministic: same descriptors, same bytes. */
export function openapiDocument(table: RouteTable, version: string): Schema {
  const builder = new SchemaBuilder();
  const paths: Record<string, Record<string, Schema>> = {};
  for (const route of table.routes) {
    const item = (paths[openapiPath(route)] ??= {});
    item[route.verb.toLowerCase()] = operationOf(route, builder);
  }
  Object.assign(paths, ownEndpoints());
  const sortedPaths = Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b)));
  const schemas = Object.fromEntries(Object.entries(builder.schemas).sort(([a], [b]) => a.localeCompare(b)));
  return {
    openapi: '3.0.3',
    info: {
      title: 'Gantry HTTP/JSON gateway',
      version,
      description: 'Routes generated from the google.api.http options of the gRPC contracts in proto/. Bodies and responses use the proto3 JSON mapping. Every route needs `authorization: Bearer <jwt>` with the scopes its RPC requires.',
    },
    servers: [{ url: '/' }],
    tags: ['gateway', ...new Set(table.routes.map((r) => r.method.parent.typeName))].sort().map((name) => ({ name })),
    paths: sortedPaths,
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
  };
}
