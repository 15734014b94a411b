// A token a service presents to its peers instead of its workload certificate: read from a file
// that an issuer rotates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileTokenSource } from '../src/index.js';


test('a token file is re-read when it changes (rotation), and a missing or empty file is an error that names it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-token-'));
  try {
    const path = join(dir, 'token');
    const clock = { nowMs: 1_000_000 };
    const source = fileTokenSource(path, () => clock.nowMs);
    assert.throws(() => source.token(), new RegExp(`${path} does not exist.*GANTRY_PEERS_TOKEN_FILE`));
    writeFileSync(path, 'first.jwt\n');
    assert.equal(source.token(), 'first.jwt');
    writeFileSync(path, 'second.jwt');
    utimesSync(path, new Date(), new Date(Date.now() + 5_000));
    assert.equal(source.token(), 'first.jwt', 'checked at most every 10 s');
    clock.nowMs += 10_001;
    assert.equal(source.token(), 'second.jwt');
    writeFileSync(path, '  ');
    utimesSync(path, new Date(), new Date(Date.now() + 10_000));
    clock.nowMs += 10_001;
    assert.throws(() => source.token(), /is empty/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
