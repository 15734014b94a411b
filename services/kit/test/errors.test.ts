// What a caller is told for what a handler threw: its own GantryError as is, a database that is
// away as UNAVAILABLE, a full disk as RESOURCE_EXHAUSTED saying so, a value the database cannot take as INVALID_ARGUMENT, anything else INTERNAL
// with a reference and no internals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GantryError, isDiskFullError, Status, toWireStatus } from '../src/errors.js';

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code, severity: 'ERROR' });

test('a PostgreSQL data exception (text with NUL, a number past int8) is INVALID_ARGUMENT, still logged as unexpected', () => {
  for (const [code, message] of [['22021', 'invalid byte sequence for encoding "UTF8": 0x00'], ['22003', 'value "17247560878594605384" is out of range for type bigint'], ['22P02', 'invalid input syntax for type uuid: "x"']] as const) {
    const wire = toWireStatus(pgError(code, message), 'abc123');
    assert.equal(wire.code, Status.INVALID_ARGUMENT, code);
    assert.equal(wire.details, `a value in the request cannot be used: ${message} (reference abc123)`);
    assert.equal(wire.unexpected, true);
  }
});

test('other database errors and plain errors are INTERNAL with only a reference; a GantryError is passed on', () => {
  for (const err of [pgError('23505', 'duplicate key value violates unique constraint "secret_idx"'), pgError('42601', 'syntax error'), new Error('boom'), Object.assign(new Error('no severity'), { code: '22003' })]) {
    const wire = toWireStatus(err, 'ref1');
    assert.equal(wire.code, Status.INTERNAL);
    assert.equal(wire.details, 'internal error (reference ref1); the server log has the details');
  }
  const own = toWireStatus(new GantryError(Status.NOT_FOUND, 'no such thing'), 'r');
  assert.deepEqual([own.code, own.details, own.unexpected], [Status.NOT_FOUND, 'no such thing', false]);
});

test('a full disk (SQLSTATE 53100) is RESOURCE_EXHAUSTED saying so, also under a service error that wraps it', () => {
  const full = pgError('53100', 'could not extend file "base/5/16385": No space left on device');
  const wrapped = new GantryError(Status.UNAVAILABLE, 'the append was not acknowledged (database error)', { cause: full });
  for (const err of [full, wrapped, new Error('batch failed', { cause: wrapped })]) {
    assert.equal(isDiskFullError(err), true);
    const wire = toWireStatus(err, 'ref9');
    assert.equal(wire.code, Status.RESOURCE_EXHAUSTED);
    assert.equal(wire.details, "the database's disk is full: writes are refused until space is freed on its volume; reads still work (reference ref9)");
    assert.equal(wire.unexpected, true, 'logged with its cause for the operator');
  }
  assert.equal(isDiskFullError(pgError('53300', 'too many connections')), false);
  assert.equal(toWireStatus(new GantryError(Status.UNAVAILABLE, 'x', { cause: pgError('57P01', 'terminating') }), 'r').code, Status.UNAVAILABLE);
});
