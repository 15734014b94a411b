// Builds what the container image runs, into build/image/app:
//   gantry.mjs     the gantry program, one esbuild ESM bundle for Node 22
//   assets/...     the files the code loads at run time through `new URL('./x', import.meta.url)`
//                  (SQL migrations, protobuf descriptor sets), kept at their repository paths
//   node_modules/  the packages that cannot be bundled, with their production dependencies
//   package.json   {"type": "module"}
//
// Bundling moves every module into one file, so `new URL('./migrations', import.meta.url)` would
// point next to the bundle, and four services each have a `./migrations`. The plugin below
// rewrites each such URL to `./assets/<path of the target in the repository>` and copies the
// target there; a bundled program therefore finds exactly the files the sources name.
//
// Usage: tsx scripts/image/bundle.ts [outDir]   (default build/image/app)
import { build, type Plugin } from 'esbuild';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromCheckout } from '../../services/kit/src/build-info.js';
import { EXTERNAL } from './externals.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const outDir = resolve(process.argv[2] ?? join(root, 'build/image/app'));
const entry = join(root, 'services/gantry/src/main.ts');

/** Optional native modules that are never installed; their importers fall back without them. */
const ABSENT = ['pg-native'];

// `new URL('./relative', import.meta.url)`, quoted either way.
const ASSET_URL = /new URL\((['"])(\.\.?\/[^'"]+)\1,\s*import\.meta\.url\)/g;

function assetsPlugin(assets: Map<string, string>): Plugin {
  return {
    name: 'gantry-assets',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path.includes('/node_modules/')) return undefined;
        const source = readFileSync(args.path, 'utf8');
        if (!source.includes('import.meta.url')) return undefined;
        let relocated = 0;
        const contents = source.replace(ASSET_URL, (_m, _q: string, rel: string) => {
          relocated += 1;
          const target = resolve(dirname(args.path), rel);
          if (!existsSync(target)) throw new Error(`${relative(root, args.path)} loads ${rel}, which does not exist at ${target}`);
          const inRepo = relative(root, target);
          assets.set(inRepo, target);
          return `new URL(${JSON.stringify(`./assets/${inRepo}`)}, import.meta.url)`;
        });
        if (contents.split('import.meta.url').length - 1 !== relocated) {
          throw new Error(`${relative(root, args.path)} uses import.meta.url in a form the bundle cannot relocate: use new URL('./file', import.meta.url)`);
        }
        return { contents, loader: 'ts' };
      });
    },
  };
}

/** A native addon's prebuilt binaries for an OS other than Linux (prebuilds/<os>-<arch>/). */
const OTHER_OS_PREBUILD = /^prebuilds\/(?!linux-)[^/]+/;

/** The directory of `name` as Node would resolve it from `fromDir`. */
function packageDir(name: string, fromDir: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/** Copies each package and its dependency closure, each at its path under the repository. */
function copyPackages(names: readonly string[]): string[] {
  const copied = new Set<string>();
  const visit = (name: string, fromDir: string, optional: boolean) => {
    const dir = packageDir(name, fromDir);
    if (!dir) {
      if (optional) return;
      throw new Error(`package ${name} (needed from ${relative(root, fromDir) || '.'}) is not installed: run npm ci`);
    }
    if (copied.has(dir)) return;
    copied.add(dir);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    // Type-only packages (@types/node, undici-types via it) are never loaded at run time.
    for (const dep of Object.keys(pkg.dependencies ?? {})) if (!dep.startsWith('@types/')) visit(dep, dir, false);
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, dir, true);
  };
  for (const name of names) visit(name, root, false);
  for (const dir of copied) {
    const dest = join(outDir, relative(root, dir));
    // Nested node_modules are copied as packages of their own when something needs them; of native
    // addons' prebuilt binaries only Linux's (the image's OS), not macOS', Windows' or Android's.
    cpSync(dir, dest, { recursive: true, dereference: true, filter: (src) => !relative(dir, src).includes('node_modules') && !src.endsWith('.map') && !OTHER_OS_PREBUILD.test(relative(dir, src)) });
  }
  return [...copied].map((d) => relative(root, d)).sort();
}

async function main(): Promise<void> {
  const started = Date.now();
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const assets = new Map<string, string>();
  const stamp = fromCheckout(root);
  const result = await build({
    entryPoints: [entry],
    outfile: join(outDir, 'gantry.mjs'),
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    external: [...EXTERNAL, ...ABSENT],
    // CommonJS dependencies call require(); an ESM bundle has to provide it.
    banner: { js: "import { createRequire as __gantryCreateRequire } from 'node:module';\nconst require = __gantryCreateRequire(import.meta.url);" },
    // The version and commit `gantry --version` and the telemetry report (services/kit/src/build-info.ts).
    define: { GANTRY_BUILD_INFO: JSON.stringify(stamp) },
    legalComments: 'linked',
    logLevel: 'warning',
    metafile: true,
    plugins: [assetsPlugin(assets)],
  });
  for (const [inRepo, src] of assets) cpSync(src, join(outDir, 'assets', inRepo), { recursive: true });
  const packages = copyPackages(EXTERNAL);
  writeFileSync(join(outDir, 'package.json'), `${JSON.stringify({ name: 'gantry-image', private: true, type: 'module' }, null, 2)}\n`);
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  const bundleBytes = statSync(join(outDir, 'gantry.mjs')).size;
  process.stderr.write(
    `bundle.ts: ${relative(root, outDir)}/gantry.mjs (${stamp.version}, commit ${stamp.commit}) ${mb(bundleBytes)} from ${Object.keys(result.metafile.inputs).length} modules; ` +
      `${assets.size} asset paths (${[...assets.keys()].join(', ')}); ${packages.length} external packages; ${Date.now() - started} ms\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bundle.ts: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
