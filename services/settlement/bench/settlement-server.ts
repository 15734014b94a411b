// A benchmark server for `npm run bench -- settlement`, run as its own process (pinned to one core
// by the benchmark): the settlement service as production runs it, through startRuntime with the
// full kit stack (mTLS, JWT, rate limit set far above the load, tracing into a counting exporter)
// on the PostgreSQL database named by the URL argument, with the default pool size.
// Prints one JSON line {port, dataDir, token, poolSize} when ready; exits on SIGTERM.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, silentLogger, startRuntime } from '@gantry/kit';
import { settlementService } from '../src/index.js';
import { tokenFor } from '../../kit/test/clients.js';
import { benchSpanProcessor } from '../../kit/bench/tracing.js';

const [url] = process.argv.slice(2);
if (!url) {
  process.stderr.write('usage: settlement-server.ts <postgres-url>\n');
  process.exit(2);
}
const dataDir = mkdtempSync(join(tmpdir(), 'gantry-bench-settlement-'));
const config = loadConfig({
  env: {},
  overrides: {
    dataDir,
    listen: { host: '127.0.0.1', port: 0, healthPort: 0 },
    telemetry: { logLevel: 'silent' },
    rateLimit: { points: 1_000_000, windowSec: 1 },
    database: { url },
  },
});
const runtime = await startRuntime({ config, services: [settlementService], log: silentLogger(), spanProcessors: [benchSpanProcessor()] });
// An hour, so a full run never outlives its token; admin to fund the wallets in setup.
const token = tokenFor(dataDir, 'bench', ['settlement.admin', 'settlement.credit', 'settlement.read'], { ttlSec: 3600 });
process.stdout.write(JSON.stringify({ port: runtime.port, dataDir, token, poolSize: config.database.poolSize }) + '\n');
process.on('SIGTERM', () =>
  void runtime.stop(1000).finally(() => {
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  }),
);
