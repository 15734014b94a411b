// `npm run bench -- <name> [--quick]`: runs services/<name>/bench/<name>.bench.ts (or the kit's).
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const available = readdirSync(join(root, 'services')).filter((d) => existsSync(join(root, 'services', d, 'bench', `${d}.bench.ts`)));
const [name, ...rest] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <name> [--quick]\navailable benchmarks: ${available.join(', ')}\n`);
  process.exit(2);
}
const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'services', name, 'bench', `${name}.bench.ts`), ...rest], { stdio: 'inherit', cwd: root });
process.exit(result.status ?? 1);
