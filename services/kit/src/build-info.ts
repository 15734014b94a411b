// What this program is: its release version and the commit it was built from, for `gantry
// --version`, the startup log line and the `service.version` of its telemetry. The image's bundle
// stamps both at build time (scripts/image/bundle.ts defines GANTRY_BUILD_INFO from the checkout
// it bundles); run from sources (npm start, tests) they come from the root package.json and git.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface BuildInfo {
  /** The release, from the root package.json (semver). */
  version: string;
  /** The abbreviated commit, `unknown` outside a git checkout; `-dirty` when built from uncommitted changes. */
  commit: string;
}

// Replaced by a literal in a bundle; `typeof` keeps source runs, where it is not defined, working.
declare const GANTRY_BUILD_INFO: BuildInfo | undefined;

let cached: BuildInfo | undefined;

/** This program's version and commit (computed once: from sources it asks git). */
export function buildInfo(): BuildInfo {
  // Unstamped means sources or a benchmark bundle, both inside the checkout: walking up from this
  // file's directory reaches its root either way (the image's bundle is always stamped).
  cached ??= typeof GANTRY_BUILD_INFO === 'undefined' ? fromCheckout(import.meta.dirname) : GANTRY_BUILD_INFO;
  return cached;
}

/** The version of the workspace root above `fromDir` and the checkout's commit. */
export function fromCheckout(fromDir: string): BuildInfo {
  let dir = fromDir;
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { version?: string; workspaces?: unknown };
      if (pkg.workspaces && pkg.version) return { version: pkg.version, commit: commitOf(dir) };
    }
    if (dirname(dir) === dir) return { version: '0.0.0', commit: 'unknown' };
    dir = dirname(dir);
  }
}

function commitOf(dir: string): string {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).trim();
  try {
    const commit = git('rev-parse', '--short', 'HEAD');
    // Tracked files only: untracked build output and tool caches do not make a build dirty.
    return git('status', '--porcelain', '--untracked-files=no') === '' ? commit : `${commit}-dirty`;
  } catch {
    return 'unknown';
  }
}
