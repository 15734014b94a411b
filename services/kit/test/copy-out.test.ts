import assert from 'node:assert/strict';
import { test } from 'node:test';
import { copyTuples, inlineParams } from '../src/storage/copy-out.js';
import { rowsOf, tuplesOf } from '@gantry/test-support/copy-tuples';

const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** A binary COPY output of `rows` (undefined = NULL), as PostgreSQL writes it. */
function copyOutput(rows: (Buffer | undefined)[][], extension = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(extension.length, 4);
  return Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), header, extension, tuplesOf(rows), Buffer.from([0xff, 0xff])]);
}

test('inlineParams writes each parameter as a literal where it is referenced, as often as it is', () => {
  assert.equal(inlineParams('SELECT $1, $2, $1, $3', ['a', 2n, null], quote), "SELECT 'a', 2, 'a', NULL");
  const eleven = Array.from({ length: 11 }, (_, i) => i + 1);
  assert.equal(inlineParams(eleven.map((n) => `$${n}`).join(','), eleven, quote), eleven.join(','));
  assert.equal(inlineParams('SELECT $1', ["it's"], quote), "SELECT 'it''s'");
});

test('inlineParams refuses a missing or unused parameter and a number that is not a safe integer', () => {
  assert.throws(() => inlineParams('SELECT $2', ['a'], quote), /refers to \$2 but has 1 parameter/);
  assert.throws(() => inlineParams('SELECT $0', ['a'], quote), /refers to \$0/);
  assert.throws(() => inlineParams('SELECT $1', ['a', 'b'], quote), /uses 1 of its 2 parameters/);
  assert.throws(() => inlineParams('SELECT $1', [1.5], quote), /not a safe integer/);
  assert.throws(() => inlineParams('SELECT $1', [2 ** 53], quote), /not a safe integer/);
  assert.throws(() => inlineParams('SELECT $1', [Number.NaN], quote), /not a safe integer/);
});

test('copyTuples returns the rows between the header, past its extension, and the trailer', () => {
  const rows = [[Buffer.from([0, 1, 2, 255]), undefined, Buffer.alloc(0)], [Buffer.from('second'), Buffer.from('row'), undefined]];
  assert.deepEqual(copyTuples(copyOutput(rows)), tuplesOf(rows));
  assert.deepEqual(rowsOf(copyTuples(copyOutput(rows, Buffer.from('ext')))), rows);
  assert.equal(copyTuples(copyOutput([])).length, 0);
});

test('copyTuples refuses text output and a stream cut before its trailer', () => {
  assert.throws(() => copyTuples(Buffer.from('\\x0001\n')), /not in the binary format/);
  const whole = copyOutput([[Buffer.from('abcdef')]]);
  for (const cut of [20, 24, whole.length - 4, whole.length - 1]) assert.throws(() => copyTuples(whole.subarray(0, cut)), /ends early|not in the binary format/, `cut at ${cut}`);
});
