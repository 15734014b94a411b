// `npm run soak [-- --minutes 30] [--mode one|separate|both]`: the long soak (tests/faults/soak/
// driver.ts) on the test PostgreSQL (started here when GANTRY_TEST_DATABASE_URL is unset), one
// layout after the other; prints a progress line per sample and a table per layout, writes
// bench-results/soak-<mode>.json, and exits 1 when a layout had an error, lost or repeated an
// event, kept descriptors, or grew past the limits below.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freshPostgresDatabase } from '@gantry/test-support/databases';
import { repoRoot } from '../../support/gantry-process.js';
import { formatReport, runSoak, type SoakMode, type SoakReport } from './driver.js';

/** What "flat" means after the warm-up, per hour of soak. */
const LIMITS = { rssMbPerHour: 50, fdsPerHour: 10, eventLoopDelayP99MsPerHour: 20 };

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' }, mode: { type: 'string', default: 'both' }, 'sample-seconds': { type: 'string', default: '15' } } });
const minutes = Number(values.minutes);
const modes: SoakMode[] = values.mode === 'both' ? ['one', 'separate'] : [values.mode as SoakMode];
if (!(minutes > 0) || !modes.every((m) => m === 'one' || m === 'separate')) {
  process.stderr.write('usage: npm run soak -- [--minutes 30] [--mode one|separate|both] [--sample-seconds 15]\n');
  process.exit(2);
}

if (!process.env.GANTRY_TEST_DATABASE_URL) {
  process.stderr.write('[soak] starting the test PostgreSQL (scripts/test-env/postgres.sh)\n');
  process.env.GANTRY_TEST_DATABASE_URL = execFileSync('bash', [join(repoRoot, 'scripts/test-env/postgres.sh'), 'start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

/** Why a layout's report fails the soak; empty when it passed. */
function problems(r: SoakReport): string[] {
  const found: string[] = [];
  if (Object.keys(r.errors).length > 0) found.push(`errors: ${JSON.stringify(r.errors)}`);
  if (r.deliveries.unique !== r.deliveries.expected || r.deliveries.received !== r.deliveries.unique) found.push(`deliveries: ${r.deliveries.unique} unique, ${r.deliveries.received} received, ${r.deliveries.expected} announced`);
  if (r.audit.entries !== r.audit.expected || !r.audit.chainValid) found.push(`audit: ${r.audit.entries} of ${r.audit.expected}, chains ${r.audit.chainValid ? 'valid' : 'INVALID'}`);
  for (const p of r.processes) {
    if (p.slopes.rssMbPerHour > LIMITS.rssMbPerHour) found.push(`${p.target}: RSS grows ${p.slopes.rssMbPerHour.toFixed(1)} MB/h (limit ${LIMITS.rssMbPerHour})`);
    if (p.slopes.fdsPerHour > LIMITS.fdsPerHour) found.push(`${p.target}: descriptors grow ${p.slopes.fdsPerHour.toFixed(1)}/h (limit ${LIMITS.fdsPerHour})`);
    if (p.slopes.eventLoopDelayP99MsPerHour > LIMITS.eventLoopDelayP99MsPerHour) found.push(`${p.target}: event-loop delay p99 grows ${p.slopes.eventLoopDelayP99MsPerHour.toFixed(1)} ms/h (limit ${LIMITS.eventLoopDelayP99MsPerHour})`);
  }
  return found;
}

let failed = false;
mkdirSync(join(repoRoot, 'bench-results'), { recursive: true });
for (const mode of modes) {
  process.stderr.write(`[soak] ${mode === 'one' ? 'one process (--target=all)' : 'one process per service'}: ${minutes} min of mixed load\n`);
  const database = await freshPostgresDatabase(`soak_${mode}`);
  try {
    const report = await runSoak({ mode, databaseUrl: database.url, durationMs: minutes * 60_000, sampleEveryMs: Number(values['sample-seconds']) * 1000, progress: (line) => process.stderr.write(`[soak] ${line}\n`) });
    const file = join(repoRoot, 'bench-results', `soak-${mode}.json`);
    writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), minutes, limits: LIMITS, ...report }, null, 2) + '\n');
    process.stdout.write(formatReport(report) + '\n');
    const found = problems(report);
    process.stdout.write(found.length === 0 ? `  flat and clean (limits per hour: RSS ${LIMITS.rssMbPerHour} MB, fds ${LIMITS.fdsPerHour}, event-loop p99 ${LIMITS.eventLoopDelayP99MsPerHour} ms); ${file}\n` : `  FAILED:\n${found.map((f) => `    - ${f}`).join('\n')}\n`);
    failed ||= found.length > 0;
  } finally {
    await database.drop();
  }
}
process.exit(failed ? 1 : 0);
