// A benchmark server: one `gantry serve` target as production runs it (startRuntime with the full
// kit stack: mTLS, JWT, a rate limit far above the load, tracing into a counting exporter) on the
// PostgreSQL database named by the URL argument, with the default pool size. Run as its own
// process by the benchmarks (which pin it to one core).
// Usage: target-server.ts <target>[+<target>...] <postgres-url> <scope>...
// Prints one JSON line {port, dataDir, token, poolSize} when ready (the token carries the scopes
// given, for an hour); exits on SIGTERM.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, startRuntime } from '@gantry/kit';
import { loadProgramConfig } from '../src/config.js';
import { registry, WORKLOAD_GRANTS } from '../src/registry.js';
import { tokenFor } from '@gantry/test-support/clients';
import { benchSpanProcessor } from '../../kit/bench/tracing.js';

const [target, url, ...scopes] = process.argv.slice(2);
if (!target || !url) {
  process.stderr.write('usage: target-server.ts <target> <postgres-url> <scope>...\n');
  process.exit(2);
}
const dataDir = mkdtempSync(join(tmpdir(), `gantry-bench-${target}-`));
const config = loadProgramConfig({
  env: { GANTRY_AUTH_DEV_ISSUER: 'true' }, // the benchmark's clients mint dev tokens
  overrides: {
    dataDir,
    listen: { host: '127.0.0.1', port: 0, healthPort: 0 },
    telemetry: { logLevel: 'silent' },
    rateLimit: { points: 1_000_000, windowSec: 1 },
    database: { url },
    // A benchmark's own settings (e.g. the webhooks receiver's allow-listed address), as JSON.
    ...(process.env.GANTRY_BENCH_CONFIG ? (JSON.parse(process.env.GANTRY_BENCH_CONFIG) as object) : {}),
  },
});
const runtime = await startRuntime({ config, modules: registry.resolve(target.split('+')), log: silentLogger(), spanProcessors: [benchSpanProcessor()], workloads: WORKLOAD_GRANTS });
// An hour, so a full run never outlives its token.
const token = tokenFor(config.dataDir, 'bench', scopes, { ttlSec: 3600 });
process.stdout.write(JSON.stringify({ port: runtime.port, dataDir: config.dataDir, token, poolSize: config.database.poolSize }) + '\n');
process.on('SIGTERM', () =>
  void runtime.stop(1000).finally(() => {
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  }),
);
