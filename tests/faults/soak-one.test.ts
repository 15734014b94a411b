// The brief soak (tests/faults/soak/case.ts) in one process, `--target=all`; and the slope it reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { soakCase } from './soak/case.js';
import { slope } from './soak/driver.js';

test('the slope is the least-squares line through the points', () => {
  assert.equal(slope([]), 0);
  assert.equal(slope([{ x: 1, y: 5 }]), 0);
  assert.equal(slope([{ x: 0, y: 1 }, { x: 1, y: 3 }, { x: 2, y: 5 }]), 2);
  assert.ok(Math.abs(slope([{ x: 0, y: 0 }, { x: 1, y: 1 }, { x: 2, y: 0 }, { x: 3, y: 1 }]) - 0.2) < 1e-9);
});

soakCase('one');
