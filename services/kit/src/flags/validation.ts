// PutFlag's checks, in the order the proto lists them. The last one loads the candidate into a
// throwaway flagd store with strict validation, so whatever flagd's schema or its JSONLogic
// compiler refuses is refused here, before anything is stored.
import { MemoryStorage } from '@openfeature/flagd-core';
import type { Logger as OpenFeatureLogger } from '@openfeature/server-sdk';
import { flagsv1 } from '@gantry/proto';
import { checkText, invalidArgument } from '../errors.js';
import { toFlagd, type FlagdFlag } from './convert.js';
import {
  FLAG_KEY_PATTERN,
  MAX_FLAG_BYTES,
  MAX_METADATA_ENTRIES,
  MAX_METADATA_KEY_CHARS,
  MAX_METADATA_VALUE_CHARS,
  MAX_SOURCE_CHARS,
  MAX_TARGETING_BYTES,
  MAX_VARIANT_NAME_CHARS,
  MAX_VARIANTS,
} from './limits.js';

/** A flag that passed validation: its flagd definition and that definition's size as JSON. */
export interface ValidFlag {
  key: string;
  flagd: FlagdFlag;
  source: string;
  bytes: number;
}

const bytesOf = (v: unknown): number => Buffer.byteLength(JSON.stringify(v), 'utf8');

/** Throws INVALID_ARGUMENT unless `key` is 1-128 characters of [A-Za-z0-9._-]. */
export function checkFlagKey(field: string, key: string): string {
  if (!FLAG_KEY_PATTERN.test(key)) throw invalidArgument(field, `must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-'; got ${JSON.stringify(key.slice(0, 140))}`);
  return key;
}

function valueType(v: unknown): string {
  if (typeof v === 'boolean' || typeof v === 'string') return typeof v;
  if (typeof v === 'number') return Number.isFinite(v) ? 'number' : 'non-finite number';
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return 'list';
  return typeof v === 'object' ? 'object' : typeof v;
}

/** A one-line summary of flagd's (ajv's) schema errors. */
function schemaProblem(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const json = message.indexOf('[');
  if (json < 0) return message;
  try {
    const errors = JSON.parse(message.slice(json)) as { instancePath?: string; keyword?: string; message?: string; params?: Record<string, unknown> }[];
    // ajv reports every branch of flagd's anyOf/oneOf; the specific errors say more than the generic ones.
    const generic = (e: (typeof errors)[number]) => e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'additionalProperties';
    const specific = errors.filter((e) => !generic(e));
    const seen = new Set<string>();
    const unknown = errors.filter((e) => e.keyword === 'additionalProperties');
    for (const e of specific.length > 0 ? specific : unknown.length > 0 ? unknown : errors) {
      const path = (e.instancePath ?? '').split('/').slice(3).join('.');
      const text = e.keyword === 'additionalProperties' ? `unknown operator or field ${JSON.stringify(e.params?.additionalProperty)}` : (e.message ?? 'is invalid');
      seen.add(`${path ? `${path}: ` : ''}${text}`);
      if (seen.size === 3) break;
    }
    return [...seen].join('; ');
  } catch {
    return message.slice(0, 500);
  }
}

/** Loads the flag into a throwaway flagd store; throws INVALID_ARGUMENT with flagd's reason when flagd refuses it. */
function checkWithFlagd(key: string, flagd: FlagdFlag): void {
  const warnings: string[] = [];
  const record = (...args: unknown[]) => warnings.push(args.map(String).join(' '));
  const logger: OpenFeatureLogger = { error: record, warn: record, info: () => undefined, debug: () => undefined };
  try {
    new MemoryStorage(logger).setConfigurations(JSON.stringify({ flags: { [key]: flagd } }), true);
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    throw invalidArgument(flagd.targeting ? 'flag.targeting' : 'flag', `flagd refuses the flag: ${schemaProblem(cause ?? err)}`);
  }
  const targeting = warnings.find((w) => w.includes('Invalid targeting'));
  if (targeting) throw invalidArgument('flag.targeting', `is not a JSONLogic rule flagd can compile (${targeting}); see https://flagd.dev/reference/flag-definitions/#targeting-rules`);
}

/** PutFlag's validation of `flag`; throws INVALID_ARGUMENT naming the field at fault. */
export function validateFlag(flag: flagsv1.Flag | undefined): ValidFlag {
  if (!flag) throw invalidArgument('flag', 'is required');
  const key = checkFlagKey('flag.key', flag.key);
  if (flag.state !== flagsv1.FlagState.FLAG_STATE_ENABLED && flag.state !== flagsv1.FlagState.FLAG_STATE_DISABLED) {
    throw invalidArgument('flag.state', 'must be FLAG_STATE_ENABLED or FLAG_STATE_DISABLED');
  }
  const names = Object.keys(flag.variants);
  if (names.length === 0 || names.length > MAX_VARIANTS) throw invalidArgument('flag.variants', `must have 1 to ${MAX_VARIANTS} variants; it has ${names.length}`);
  let type: string | undefined;
  for (const name of names) {
    if (name.length > MAX_VARIANT_NAME_CHARS || name.length === 0 || name.includes('\0')) {
      throw invalidArgument('flag.variants', `variant names must be 1 to ${MAX_VARIANT_NAME_CHARS} characters without NUL`);
    }
    const t = valueType(flag.variants[name]);
    if (!['boolean', 'string', 'number', 'object'].includes(t)) throw invalidArgument(`flag.variants.${name}`, `is a ${t}; variants are booleans, strings, numbers or objects`);
    if (type !== undefined && t !== type) throw invalidArgument(`flag.variants.${name}`, `is a ${t} but other variants are ${type}s: all variants of a flag have one type`);
    type = t;
  }
  if (!Object.hasOwn(flag.variants, flag.defaultVariant)) {
    throw invalidArgument('flag.default_variant', `${JSON.stringify(flag.defaultVariant)} is not one of the variants (${names.join(', ')})`);
  }
  if (flag.targeting !== undefined && bytesOf(flag.targeting) > MAX_TARGETING_BYTES) {
    throw invalidArgument('flag.targeting', `is ${bytesOf(flag.targeting)} bytes as JSON; the maximum is ${MAX_TARGETING_BYTES}`);
  }
  const metadata = Object.entries(flag.metadata);
  if (metadata.length > MAX_METADATA_ENTRIES) throw invalidArgument('flag.metadata', `has ${metadata.length} entries; the maximum is ${MAX_METADATA_ENTRIES}`);
  for (const [k, v] of metadata) {
    checkText('flag.metadata', k, MAX_METADATA_KEY_CHARS);
    const t = valueType(v);
    if (t !== 'string' && t !== 'number' && t !== 'boolean') throw invalidArgument(`flag.metadata.${k}`, `is a ${t}; metadata values are strings, numbers or booleans`);
    if (typeof v === 'string') checkText(`flag.metadata.${k}`, v, MAX_METADATA_VALUE_CHARS);
  }
  const source = checkText('flag.source', flag.source, MAX_SOURCE_CHARS);
  const flagd = toFlagd(flag);
  const bytes = bytesOf(flagd);
  if (bytes > MAX_FLAG_BYTES) throw invalidArgument('flag', `is ${bytes} bytes as JSON; the maximum is ${MAX_FLAG_BYTES}`);
  checkWithFlagd(key, flagd);
  return { key, flagd, source, bytes };
}
