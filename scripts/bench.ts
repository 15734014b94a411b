// `npm run bench -- <name>|all [--quick] [--growth] [--profile]`: runs services/<name>/bench/<name>.bench.ts,
// or every benchmark one after the other ("all"; they must not overlap on a 2-core machine).
// --quick is a smoke run that checks correctness (CI runs `all --quick`); full runs write the
// committed figures in bench-results/.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const available = readdirSync(join(root, 'services'))
  .filter((d) => existsSync(join(root, 'services', d, 'bench', `${d}.bench.ts`)))
  .sort((a, b) => (a === 'kit' ? -1 : b === 'kit' ? 1 : a.localeCompare(b)));
const [name, ...rest] = process.argv.slice(2);
if (!name || (name !== 'all' && !available.includes(name))) {
  process.stderr.write(`usage: npm run bench -- <name>|all [--quick] [--growth] [--profile]\navailable benchmarks: ${available.join(', ')}\n`);
  process.exit(2);
}

const run = (bench: string): number => {
  const started = Date.now();
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'services', bench, 'bench', `${bench}.bench.ts`), ...rest], { stdio: 'inherit', cwd: root });
  const status = result.status ?? 1;
  process.stderr.write(`[bench] ${bench}: ${status === 0 ? 'passed' : `FAILED (exit ${status})`} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  return status;
};

if (name !== 'all') process.exit(run(name));
const failed = available.filter((bench) => run(bench) !== 0);
if (failed.length > 0) {
  process.stderr.write(`[bench] failed: ${failed.join(', ')}\n`);
  process.exit(1);
}
process.stderr.write(`[bench] all ${available.length} benchmarks passed: ${available.join(', ')}\n`);
