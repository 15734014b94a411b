import assert from 'node:assert/strict';
import { test } from 'node:test';
import { first, one, oneOrNone } from '../src/storage/rows.js';

test('one returns the single row and names what was missing or doubled', () => {
  assert.deepEqual(one([{ a: 1 }], 'account'), { a: 1 });
  assert.throws(() => one([], 'account'), /exactly one row of account, got 0/);
  assert.throws(() => one([{}, {}], 'account'), /exactly one row of account, got 2/);
});

test('oneOrNone allows no row but not two', () => {
  assert.equal(oneOrNone([], 'flag'), undefined);
  assert.deepEqual(oneOrNone([{ a: 1 }], 'flag'), { a: 1 });
  assert.throws(() => oneOrNone([{}, {}], 'flag'), /at most one row of flag, got 2/);
});

test('first takes the first of one or more rows and names what was missing', () => {
  assert.deepEqual(first([{ a: 1 }, { a: 2 }], 'head'), { a: 1 });
  assert.throws(() => first([], 'head'), /at least one row of head, got 0/);
});
