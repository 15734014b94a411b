import { readFileSync } from 'node:fs';
import { fromBinary, getOption, hasOption, type DescExtension, type DescField, type DescMessage, type DescMethod, type Registry } from '@bufbuild/protobuf';
import { createFileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { matchTemplate, parseTemplate, type PathTemplate, type TemplateMatch } from './template.js';

/** HTTP methods a google.api.http rule may bind (its `custom` kind names its own). */
export type HttpVerb = 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH' | (string & {});

/** One HTTP binding of one RPC, read from its google.api.http option. */
export interface Route {
  verb: HttpVerb;
  template: PathTemplate;
  /** `*`: the whole request is the body; a field name: that field is; undefined: no body (query parameters). */
  body: string | undefined;
  /** A field of the response to answer with instead of the whole response. */
  responseBody: string | undefined;
  method: DescMethod;
  /** `/package.Service/Method`, the gRPC path. */
  grpcPath: string;
}

/** The routes of a descriptor set and what they need to transcode: the registry of every message. */
export interface RouteTable {
  routes: readonly Route[];
  registry: Registry;
  /** Every method of every service in the set (routed or not). */
  methods: readonly DescMethod[];
}

/** The shape of google.api.HttpRule as @bufbuild/protobuf reads it from the extension. */
interface HttpRuleShape {
  pattern: { case: 'get' | 'put' | 'post' | 'delete' | 'patch'; value: string } | { case: 'custom'; value: { kind: string; path: string } } | { case: undefined; value?: undefined };
  body: string;
  responseBody: string;
  additionalBindings: HttpRuleShape[];
}

/** A descriptor set file (`buf build -o`), with its imports, as a registry of every type in it. */
export function loadRegistry(descriptorSetFile: string) {
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetFile)));
}

/** The field named `name` (proto or JSON name) of `message`. */
export function fieldNamed(message: DescMessage, name: string): DescField | undefined {
  return message.fields.find((f) => f.name === name || f.jsonName === name);
}

/** Checks that a field path of a template or `body` names singular fields, messages on the way. */
function checkFieldPath(method: DescMethod, path: readonly string[], what: string): void {
  let message: DescMessage | undefined = method.input;
  path.forEach((name, i) => {
    const field = message && fieldNamed(message, name);
    if (!field) throw new Error(`invariant: ${what} of ${method.parent.typeName}.${method.name} names ${path.join('.')}, which ${method.input.typeName} does not have`);
    const last = i === path.length - 1;
    if (!last && field.fieldKind !== 'message') throw new Error(`invariant: ${what} of ${method.parent.typeName}.${method.name}: ${name} is not a message field`);
    message = field.fieldKind === 'message' ? field.message : undefined;
  });
}

function routesOf(method: DescMethod, rule: HttpRuleShape, nested: boolean): Route[] {
  const p = rule.pattern;
  if (p.case === undefined) throw new Error(`invariant: the google.api.http option of ${method.parent.typeName}.${method.name} binds no path`);
  const verb = p.case === 'custom' ? p.value.kind.toUpperCase() : p.case.toUpperCase();
  const path = p.case === 'custom' ? p.value.path : p.value;
  const template = parseTemplate(path);
  for (const v of template.variables) checkFieldPath(method, v.fieldPath, `path template ${path}`);
  if (rule.body !== '' && rule.body !== '*') checkFieldPath(method, [rule.body], 'body');
  if (rule.responseBody !== '') {
    if (!fieldNamed(method.output, rule.responseBody)) throw new Error(`invariant: response_body of ${method.parent.typeName}.${method.name} names ${rule.responseBody}, which ${method.output.typeName} does not have`);
  }
  const route: Route = {
    verb,
    template,
    body: rule.body === '' ? undefined : rule.body,
    responseBody: rule.responseBody === '' ? undefined : rule.responseBody,
    method,
    grpcPath: `/${method.parent.typeName}/${method.name}`,
  };
  if (nested && rule.additionalBindings.length > 0) throw new Error(`invariant: ${method.parent.typeName}.${method.name}: additional_bindings may not nest`);
  return [route, ...rule.additionalBindings.flatMap((b) => routesOf(method, b, true))];
}

/**
 * Reads the google.api.http option of every method of every service in `registry` (those whose
 * package starts with one of `packages`), checking each template against the request message.
 * A template that does not parse or names a field the request lacks is a programming error.
 */
export function buildRouteTable(registry: ReturnType<typeof createFileRegistry>, packages: readonly string[] = ['gantry.']): RouteTable {
  const http = registry.getExtension('google.api.http') as DescExtension | undefined;
  if (!http) throw new Error('invariant: the descriptor set has no google.api.http extension; run scripts/proto-gen.sh');
  const methods: DescMethod[] = [];
  const routes: Route[] = [];
  for (const file of registry.files) {
    if (!packages.some((p) => file.proto.package.startsWith(p))) continue;
    for (const service of file.services) {
      for (const method of service.methods) {
        methods.push(method);
        if (hasOption(method, http)) routes.push(...routesOf(method, getOption(method, http) as unknown as HttpRuleShape, false));
      }
    }
  }
  assertNoDuplicates(routes);
  return { routes, registry, methods };
}

/** Two routes with the same verb and template would make one of them unreachable. */
function assertNoDuplicates(routes: readonly Route[]): void {
  const seen = new Map<string, string>();
  for (const r of routes) {
    const key = `${r.verb} ${r.template.source.replace(/\{[^}=]+(=([^}]*))?\}/g, (_, __, sub: string | undefined) => `{${sub ?? '*'}}`)}`;
    const other = seen.get(key);
    if (other) throw new Error(`invariant: ${key} is bound twice, by ${other} and ${r.grpcPath}`);
    seen.set(key, r.grpcPath);
  }
}

/** What a request path and verb resolve to. */
export type Resolution =
  | { kind: 'found'; route: Route; match: TemplateMatch }
  /** The path exists, with other verbs. */
  | { kind: 'verb'; allowed: string[] }
  | { kind: 'none' };

/** The route for `verb path`: the most specific matching template (most literals); HEAD is not routed. */
export function resolveRoute(routes: readonly Route[], verb: string, path: string): Resolution {
  let best: { route: Route; match: TemplateMatch } | undefined;
  const allowed = new Set<string>();
  for (const route of routes) {
    const match = matchTemplate(route.template, path);
    if (!match) continue;
    if (route.verb !== verb) {
      allowed.add(route.verb);
      continue;
    }
    if (!best || match.literals > best.match.literals) best = { route, match };
  }
  if (best) return { kind: 'found', ...best };
  if (allowed.size > 0) return { kind: 'verb', allowed: [...allowed].sort() };
  return { kind: 'none' };
}
