import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inlineParams, singleCopyValue } from '../src/storage/copy-out.js';

const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** A one-column binary COPY output holding `values` (undefined = NULL), as PostgreSQL writes it. */
function copyOutput(values: (Buffer | undefined)[], extension = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(extension.length, 4);
  const rows = values.map((v) => {
    const field = Buffer.alloc(6);
    field.writeInt16BE(1, 0);
    field.writeInt32BE(v ? v.length : -1, 2);
    return Buffer.concat([field, v ?? Buffer.alloc(0)]);
  });
  return Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), header, extension, ...rows, Buffer.from([0xff, 0xff])]);
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

test('singleCopyValue reads the one value of a one-column COPY, past a header extension', () => {
  const value = Buffer.from([0, 1, 2, 255]);
  assert.deepEqual(singleCopyValue(copyOutput([value])), value);
  assert.deepEqual(singleCopyValue(copyOutput([value], Buffer.from('ext'))), value);
  assert.deepEqual(singleCopyValue(copyOutput([Buffer.alloc(0)])), Buffer.alloc(0));
  assert.equal(singleCopyValue(copyOutput([undefined])), undefined);
  assert.equal(singleCopyValue(copyOutput([])), undefined);
});

test('singleCopyValue refuses text output, two rows, two columns and a truncated stream', () => {
  assert.throws(() => singleCopyValue(Buffer.from('\\x0001\n')), /not in the binary format/);
  assert.throws(() => singleCopyValue(copyOutput([Buffer.from('a'), Buffer.from('b')])), /more than one row/);
  const twoColumns = copyOutput([Buffer.from('a')]);
  twoColumns.writeInt16BE(2, 19);
  assert.throws(() => singleCopyValue(twoColumns), /2 columns, expected 1/);
  const whole = copyOutput([Buffer.from('abcdef')]);
  for (const cut of [20, 24, whole.length - 4, whole.length - 1]) assert.throws(() => singleCopyValue(whole.subarray(0, cut)), /ends early|more than one row/, `cut at ${cut}`);
});
