// Column values come out of both engines in the same JavaScript form (storage/column-types.ts), by
// every path a store reads them: query, queryArrays, and inside a transaction. So stores decode
// nothing: int8 is a bigint (exact past 2^53), bytea a Buffer, timestamptz a Date, json and jsonb
// the parsed value, int4 a number, numeric a string, NULL null.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPglite, openPostgres, type Database } from '../src/index.js';
import { engines, freshPgliteDir, testDatabase, type EngineName } from '@gantry/test-support/databases';

const SELECT = `SELECT 42::int8 AS small, 9007199254740993::int8 AS beyond_double, '-9223372036854775808'::int8 AS min_int8,
  (SELECT count(*) FROM (VALUES (1), (2)) v) AS counted, '\\x00ff10'::bytea AS bytes, '2026-11-23T12:00:00.123Z'::timestamptz AS at,
  '{"a": [1, "two"]}'::json AS json_value, '{"b": true}'::jsonb AS jsonb_value, 7::int4 AS int4_value, 1.50::numeric AS numeric_value,
  NULL::int8 AS no_int8, NULL::jsonb AS no_jsonb`;

const EXPECTED = {
  small: 42n,
  beyond_double: 9007199254740993n,
  min_int8: -9223372036854775808n,
  counted: 2n,
  bytes: Buffer.from([0x00, 0xff, 0x10]),
  at: new Date('2026-11-23T12:00:00.123Z'),
  json_value: { a: [1, 'two'] },
  jsonb_value: { b: true },
  int4_value: 7,
  numeric_value: '1.50',
  no_int8: null,
  no_jsonb: null,
};

async function open(engine: EngineName): Promise<{ db: Database; close(): Promise<void> }> {
  if (engine === 'PostgreSQL') {
    const db = await openPostgres({ url: testDatabase().url!, poolSize: 1, statementTimeoutMs: 10_000 });
    return { db, close: () => db.close() };
  }
  const dir = mkdtempSync(join(tmpdir(), 'gantry-column-types-'));
  await freshPgliteDir(join(dir, 'db'));
  const db = await openPglite(join(dir, 'db'));
  return { db, close: async () => (await db.close(), rmSync(dir, { recursive: true, force: true })) };
}

for (const engine of engines()) {
  describe(`column types on ${engine.name}`, { skip: engine.skip }, () => {
    let world: { db: Database; close(): Promise<void> };
    before(async () => {
      world = await open(engine.name);
    });
    after(async () => world?.close());

    test('query: int8 bigint, bytea Buffer, timestamptz Date, json parsed, int4 number, numeric string, NULL null', async () => {
      const { rows } = await world.db.query(SELECT);
      assert.deepStrictEqual({ ...rows[0] }, EXPECTED);
      assert.ok(Buffer.isBuffer(rows[0]!.bytes), 'a Buffer, not only a Uint8Array');
    });

    test('queryArrays and a transaction give the same values', async () => {
      const { rows } = await world.db.queryArrays(SELECT);
      assert.deepStrictEqual(rows[0], Object.values(EXPECTED));
      const inTx = await world.db.transaction(async (tx) => (await tx.query(SELECT)).rows[0]);
      assert.deepStrictEqual({ ...inTx }, EXPECTED);
    });
  });
}
