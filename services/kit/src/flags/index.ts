// Feature flags, served and evaluated by every Gantry process (kit's flags/ folder).
export { FLAGS_LIMITS, type FlagsLimits } from './limits.js';
export { toFlagd, fromFlagd, flagdConfiguration, flagFromSpec, type FlagdFlag, type FlagdValue, type FeatureFlagSpec } from './convert.js';
export { validateFlag, checkFlagKey, type ValidFlag } from './validation.js';
export { flagsSchemaFor, flagsMigrations, FlagsStore, type FlagChange } from './store.js';
export { FlagsSnapshot } from './snapshot.js';
export { GantryFlagsProvider } from './provider.js';
export { FLAGS_READ_SCOPE, FLAGS_WRITE_SCOPE, FLAGS_RESUME_VERSION_TRAILER, OPERATOR_SOURCE_PREFIX, OPERATOR_WORKLOAD, flagsScopes, flagsModule } from './service.js';
export { startFlags, type FlagsRuntime } from './flags.js';
export { FlagsClient } from './client.js';
