import { configSources, loadConfig, type ConfigInput, type GantryConfig } from '@gantry/kit';
import { registry } from './registry.js';

/** GANTRY_* variables the CLI reads itself (flag defaults), not config keys. */
export const CLI_ENV = ['GANTRY_ADDRESS', 'GANTRY_TOKEN', 'GANTRY_WALLET_KEY', 'GANTRY_LOG_VERIFIER_KEY'] as const;

/**
 * The program's config: the kit's settings, every registered module's slice and an address per
 * gRPC target. Every process and command accepts the whole config, whatever it runs.
 */
export function loadProgramConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigInput } = {}): GantryConfig {
  return loadConfig({ ...opts, modules: configSources(registry.all()), otherEnv: CLI_ENV });
}
