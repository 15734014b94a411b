// The flags store's invariants under random sequences of writes (fast-check, on PGlite): every
// successful change takes exactly the next version, a refused one takes none, the history is
// gapless and pruned to its bound, and the current flags equal the history replayed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import {
  FlagsStore,
  GantryError,
  flagFromSpec,
  flagsMigrations,
  migrate,
  openPglite,
  toFlagd,
  fromFlagd,
  validateFlag,
  type Database,
} from '../src/index.js';
import { freshPgliteDir } from '@gantry/test-support/databases';

const RETAINED = 8;
let dir: string;
let db: Database;
let runs = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gantry-flags-store-'));
  await freshPgliteDir(join(dir, 'db'));
  db = await openPglite(join(dir, 'db'));
});
after(async () => {
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Op = { kind: 'put' | 'delete'; key: string; value: boolean; expected: 'none' | 'current' | 'stale' };
const op = fc.record({
  kind: fc.constantFrom('put' as const, 'delete' as const),
  key: fc.constantFrom('a', 'b', 'c'),
  value: fc.boolean(),
  expected: fc.constantFrom('none' as const, 'current' as const, 'stale' as const),
});

test('versions are gapless and taken only by changes that commit; the history replays to the current flags', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops: Op[]) => {
      const schema = `flags_prop_${++runs}`;
      await migrate(db, schema, flagsMigrations(schema));
      const store = new FlagsStore(db, schema, { maxFlags: 1000, maxStoreBytes: 1 << 20, retainedChanges: RETAINED });
      const model = new Map<string, bigint>();
      let head = 0n;
      for (const o of ops) {
        const current = model.get(o.key) ?? 0n;
        const expected = o.expected === 'none' ? undefined : o.expected === 'current' ? current : current + 7n;
        const valid = validateFlag(flagFromSpec({ state: 'ENABLED', variants: { on: true, off: false }, defaultVariant: o.value ? 'on' : 'off' }, { name: o.key, source: 'prop' }));
        try {
          if (o.kind === 'put') {
            const r = await store.put(valid, expected, new Date());
            assert.equal(r.flag.version, head + 1n);
            assert.equal(r.created, current === 0n);
            head += 1n;
            model.set(o.key, head);
          } else {
            const r = await store.delete(o.key, expected, 'prop', new Date());
            assert.equal(r.existed, current !== 0n);
            if (r.existed) {
              head += 1n;
              model.delete(o.key);
            }
          }
          assert.notEqual(o.expected, 'stale', 'a stale expected_version must be refused');
        } catch (err) {
          if (!(err instanceof GantryError)) throw err;
          assert.equal(o.expected, 'stale', `refused: ${err.message}`);
        }
        assert.equal(await store.headVersion(), head);
      }
      const { changes, oldestRetained } = await store.changesAfter(0n, 1000);
      const versions = changes.map((c) => c.version);
      const expectedVersions = Array.from({ length: Number(head < BigInt(RETAINED) ? head : BigInt(RETAINED)) }, (_, i) => head - BigInt(versions.length) + 1n + BigInt(i));
      assert.deepEqual(versions, expectedVersions, 'the retained history is the newest changes, gapless');
      assert.equal(oldestRetained, versions[0] ?? head + 1n);
      const list = await store.list();
      assert.equal(list.version, head);
      assert.deepEqual(new Map(list.flags.map((f) => [f.key, f.version])), model);
      await db.exec(`DROP SCHEMA ${schema} CASCADE`);
    }),
    { numRuns: 25 },
  );
});

test('a flag survives the trip to the flagd definition and back', () => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.integer(), { minKeys: 1, maxKeys: 5 }),
      fc.boolean(),
      (variants, disabled) => {
        const names = Object.keys(variants);
        const f = flagFromSpec({ state: disabled ? 'DISABLED' : 'ENABLED', type: 'number', variants, defaultVariant: names[0]! }, { name: 'k', source: 's' });
        assert.deepEqual(fromFlagd('k', toFlagd(f), { source: 's' }), f);
      },
    ),
  );
});
