// `gantry --version` names the release and the commit, from sources (package.json and git) and
// from the image's bundle (stamped at bundle time), so a running pod can be traced to its source.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { buildInfo, fromCheckout } from '@gantry/kit';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const rootVersion = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();

test('from sources, the version is the root package.json and the commit is the checkout HEAD (marked -dirty with uncommitted changes)', () => {
  const info = buildInfo();
  assert.equal(info.version, rootVersion);
  assert.match(info.commit, new RegExp(`^${head}(-dirty)?$`));
  assert.deepEqual(fromCheckout(tmpdir()), { version: '0.0.0', commit: 'unknown' }, 'outside a checkout nothing is guessed');
});

test('gantry --version prints the release and the commit and exits 0', () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(root, 'services/gantry/src/main.ts'), '--version'], { cwd: root, encoding: 'utf8' });
  assert.equal(out.trim(), `gantry ${buildInfo().version} (commit ${buildInfo().commit})`);
});

test('a bundle answers with the version and commit stamped when it was built, not computed where it runs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-version-'));
  try {
    const outfile = join(dir, 'info.mjs');
    await build({
      stdin: { contents: `import { buildInfo } from ${JSON.stringify(join(root, 'services/kit/src/build-info.ts'))}; console.log(JSON.stringify(buildInfo()));`, resolveDir: root, loader: 'ts' },
      outfile, bundle: true, platform: 'node', format: 'esm', logLevel: 'warning',
      define: { GANTRY_BUILD_INFO: JSON.stringify({ version: '9.8.7', commit: 'abc1234' }) },
    });
    const out = execFileSync(process.execPath, [outfile], { cwd: dir, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { version: '9.8.7', commit: 'abc1234' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
