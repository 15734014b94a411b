import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CleanupStack } from '../src/modules/cleanup.js';
import { ModuleRegistry } from '../src/modules/registry.js';
import { capturingLogger } from '@gantry/test-support/harness';

test('a target resolves to its modules once each, every dependency before its dependents', () => {
  const r = new ModuleRegistry().register({ name: 'db' }, { name: 'relay', dependencies: ['db'] }, { name: 'a', dependencies: ['relay', 'db'] }, { name: 'b', dependencies: ['relay'] }, { name: 'all', dependencies: ['a', 'b'] });
  assert.deepEqual(r.resolve(['all']).map((m) => m.name), ['db', 'relay', 'a', 'b', 'all']);
  assert.deepEqual(r.resolve(['b']).map((m) => m.name), ['db', 'relay', 'b']);
});

test('an unknown target, an unknown dependency, a cycle and a second registration are refused by name', () => {
  const r = new ModuleRegistry().register({ name: 'a', dependencies: ['ghost'] }, { name: 'x', dependencies: ['y'] }, { name: 'y', dependencies: ['x'] });
  assert.throws(() => r.resolve(['nope']), /unknown target "nope"; choose one of: a, x, y/);
  assert.throws(() => r.resolve(['a']), /unknown target "ghost" \(needed by a\)/);
  assert.throws(() => r.resolve(['x']), /cycle: x → y → x/);
  assert.throws(() => r.register({ name: 'a' }), /module a is registered twice/);
});

test('the registry derives the scope list from what each module declares', () => {
  const r = new ModuleRegistry().register({ name: 'a', scopes: ['b.write', 'a.read'] }, { name: 'b', scopes: ['b.write'] }, { name: 'c' });
  assert.deepEqual(r.scopes(), ['a.read', 'b.write']);
});

test('the cleanup stack runs last-first, passes the grace on, and runs every step even when one fails', async () => {
  const { log, lines } = capturingLogger();
  const stack = new CleanupStack(log);
  const ran: string[] = [];
  stack.push('database', () => void ran.push('database'));
  stack.push('server', (graceMs) => void ran.push(`server ${graceMs}`));
  stack.push('relay', () => {
    ran.push('relay');
    throw new Error('stuck');
  });
  await stack.unwind(250);
  assert.deepEqual(ran, ['relay', 'server 250', 'database']);
  assert.ok(lines.some((l) => l.step === 'relay' && /stopping relay failed/.test(String(l.msg))));
  await stack.unwind();
  assert.equal(ran.length, 3, 'an unwound stack is empty');
});
