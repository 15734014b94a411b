// HTTP/JSON ⇄ protobuf binary, by the proto3 JSON mapping of @bufbuild/protobuf (conformance-tested):
// int64 as strings, Timestamps in RFC 3339, enums by name, bytes in base64.
import { fromBinary, fromJson, toBinary, toJson, type DescField, type DescMessage, type JsonObject, type JsonValue, type Registry } from '@bufbuild/protobuf';
import { fieldNamed, type Route } from './routes.js';
import type { TemplateMatch } from './template.js';

/** A request the gateway cannot turn into the RPC's message: answered 400 INVALID_ARGUMENT with this message. */
export class BadRequest extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadRequest';
  }
}

/** Well-known message types whose JSON form is a string, so a path or query value can set them. */
const STRING_WKT = new Set(['google.protobuf.Timestamp', 'google.protobuf.Duration', 'google.protobuf.FieldMask', 'google.protobuf.StringValue', 'google.protobuf.BytesValue', 'google.protobuf.Int64Value', 'google.protobuf.UInt64Value']);
const NUMBER_WKT = new Set(['google.protobuf.Int32Value', 'google.protobuf.UInt32Value', 'google.protobuf.DoubleValue', 'google.protobuf.FloatValue']);

/** The JSON of one path or query value for a field: numbers and strings stay strings (proto3 JSON accepts both), booleans become booleans. */
function jsonOfText(field: DescField, text: string, name: string): JsonValue {
  const kind = field.fieldKind === 'list' ? field.listKind : field.fieldKind;
  if (kind === 'message') {
    const typeName = field.message!.typeName;
    if (typeName === 'google.protobuf.BoolValue') return booleanOf(text, name);
    if (STRING_WKT.has(typeName) || NUMBER_WKT.has(typeName)) return text;
    throw new BadRequest(`${name} is a message (${typeName}): set its fields one by one (${name}.<field>=...) or send it in the body`);
  }
  if (kind === 'map') throw new BadRequest(`${name} is a map: send it in the body`);
  if (kind === 'scalar' && field.scalar === 8 /* ScalarType.BOOL */) return booleanOf(text, name);
  return text;
}

function booleanOf(text: string, name: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new BadRequest(`${name} must be true or false, not "${text}"`);
}

/** Sets `json[path]` (JSON names, nested objects made on the way) for a path or query value. */
function setPath(message: DescMessage, json: JsonObject, path: readonly string[], values: readonly string[], source: string): void {
  let node = json;
  let desc = message;
  path.forEach((name, i) => {
    const field = fieldNamed(desc, name);
    const where = path.slice(0, i + 1).join('.');
    if (!field) throw new BadRequest(`${source} ${path.join('.')}: ${desc.typeName} has no field ${name}; see GET /openapi.json for this route's parameters`);
    if (i < path.length - 1) {
      if (field.fieldKind !== 'message') throw new BadRequest(`${source} ${path.join('.')}: ${where} is not a message`);
      const child = node[field.jsonName];
      node = (typeof child === 'object' && child !== null && !Array.isArray(child) ? child : (node[field.jsonName] = {})) as JsonObject;
      desc = field.message;
      return;
    }
    if (field.fieldKind === 'list') {
      node[field.jsonName] = values.map((v) => jsonOfText(field, v, where));
    } else {
      if (values.length > 1) throw new BadRequest(`${source} ${where} is given ${values.length} times but is not repeated`);
      node[field.jsonName] = jsonOfText(field, values[0]!, where);
    }
  });
}

/** Parses the request body as JSON: empty means `{}`. */
export function parseBody(text: string): JsonValue {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new BadRequest(`the request body is not valid JSON (${(err as Error).message}); send a JSON object in the proto3 JSON mapping (GET /openapi.json describes each route)`);
  }
}

/** The JSON of the request message, before path and query values: the body, or a field of it, or nothing. */
function bodyJson(route: Route, body: JsonValue | undefined): JsonObject {
  if (route.body === undefined || body === undefined) return {};
  if (route.body === '*') {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequest(`the request body must be a JSON object (${route.method.input.typeName})`);
    return body;
  }
  const field = fieldNamed(route.method.input, route.body)!;
  return { [field.jsonName]: body };
}

/**
 * The request message of `route`, as protobuf binary: the body (all of it or one field), then the
 * path variables, then the query parameters for the fields left (dotted paths, proto or JSON names,
 * a repeated field by repeating the parameter). Path values win over the body.
 */
export function requestBinary(registry: Registry, route: Route, match: TemplateMatch, query: URLSearchParams, body: JsonValue | undefined): Uint8Array {
  const input = route.method.input;
  const json = bodyJson(route, body);
  const bound = new Set<string>();
  for (const { fieldPath, value } of match.bindings) {
    setPath(input, json, fieldPath, [value], 'path variable');
    bound.add(fieldPath.join('.'));
  }
  const names = [...new Set(query.keys())];
  if (names.length > 0 && route.body === '*') throw new BadRequest(`${route.verb} ${route.template.source} takes every field in its JSON body; query parameters (${names.join(', ')}) are not accepted`);
  for (const name of names) {
    if (bound.has(name)) throw new BadRequest(`query parameter ${name} is already set by the path`);
    if (route.body !== undefined && route.body !== '*' && name.split('.')[0] === route.body) throw new BadRequest(`query parameter ${name} is part of the body`);
    setPath(input, json, name.split('.'), query.getAll(name), 'query parameter');
  }
  try {
    return toBinary(input, fromJson(input, json, { registry }));
  } catch (err) {
    throw new BadRequest(`the request does not fit ${input.typeName}: ${(err as Error).message}`);
  }
}

/** A response message (protobuf binary) as JSON, every field present (zero values too), or the route's response_body field. */
export function responseJson(registry: Registry, route: Route, bytes: Uint8Array): JsonValue {
  const output = route.method.output;
  const json = toJson(output, fromBinary(output, bytes), { registry, alwaysEmitImplicit: true });
  if (route.responseBody === undefined) return json;
  const field = fieldNamed(output, route.responseBody)!;
  return (json as JsonObject)[field.jsonName] ?? null;
}

/** Each element of a JSON array body as a request message, for client streams. */
export function streamRequestBinaries(registry: Registry, route: Route, body: JsonValue, maxMessages: number): Uint8Array[] {
  if (!Array.isArray(body)) throw new BadRequest(`${route.grpcPath} is a client stream: send a JSON array of ${route.method.input.typeName} messages`);
  if (body.length > maxMessages) throw new BadRequest(`at most ${maxMessages} messages per request (gateway.maxStreamMessages); send more requests`);
  return body.map((item, i) => {
    try {
      return toBinary(route.method.input, fromJson(route.method.input, item, { registry }));
    } catch (err) {
      throw new BadRequest(`message ${i} does not fit ${route.method.input.typeName}: ${(err as Error).message}`);
    }
  });
}
