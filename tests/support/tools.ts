import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/**
 * Path of a Go-built tool (grpcurl, grpc-health-probe, ghz) from scripts/test-env/go-tools.sh, or
 * undefined. Under CI a missing tool is an error, never a silent skip.
 */
export function tool(name: string): string | undefined {
  const dir = process.env.GANTRY_TEST_TOOLS_DIR;
  const path = dir ? join(dir, name) : undefined;
  if (path && existsSync(path)) return path;
  if (process.env.CI === 'true') throw new Error(`${name} is missing: scripts/test-env/go-tools.sh should have installed it into GANTRY_TEST_TOOLS_DIR`);
  return undefined;
}

/** Runs a tool and returns its exit code and output, without throwing on a non-zero exit. */
export async function run(path: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(path, args, { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
