// The two shapes of a flag: the proto Flag the API speaks, and the flagd definition the store keeps
// and FlagdCore evaluates (https://flagd.dev/reference/flag-definitions/).
import { flagsv1 } from '@gantry/proto';

/** A flag value as flagd holds it. */
export type FlagdValue = boolean | string | number | { [key: string]: unknown };

/** One flag in flagd's definition format (the value of `flags.<key>` in a flagd configuration). */
export interface FlagdFlag {
  state: 'ENABLED' | 'DISABLED';
  variants: Record<string, FlagdValue>;
  defaultVariant: string;
  targeting?: Record<string, unknown>;
  metadata?: Record<string, string | number | boolean>;
}

/** The spec of a FeatureFlag resource (charts/gantry/templates/crds/featureflags.gantry.dev.yaml). */
export interface FeatureFlagSpec {
  key?: string;
  state: 'ENABLED' | 'DISABLED';
  type?: 'boolean' | 'string' | 'number' | 'object';
  variants: Record<string, unknown>;
  defaultVariant: string;
  targeting?: Record<string, unknown>;
  /** Which services receive the flag: the operator's business, not part of the flag. */
  targets?: readonly string[];
}

const isEmpty = (o: object | undefined): boolean => o === undefined || Object.keys(o).length === 0;

/** The flagd definition of a proto Flag (key, source, version and updated_at are not part of it). */
export function toFlagd(flag: flagsv1.Flag): FlagdFlag {
  const out: FlagdFlag = {
    state: flag.state === flagsv1.FlagState.FLAG_STATE_DISABLED ? 'DISABLED' : 'ENABLED',
    variants: flag.variants as Record<string, FlagdValue>,
    defaultVariant: flag.defaultVariant,
  };
  if (!isEmpty(flag.targeting)) out.targeting = flag.targeting;
  if (!isEmpty(flag.metadata)) out.metadata = flag.metadata as Record<string, string | number | boolean>;
  return out;
}

/** A proto Flag from a flagd definition and what the store knows about it. */
export function fromFlagd(key: string, f: FlagdFlag, stored: { source?: string; version?: bigint; updatedAt?: Date } = {}): flagsv1.Flag {
  return {
    key,
    state: f.state === 'DISABLED' ? flagsv1.FlagState.FLAG_STATE_DISABLED : f.state === 'ENABLED' ? flagsv1.FlagState.FLAG_STATE_ENABLED : flagsv1.FlagState.FLAG_STATE_UNSPECIFIED,
    variants: { ...f.variants },
    defaultVariant: f.defaultVariant,
    targeting: isEmpty(f.targeting) ? undefined : f.targeting,
    metadata: { ...(f.metadata ?? {}) },
    source: stored.source ?? '',
    version: stored.version ?? 0n,
    updatedAt: stored.updatedAt,
  };
}

/** A flagd configuration document (`{"flags": {...}}`) holding `flags`, as FlagdCore.setConfigurations takes it. */
export function flagdConfiguration(flags: Iterable<flagsv1.Flag>): string {
  const out: Record<string, FlagdFlag> = {};
  for (const f of flags) out[f.key] = toFlagd(f);
  return JSON.stringify({ flags: out });
}

/**
 * The proto Flag for a FeatureFlag resource named `name` (the key unless spec.key is set), ready
 * for PutFlag. Throws an Error naming the field when a variant is not of spec.type; everything
 * else PutFlag checks (call validateFlag to check before sending).
 */
export function flagFromSpec(spec: FeatureFlagSpec, opts: { name: string; source: string }): flagsv1.Flag {
  const type = spec.type ?? 'boolean';
  for (const [name, value] of Object.entries(spec.variants)) {
    const actual = value !== null && typeof value === 'object' && !Array.isArray(value) ? 'object' : typeof value;
    if (actual !== type) throw new Error(`spec.variants.${name}: is ${Array.isArray(value) ? 'an array' : actual}, but spec.type is ${type}`);
  }
  return fromFlagd(spec.key ?? opts.name, {
    state: spec.state,
    variants: spec.variants as Record<string, FlagdValue>,
    defaultVariant: spec.defaultVariant,
    ...(spec.targeting ? { targeting: spec.targeting } : {}),
  }, { source: opts.source });
}
