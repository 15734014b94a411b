import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { credentials, status } from '@grpc/grpc-js';
import type { DevPkiPaths } from '../src/tls/pki.js';
import { bearer, callEcho, checkHealth, echoClient, eventually, tokenFor } from '@gantry/test-support/clients';

const SERVER_SCRIPT = fileURLToPath(new URL('./fixtures/serve-echo.ts', import.meta.url));
const KIT_DIR = fileURLToPath(new URL('..', import.meta.url));
const START_TIMEOUT_MS = 30_000;

interface Served {
  port: number;
  healthPort: number;
  dataDir: string;
  pki: DevPkiPaths;
}

describe('graceful shutdown on SIGTERM', () => {
  let child: ChildProcess;
  let served: Served;
  let stderr = '';
  let exited: Promise<[number | null, NodeJS.Signals | null]>;

  before(async () => {
    child = spawn(process.execPath, ['--import', 'tsx', SERVER_SCRIPT], { cwd: KIT_DIR, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const lines = createInterface({ input: child.stdout! });
    let timer: NodeJS.Timeout | undefined;
    try {
      const first = await Promise.race([
        once(lines, 'line').then(([line]) => line as string),
        exited.then(([code]) => Promise.reject(new Error(`server exited with ${code} before serving: ${stderr}`))),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`server did not start within ${START_TIMEOUT_MS} ms: ${stderr}`)), START_TIMEOUT_MS))),
      ]);
      served = JSON.parse(first) as Served;
    } finally {
      clearTimeout(timer);
    }
  });

  after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    if (served) rmSync(served.dataDir, { recursive: true, force: true });
  });

  test('an in-flight call completes, a call started after SIGTERM is refused, liveness stays SERVING meanwhile, and the process exits 0', async () => {
    const { pki } = served;
    const creds = () => credentials.createSsl(readFileSync(pki.caFile), readFileSync(pki.clientKeyFile), readFileSync(pki.clientCertFile));
    const address = `127.0.0.1:${served.port}`;
    const md = bearer(tokenFor(served.dataDir, 'drainer', ['echo.read']));
    const early = echoClient(address, creds());
    const late = echoClient(address, creds(), { 'grpc.use_local_subchannel_pool': 1 });
    try {
      assert.equal((await callEcho(early, { message: 'warm-up' }, md)).err, undefined, 'the server answers before the signal');
      const inFlight = callEcho(early, { message: 'in flight', delayMs: 1500 }, md, 10_000);
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGTERM');

      // The probe port stays up during the drain and says so: from then on, new calls are not accepted.
      const draining = await eventually(async () => (await checkHealth(`127.0.0.1:${served.healthPort}`, credentials.createInsecure(), '', 500)).status === 'NOT_SERVING', 1000, 20);
      assert.ok(draining, `the server did not start draining within 1 s of SIGTERM: ${stderr}`);
      const liveness = await checkHealth(`127.0.0.1:${served.healthPort}`, credentials.createInsecure(), 'liveness', 500);
      assert.equal(liveness.status, 'SERVING', 'a draining process is alive: kubelet must not restart it');
      const refused = await callEcho(late, { message: 'too late' }, md, 2000);
      assert.equal(refused.res, undefined, 'a call started after SIGTERM must not be served');
      assert.equal(refused.err?.code, status.UNAVAILABLE);

      const { res, err } = await inFlight;
      assert.equal(err, undefined, `the in-flight call failed: ${err?.details}`);
      assert.equal(res?.message, 'in flight');

      const [code, signal] = await exited;
      assert.equal(signal, null, `the process died of ${signal}: ${stderr}`);
      assert.equal(code, 0, `exit code ${code}: ${stderr}`);
    } finally {
      early.close();
      late.close();
    }
  });
});
