// The OpenFeature server provider over a replica's flags snapshot: flagd's evaluation rules
// (FlagdCore), in memory, so an evaluation never touches the database.
import { FlagdCore } from '@openfeature/flagd-core';
import {
  OpenFeatureEventEmitter,
  ProviderEvents,
  type EvaluationContext,
  type JsonValue,
  type Logger as OpenFeatureLogger,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import type { flagsv1 } from '@gantry/proto';
import type { Logger } from '../logger.js';
import { flagdConfiguration } from './convert.js';

/** OpenFeature's logger interface on the kit's logger. */
export function openFeatureLogger(log: Logger): OpenFeatureLogger {
  const line = (args: unknown[]) => args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ');
  return {
    error: (...args: unknown[]) => log.error({ component: 'openfeature' }, line(args)),
    warn: (...args: unknown[]) => log.warn({ component: 'openfeature' }, line(args)),
    info: (...args: unknown[]) => log.info({ component: 'openfeature' }, line(args)),
    debug: (...args: unknown[]) => log.debug({ component: 'openfeature' }, line(args)),
  };
}

/** An OpenFeature provider evaluating the flags it is given with flagd's rules. */
export class GantryFlagsProvider implements Provider {
  readonly metadata = { name: 'gantry-flags' } as const;
  readonly runsOn = 'server' as const;
  readonly events = new OpenFeatureEventEmitter();
  private readonly core: FlagdCore;

  constructor(log: Logger) {
    this.core = new FlagdCore(undefined, openFeatureLogger(log));
  }

  /** Replaces the flags evaluated; emits PROVIDER_CONFIGURATION_CHANGED with the keys that changed, if any did. */
  setFlags(flags: Iterable<flagsv1.Flag>): string[] {
    const changed = this.core.setConfigurations(flagdConfiguration(flags));
    if (changed.length > 0) this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: changed });
    return changed;
  }

  async resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext, logger: OpenFeatureLogger): Promise<ResolutionDetails<boolean>> {
    return this.core.resolveBooleanEvaluation(flagKey, defaultValue, context, logger);
  }

  async resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext, logger: OpenFeatureLogger): Promise<ResolutionDetails<string>> {
    return this.core.resolveStringEvaluation(flagKey, defaultValue, context, logger);
  }

  async resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext, logger: OpenFeatureLogger): Promise<ResolutionDetails<number>> {
    return this.core.resolveNumberEvaluation(flagKey, defaultValue, context, logger);
  }

  async resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T, context: EvaluationContext, logger: OpenFeatureLogger): Promise<ResolutionDetails<T>> {
    return this.core.resolveObjectEvaluation(flagKey, defaultValue, context, logger);
  }

  async onClose(): Promise<void> {
    this.events.removeAllHandlers();
  }
}
