// The benchmark profiler's breakdown (services/kit/bench/profile.ts): samples sorted by part of the
// stack, a native frame counted for its JavaScript caller, idle time and the profiler's own work left
// out, bundled sources named by the module comments esbuild writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { summarize } from '../bench/profile.js';

test('a profile is broken down per operation by part of the stack', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-profile-test-'));
  const bundle = join(dir, 'server.mjs');
  // Lines 0-2 come from the kit, 3-5 from the settlement service (esbuild's `// <path>` comments).
  writeFileSync(bundle, ['// services/kit/src/auth.ts', 'function admit() {}', '', '// services/settlement/src/domain/credit-line.ts', 'function checkDraw() {}', ''].join('\n'));
  const url = pathToFileURL(bundle).href;
  const frame = (id: number, functionName: string, frameUrl: string, lineNumber: number, children: number[] = []) => ({ id, callFrame: { functionName, url: frameUrl, lineNumber }, children });
  const profile = {
    nodes: [
      frame(1, '(root)', '', -1, [2, 3, 4, 5, 7, 9]),
      frame(2, '(idle)', '', -1),
      frame(3, 'admit', url, 1),
      frame(4, 'checkDraw', url, 4),
      frame(5, 'verify', 'node:internal/crypto/sig', 10, [6]),
      frame(6, 'run', '', -1), // native, under node:crypto
      frame(7, 'post', 'node:inspector', 100, [8]),
      frame(8, 'stop', '', -1), // the profiler's own, under node:inspector
      frame(9, '(garbage collector)', '', -1),
      frame(10, 'onRead', 'file:///app/node_modules/@grpc/grpc-js/build/src/server.js', 5),
    ],
    samples: [2, 3, 4, 6, 6, 8, 9, 10],
    timeDeltas: [1000, 100, 200, 300, 300, 5000, 50, 50],
  };
  const s = summarize(profile, 10);
  const part = (name: string) => s.parts.find((p) => p.part === name)?.usPerOp;
  assert.equal(s.busyUsPerOp, (100 + 200 + 600 + 50 + 50) / 10, 'idle and the profiler are not busy time');
  assert.equal(part('kit'), 10);
  assert.equal(part("settlement (the service's own code)"), 20);
  assert.equal(part('Node crypto (hashes, signatures, ciphers)'), 60, 'a native frame counts for its caller');
  assert.equal(part('garbage collection'), 5);
  assert.equal(part('grpc-js'), 5);
  assert.equal(s.top[0]!.fn, 'run');
  assert.equal(s.top[0]!.usPerOp, 60);
});
