// Benchmark servers run as production runs: one esbuild bundle, not TypeScript compiled on load by
// tsx. tsx compiles with esbuild's keepNames, which wraps every function and class defined at run
// time in a naming call: a few percent of a call's CPU in the kit's per-call closures, which the
// image's bundle (scripts/image/bundle.ts) does not pay. Packages stay external (resolved from the
// repository's node_modules) except the workspace's own, and `new URL('./x', import.meta.url)`
// becomes the absolute file URL of the file the source names, so nothing is copied.
import { build, type Plugin } from 'esbuild';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

// `new URL('./relative', import.meta.url)`, quoted either way.
const ASSET_URL = /new URL\((['"])(\.\.?\/[^'"]*)\1,\s*import\.meta\.url\)/g;

/** Marks the plugin's own resolve calls, so they take esbuild's default resolution. */
const RESOLVING = Symbol('resolving');

function sourcesOnly(root: string): Plugin {
  return {
    name: 'gantry-bench',
    setup(b) {
      // Every package but the workspace's own is loaded from node_modules at run time, from the
      // file the importing source resolves it to: npm nests some packages in a workspace's own
      // node_modules (services/kit/node_modules/@opentelemetry/sdk-node), which a bare name
      // imported from build/bench would not find.
      b.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.path.startsWith('@gantry/') || args.pluginData === RESOLVING || args.path.startsWith('node:')) return undefined;
        const found = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: RESOLVING });
        if (found.errors.length > 0) return { errors: found.errors };
        return { path: found.external ? args.path : found.path, external: true };
      });
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        const source = readFileSync(args.path, 'utf8');
        if (!source.includes('import.meta.url')) return undefined;
        const contents = source.replace(ASSET_URL, (_m, _q: string, rel: string) => {
          const target = resolve(dirname(args.path), rel);
          if (!existsSync(target)) throw new Error(`${relative(root, args.path)} loads ${rel}, which does not exist at ${target}`);
          return `new URL(${JSON.stringify(pathToFileURL(target).href + (rel.endsWith('/') ? '/' : ''))})`;
        });
        return { contents, loader: 'ts' };
      });
    },
  };
}

/**
 * Bundles under way or done, by output: callers starting several servers of one script at once
 * (the log benchmark starts four) share one build. Each used to build on its own into the same
 * file, and a server could start from a file another build was rewriting (seen: a log server that
 * exited with 0 before it was ready).
 */
const built = new Map<string, Promise<string>>();

/**
 * Bundles `script` (a .ts entry point) into <outDir>/<name>.mjs (default build/bench) once per run;
 * returns its path. Processes that may bundle at the same time (test files) give dirs of their own.
 */
export function benchBundle(root: string, script: string, outDir = join(root, 'build/bench')): Promise<string> {
  const key = `${outDir}\0${script}`;
  let building = built.get(key);
  if (!building) {
    building = bundle(root, script, outDir);
    built.set(key, building);
    building.catch(() => built.delete(key));
  }
  return building;
}

async function bundle(root: string, script: string, outDir: string): Promise<string> {
  mkdirSync(outDir, { recursive: true });
  const outfile = join(outDir, basename(script).replace(/\.ts$/, '.mjs'));
  await build({
    entryPoints: [script],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    // CommonJS dependencies call require(); an ESM bundle has to provide it.
    banner: { js: "import { createRequire as __gantryCreateRequire } from 'node:module';\nconst require = __gantryCreateRequire(import.meta.url);" },
    logLevel: 'warning',
    plugins: [sourcesOnly(root)],
  });
  return outfile;
}
