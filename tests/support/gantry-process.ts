import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const mainScript = join(repoRoot, 'services/gantry/src/main.ts');

/** Runs the gantry CLI to completion (tsx on this Node) and returns its output. */
export function runGantry(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', mainScript, ...args], { cwd: repoRoot, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface GantryServer {
  child: ChildProcess;
  port: number;
  healthPort: number;
  dataDir: string;
  env: NodeJS.ProcessEnv;
  logs: string[];
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * The gantry program bundled as the image bundles it (services/kit/bench/bundle.ts), into a dir of
 * this test process's own under build/: it starts in about half the time tsx takes, which counts in
 * tests that start it many times. Remove `dir` when done.
 */
export async function gantryBundle(): Promise<{ script: string; dir: string }> {
  const { benchBundle } = await import('../../services/kit/bench/bundle.js');
  const dir = join(repoRoot, 'build', `test-gantry-${process.pid}`);
  return { script: await benchBundle(repoRoot, mainScript, dir), dir };
}

/**
 * Starts `gantry serve --target=<target>` on free ports with a fresh data dir; resolves once it
 * serves. `bundle` (gantryBundle) runs the bundled program instead of the sources under tsx.
 */
export async function startGantry(target = 'all', extraEnv: NodeJS.ProcessEnv = {}, opts: { bundle?: string } = {}): Promise<GantryServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-e2e-'));
  const env = { GANTRY_DATA_DIR: dataDir, GANTRY_AUTH_DEV_ISSUER: 'true', GANTRY_LISTEN_HOST: '127.0.0.1', GANTRY_LISTEN_PORT: '0', GANTRY_LISTEN_HEALTH_PORT: '0', GANTRY_GATEWAY_PORT: '0', GANTRY_TELEMETRY_LOG_LEVEL: 'info', ...extraEnv };
  const program = opts.bundle ? [opts.bundle] : ['--import', 'tsx', mainScript];
  const child = spawn(process.execPath, [...program, 'serve', `--target=${target}`], { cwd: repoRoot, env: { ...process.env, ...env } });
  const logs: string[] = [];
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = await new Promise<{ port: number; health_port: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Not left running: a restart on the same port would find it there.
      child.kill('SIGKILL');
      reject(new Error(`gantry did not start within 60 s:\n${logs.join('')}`));
    }, 60_000);
    void exited.then((code) => reject(new Error(`gantry exited with ${code} before serving:\n${logs.join('')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; port: number; health_port: number };
        // A target without gRPC services (the operator, the gateway alone) says it is running instead.
        if (entry.msg === 'gantry is serving' || entry.msg === `gantry ${target} is running`) {
          clearTimeout(timer);
          resolve(entry);
        }
      } catch {
        // not a JSON log line
      }
    });
  });
  return {
    child,
    port: ready.port,
    healthPort: ready.health_port,
    dataDir,
    env,
    logs,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await exited;
      rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}
