// skaffold.yaml without a node: `skaffold render` offline and `skaffold build` into the local Docker
// engine (tests/support/kube.ts gives the API server render reads its version from).
// tests/cluster/skaffold.test.ts runs, pushes, deploys and port-forwards on the real cluster.
// skaffold (and the Helm 3 it drives) come from scripts/test-env/skaffold.sh.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../support/gantry-process.js';
import { ok, testKube, type Result, type TestKube } from '../support/kube.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- API objects are untyped JSON here

const CI = process.env.CI === 'true';
/** Under CI a missing skaffold is built here (scripts/test.sh has normally built it already). */
const SETUP_TIMEOUT_MS = CI ? 40 * 60_000 : 120_000;
/** Bundling the program and building the image; the base image is made once by scripts/test.sh. */
const SKAFFOLD_TIMEOUT_MS = 300_000;
// local-base: no registry answers here, so the image is built FROM gantry-base:node22.
// shared-cluster: tests/kube/operator.test.ts owns the chart's cluster-wide CRDs.
const PROFILES = ['-p', 'local-base,shared-cluster'];
const tag = `skaffold-test-${randomBytes(3).toString('hex')}`;

interface Setup {
  kube: TestKube;
  env: NodeJS.ProcessEnv;
  skaffold: string;
}
let setup: Setup | undefined;
let skipReason = '';

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeout: number): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: repoRoot, env, timeout, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr: err && code === 1 && !stderr ? err.message : stderr });
    });
  });
}

/** Why skaffold cannot run here, or the setup; under CI=true a reason is an error, never a skip. */
async function setUp(): Promise<Setup | string> {
  const kube = await testKube();
  if (typeof kube === 'string') return kube;
  // Locally skaffold is not built inside a test run (minutes): --no-build exits 4 with the command.
  const built = await run('bash', [join(repoRoot, 'scripts/test-env/skaffold.sh'), ...(CI ? [] : ['--no-build'])], process.env, SETUP_TIMEOUT_MS);
  if (built.code !== 0) return `skaffold is not available ('bash scripts/test-env/skaffold.sh' exited ${built.code}): ${built.stderr.trim()}`;
  const skaffold = built.stdout.trim();
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    return 'no Docker engine answers; to include the skaffold test run: bash scripts/test-env/docker.sh start';
  }
  // skaffold's directory first: its Helm 3 (skaffold v2.16 cannot drive Helm 4), then kubectl.
  const env = {
    ...process.env,
    PATH: [dirname(skaffold), kube.toolsDir, process.env.PATH].join(':'),
    KUBECONFIG: kube.kubeconfig,
    SKAFFOLD_UPDATE_CHECK: 'false',
    SKAFFOLD_INTERACTIVE: 'false',
  };
  return { kube, env, skaffold };
}

function needs(t: TestContext): Setup | undefined {
  if (!setup) t.skip(skipReason);
  return setup;
}

async function skaffold(s: Setup, args: string[]): Promise<string> {
  return ok(await run(s.skaffold, args, s.env, SKAFFOLD_TIMEOUT_MS), `skaffold ${args.join(' ')}`);
}

const objects = (yaml: string) => parseAllDocuments(yaml).map((d) => d.toJSON() as Obj).filter(Boolean);
const names = (items: Obj[], kind: string) => items.filter((o) => o.kind === kind).map((o) => o.metadata.name as string).sort();
const images = (items: Obj[]) => [...new Set(items.filter((o) => o.kind === 'Deployment').flatMap((d) => (d.spec.template.spec.containers as Obj[]).map((c) => c.image as string)))];

describe('skaffold.yaml: render and build', () => {
  let work = '';
  let builtImage = '';

  before(async () => {
    const s = await setUp();
    if (typeof s === 'string') {
      if (CI) throw new Error(`skaffold must run under CI: ${s}`);
      skipReason = s;
    } else setup = s;
    work = mkdtempSync(join(tmpdir(), 'gantry-skaffold-'));
  }, { timeout: SETUP_TIMEOUT_MS });

  after(() => {
    rmSync(work, { recursive: true, force: true });
    if (builtImage) execFileSync('docker', ['image', 'rm', '-f', builtImage, `gantry:${tag}`], { stdio: 'ignore' });
  });

  test('skaffold render (offline, no build): the dev-values chart with the image skaffold would build, and no CRDs', async (t) => {
    const s = needs(t);
    if (!s) return;
    // --output: the manifests alone, whatever skaffold prints besides.
    const file = join(work, 'rendered.yaml');
    await skaffold(s, ['render', ...PROFILES, '--offline=true', '--digest-source=tag', '--tag', tag, '--output', file]);
    const rendered = objects(readFileSync(file, 'utf8'));
    assert.deepEqual(names(rendered, 'Deployment'), ['gantry-gantry', 'gantry-operator']);
    assert.deepEqual(images(rendered), [`gantry:${tag}`]);
    assert.ok(names(rendered, 'Service').includes('gantry-gantry'), `the Service skaffold dev port-forwards: ${names(rendered, 'Service').join(', ')}`);
    assert.deepEqual(names(rendered, 'CustomResourceDefinition'), [], 'the shared-cluster profile leaves the CRDs out');
    const server = rendered.find((o) => o.kind === 'Deployment' && o.metadata.name === 'gantry-gantry')!;
    assert.deepEqual(server.spec.template.spec.containers[0].args, ['serve', '--target=all'], 'dev-values.yaml: monolithic');
  });

  test('skaffold build: scripts/image/build.sh bundles the program and builds the image into the local Docker engine, not pushed', async (t) => {
    const s = needs(t);
    if (!s) return;
    const file = join(work, 'build.json');
    // --cache-artifacts=false: really build, not reuse an earlier run's image from skaffold's cache.
    await skaffold(s, ['build', ...PROFILES, '--tag', tag, '--file-output', file, '--cache-artifacts=false']);
    const builds = (JSON.parse(readFileSync(file, 'utf8')) as { builds: { imageName: string; tag: string }[] }).builds;
    assert.equal(builds.length, 1);
    assert.equal(builds[0]!.imageName, 'gantry');
    builtImage = builds[0]!.tag;
    // Not pushed, so skaffold deploys the image by a tag made of its ID (`gantry:<sha256 hex>`),
    // beside the tag it asked build.sh for: both name the same image.
    assert.match(builtImage, /^gantry:[0-9a-f]{64}$/);
    const inspect = (ref: string) => (JSON.parse(execFileSync('docker', ['image', 'inspect', ref], { encoding: 'utf8' })) as Obj[])[0]!;
    const image = inspect(builtImage);
    assert.equal(inspect(`gantry:${tag}`).Id, image.Id);
    assert.equal(`gantry:${(image.Id as string).replace(/^sha256:/, '')}`, builtImage);
    assert.deepEqual(image.Config.Entrypoint, ['node', '--experimental-async-context-frame', '--heap-growing-percent=100', '/app/gantry.mjs']);
    assert.equal(image.Config.Labels['org.opencontainers.image.title'], 'gantry');
  });
});
