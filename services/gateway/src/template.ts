// The path templates of google.api.http (google/api/http.proto):
//   Template = "/" Segments [ Verb ] ;
//   Segments = Segment { "/" Segment } ;
//   Segment  = "*" | "**" | LITERAL | Variable ;
//   Variable = "{" FieldPath [ "=" Segments ] "}" ;
//   FieldPath = IDENT { "." IDENT } ;
//   Verb     = ":" LITERAL ;
// No npm package keeps up this syntax (docs/decisions.md), so it is parsed and matched here.

/** One segment of a parsed template: a literal, `*` (one segment) or `**` (the rest, zero or more). */
export type Segment = { kind: 'literal'; value: string } | { kind: 'any' } | { kind: 'rest' };

/** A variable: the field it sets and the segments it covers, [start, end). */
export interface Variable {
  fieldPath: readonly string[];
  start: number;
  end: number;
}

export interface PathTemplate {
  /** The template as written in the descriptor. */
  source: string;
  segments: readonly Segment[];
  variables: readonly Variable[];
  verb: string | undefined;
}

/** A template the parser refuses: a programming error in a .proto, reported with the template. */
export class TemplateError extends Error {
  constructor(template: string, reason: string) {
    super(`invalid google.api.http path template "${template}": ${reason}`);
    this.name = 'TemplateError';
  }
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Unreserved and sub-delims of RFC 3986, minus the characters the grammar uses ("/", ":", "{", "}", "=", "*").
const LITERAL = /^[A-Za-z0-9._~!$&'()+,;@%-]+$/;

function parseSegment(template: string, text: string): Segment {
  if (text === '*') return { kind: 'any' };
  if (text === '**') return { kind: 'rest' };
  if (!LITERAL.test(text)) throw new TemplateError(template, `segment "${text}" is not a literal, * or **`);
  return { kind: 'literal', value: text };
}

/** Splits off the verb: a ":" after the last "/" that is outside braces. */
function splitVerb(template: string): { path: string; verb: string | undefined } {
  let depth = 0;
  let colon = -1;
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c === '{') depth++;
    else if (c === '}') depth--;
    else if (c === '/' && depth === 0) colon = -1;
    else if (c === ':' && depth === 0) colon = i;
  }
  if (colon === -1) return { path: template, verb: undefined };
  const verb = template.slice(colon + 1);
  if (!LITERAL.test(verb)) throw new TemplateError(template, `verb "${verb}" is not a literal`);
  return { path: template.slice(0, colon), verb };
}

/** Splits on "/" outside braces. */
function splitTop(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}') depth--;
    else if (text[i] === '/' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/** Parses a google.api.http path template; throws TemplateError on anything the grammar does not allow. */
export function parseTemplate(template: string): PathTemplate {
  if (!template.startsWith('/')) throw new TemplateError(template, 'must start with "/"');
  const { path, verb } = splitVerb(template);
  const segments: Segment[] = [];
  const variables: Variable[] = [];
  for (const part of splitTop(path.slice(1))) {
    if (part === '') throw new TemplateError(template, 'empty segment');
    if (!part.startsWith('{')) {
      segments.push(parseSegment(template, part));
      continue;
    }
    if (!part.endsWith('}') || part.indexOf('{', 1) !== -1) throw new TemplateError(template, `variable "${part}" is not closed or is nested`);
    const inner = part.slice(1, -1);
    const eq = inner.indexOf('=');
    const fieldPath = (eq === -1 ? inner : inner.slice(0, eq)).split('.');
    if (!fieldPath.every((p) => IDENT.test(p))) throw new TemplateError(template, `"${inner}" is not a field path`);
    const sub = eq === -1 ? ['*'] : inner.slice(eq + 1).split('/');
    const start = segments.length;
    for (const s of sub) {
      if (s === '' || s.includes('{')) throw new TemplateError(template, `variable "${inner}" has an empty or nested segment`);
      segments.push(parseSegment(template, s));
    }
    variables.push({ fieldPath, start, end: segments.length });
  }
  const restAt = segments.findIndex((s) => s.kind === 'rest');
  if (restAt !== -1 && restAt !== segments.length - 1) throw new TemplateError(template, '"**" must be the last segment');
  const seen = new Set<string>();
  for (const v of variables) {
    const key = v.fieldPath.join('.');
    if (seen.has(key)) throw new TemplateError(template, `field ${key} is bound twice`);
    seen.add(key);
  }
  return { source: template, segments, variables, verb };
}

/**
 * Decodes one path segment. A variable that spans several segments keeps "%2F" encoded, as the
 * spec's reserved expansion says, so a "/" inside a segment stays distinguishable from a separator.
 */
function decodeSegment(raw: string, keepSlash: boolean): string {
  const text = keepSlash ? raw.replace(/%2F/gi, '%252F') : raw;
  return decodeURIComponent(text);
}

/** A successful match: each variable's field path and its (decoded) value. */
export interface TemplateMatch {
  bindings: { fieldPath: readonly string[]; value: string }[];
  /** Literal segments (and verb) matched, to prefer the most specific of several matching templates. */
  literals: number;
}

/**
 * Matches a request path (no query string, percent-encoded as sent) against a template. Returns
 * undefined when it does not match, or when a segment is not valid percent-encoding.
 */
export function matchTemplate(template: PathTemplate, requestPath: string): TemplateMatch | undefined {
  if (!requestPath.startsWith('/')) return undefined;
  let path = requestPath.slice(1);
  if (template.verb !== undefined) {
    const suffix = `:${template.verb}`;
    if (!path.endsWith(suffix)) return undefined;
    path = path.slice(0, -suffix.length);
  }
  const parts = path === '' ? [] : path.split('/');
  const segs = template.segments;
  const hasRest = segs.at(-1)?.kind === 'rest';
  if (hasRest ? parts.length < segs.length - 1 : parts.length !== segs.length) return undefined;
  let literals = 0;
  try {
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!;
      if (seg.kind === 'rest') break;
      const part = parts[i]!;
      if (part === '') return undefined;
      if (seg.kind === 'literal') {
        if (decodeSegment(part, false) !== seg.value) return undefined;
        literals++;
      }
    }
    const bindings = template.variables.map((v) => {
      const end = v.end === segs.length && hasRest ? parts.length : v.end;
      const covered = parts.slice(v.start, end);
      const multi = end - v.start !== 1 || segs[v.start]?.kind === 'rest';
      return { fieldPath: v.fieldPath, value: covered.map((p) => decodeSegment(p, multi)).join('/') };
    });
    // A verb is as specific as a literal: `/v1/approvals/a:watch` is Watch, not Get of "a:watch".
    return { bindings, literals: literals + (template.verb === undefined ? 0 : 1) };
  } catch {
    // URIError: a malformed %-escape cannot be any route's value.
    return undefined;
  }
}
