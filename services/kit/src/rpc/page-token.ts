// Page tokens: where a listing continues, opaque to clients and checked when they come back. One
// codec for every List RPC, so each refuses a forged, truncated, oversized or foreign token with the
// same INVALID_ARGUMENT on page_token, and none parses more than MAX_PAGE_TOKEN_CHARS of it.
import { createHash } from 'node:crypto';
import { invalidArgument, type GantryError } from '../errors.js';

/** The longest page_token decoded, in characters; every token the services issue is far shorter. */
export const MAX_PAGE_TOKEN_CHARS = 1024;

/** One field of a listing position: a sequence number or version (a bigint of at most 19 digits), or text matching a pattern. */
export type PageTokenField = 'seq' | RegExp;

/** The position a codec with `fields` carries: bigints for 'seq' fields, strings for patterns. */
export type PagePosition<S extends Record<string, PageTokenField>> = { [K in keyof S]: S[K] extends 'seq' ? bigint : string };

export interface PageTokenCodec<P> {
  /** The token for the page after `position`; `filter` (the listing's filters, as JSON values) binds it to them. */
  encode(position: P, filter?: readonly unknown[]): string;
  /** The position in `token`, undefined for '' (the first page); INVALID_ARGUMENT for a token not issued with this `filter`. */
  decode(token: string, filter?: readonly unknown[]): P | undefined;
}

const SEQ = /^\d{1,19}$/;

/** The page_token error for anything this service did not issue. */
const notIssuedPageToken = (): GantryError => invalidArgument('page_token', 'is not a token this service issued; start again without one');

/**
 * A codec whose token is the base64url of a JSON array: the position's fields in the order of
 * `fields` (bigints as decimal strings), then a digest of the filters, so a token cannot continue a
 * listing with other filters. E.g. `pageTokenCodec({ after: 'seq' })` issues `["42","<digest>"]`.
 */
export function pageTokenCodec<const S extends Record<string, PageTokenField>>(fields: S): PageTokenCodec<PagePosition<S>> {
  const names = Object.keys(fields) as (keyof S & string)[];
  return {
    encode(position, filter = []) {
      const values = names.map((name) => fieldText(name, fields[name]!, position[name]));
      return Buffer.from(JSON.stringify([...values, filterDigest(filter)]), 'utf8').toString('base64url');
    },
    decode(token, filter = []) {
      if (token === '') return undefined;
      const parsed = parseJson(tokenText(token));
      const valid = Array.isArray(parsed) && parsed.length === names.length + 1 && parsed.every((v) => typeof v === 'string') &&
        names.every((name, i) => fieldMatches(fields[name]!, parsed[i] as string));
      if (!valid) throw notIssuedPageToken();
      if (parsed[names.length] !== filterDigest(filter)) {
        throw invalidArgument('page_token', 'belongs to a listing with other filters: send the same filters as the first page, or start again without a token');
      }
      const position: Record<string, bigint | string> = {};
      names.forEach((name, i) => (position[name] = fields[name] === 'seq' ? BigInt(parsed[i] as string) : (parsed[i] as string)));
      return position as PagePosition<S>;
    },
  };
}

/**
 * A codec whose token is the base64url of one text field matching `pattern`, bound to no filter:
 * the log's partition-name tokens, kept in that form so tokens clients hold stay valid across an upgrade.
 */
export function textPageTokenCodec(pattern: RegExp): PageTokenCodec<string> {
  return {
    encode(position, filter) {
      if (filter !== undefined) throw new Error('invariant: a text page token binds no filter');
      return Buffer.from(fieldText('position', pattern, position), 'utf8').toString('base64url');
    },
    decode(token, filter) {
      if (filter !== undefined) throw new Error('invariant: a text page token binds no filter');
      if (token === '') return undefined;
      const text = tokenText(token);
      if (!pattern.test(text)) throw notIssuedPageToken();
      return text;
    },
  };
}

/** The UTF-8 text a token carries, refusing it before decoding when it is longer than any issued. */
function tokenText(token: string): string {
  if (token.length > MAX_PAGE_TOKEN_CHARS) {
    throw invalidArgument('page_token', `is ${token.length} characters, longer than any token this service issues (at most ${MAX_PAGE_TOKEN_CHARS}); start again without one`);
  }
  return Buffer.from(token, 'base64url').toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const fieldMatches = (field: PageTokenField, text: string) => (field === 'seq' ? SEQ : field).test(text);

/** A position field as the token holds it; a value the codec would refuse to decode is a bug, not a token. */
function fieldText(name: string, field: PageTokenField, value: unknown): string {
  const text = typeof value === 'bigint' || typeof value === 'string' ? value.toString() : '';
  if ((field === 'seq') !== (typeof value === 'bigint') || !fieldMatches(field, text)) {
    throw new Error(`invariant: page token field ${name} = ${String(value)} is not a value the token can carry`);
  }
  return text;
}

/** A short digest of a listing's filters: the first 16 base64url characters of the SHA-256 of their JSON. */
const filterDigest = (filter: readonly unknown[]): string => createHash('sha256').update(JSON.stringify(filter)).digest('base64url').slice(0, 16);
