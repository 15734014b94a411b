// `gantry flags` against a real embedded `gantry serve --target=all` (what `npm start` runs): a flag
// set, read, listed, replaced under expected_version and deleted, human-readable and --json, and
// invalid flags refused with a non-zero exit and a message that says what to fix.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runGantry, startGantry, type GantryServer } from '../support/gantry-process.js';

type Json = Record<string, unknown>;

describe('gantry flags: set, get, list and delete against gantry serve --target=all', () => {
  let server: GantryServer;
  const flags = (args: string[]) => runGantry(['flags', ...args, '--address', `127.0.0.1:${server.port}`], server.env);
  async function json(args: string[]): Promise<Json> {
    const res = await flags([...args, '--json']);
    assert.equal(res.code, 0, `gantry flags ${args.join(' ')} failed:\n${res.stderr}`);
    return JSON.parse(res.stdout) as Json;
  }

  before(async () => {
    server = await startGantry('all');
  });
  after(async () => {
    await server?.stop();
  });

  test('an empty store lists no flags and says how to create one', async () => {
    const res = await flags(['list']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^no flags \(store version 0\); create one with: gantry flags set <key> --bool true\n$/);
    assert.deepEqual(await json(['list']), { version: '0', flags: [] });
  });

  test('set --bool creates a boolean flag; get prints it; set --variants replaces it under --expected-version', async () => {
    const created = await flags(['set', 'webhooks.delivery.paused', '--bool', 'true']);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout, 'created webhooks.delivery.paused at version 1: ENABLED, default on (on=true off=false)\n');

    const got = await json(['get', 'webhooks.delivery.paused']);
    assert.ok(typeof got.updatedAt === 'string');
    assert.deepEqual({ ...got, updatedAt: undefined }, {
      key: 'webhooks.delivery.paused', state: 'ENABLED', variants: { on: true, off: false }, defaultVariant: 'on', targeting: null, metadata: {}, source: 'principal:gantry-cli', version: '1', updatedAt: undefined,
    });
    const human = await flags(['get', 'webhooks.delivery.paused']);
    assert.match(human.stdout, /^key +webhooks\.delivery\.paused\nstate +ENABLED\ndefault +on\nvariants +on=true off=false\n/);

    const replaced = await json([
      'set', 'webhooks.delivery.paused', '--variants', '{"paused":true,"running":false}', '--default', 'running', '--state', 'disabled',
      '--targeting', '{"fractional":[["paused",10],["running",90]]}', '--metadata', '{"owner":"payments"}', '--expected-version', '1',
    ]);
    assert.equal(replaced.created, false);
    const flag = replaced.flag as Json;
    assert.deepEqual([flag.state, flag.defaultVariant, flag.version, flag.metadata], ['DISABLED', 'running', '2', { owner: 'payments' }]);
    assert.deepEqual(flag.targeting, { fractional: [['paused', 10], ['running', 90]] });
  });

  test('list prints every flag in key order with the store version', async () => {
    assert.equal((await flags(['set', 'approvals.quorum', '--variants', '{"two":2,"three":3}', '--default', 'two'])).code, 0);
    const list = await json(['list']);
    assert.equal(list.version, '3');
    assert.deepEqual((list.flags as Json[]).map((f) => f.key), ['approvals.quorum', 'webhooks.delivery.paused']);
    const human = await flags(['list']);
    assert.equal(human.code, 0, human.stderr);
    const lines = human.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^KEY +STATE +DEFAULT +TARGETING +VERSION +VARIANTS$/);
    assert.match(lines[1]!, /^approvals\.quorum +ENABLED +two +- +3 +two=2 three=3$/);
    assert.match(lines[2]!, /^webhooks\.delivery\.paused +DISABLED +running +yes +2 +paused=true running=false$/);
    assert.equal(lines[3], '2 flags at store version 3');
  });

  test('invalid flags exit non-zero with a message saying what to fix, and change nothing', async () => {
    // Each a process of its own; the validation rules themselves are tested at the API (services/kit/test/flags.test.ts).
    const cases: [string[], RegExp][] = [
      [['set', 'mixed', '--variants', '{"on":true,"off":"no"}', '--default', 'on'], /^gantry: INVALID_ARGUMENT: flag\.variants\.off: is a string but other variants are booleans/],
      [['set', 'badrule', '--bool', 'true', '--targeting', '{"no_such_op":[1]}'], /^gantry: INVALID_ARGUMENT: flag\.targeting: flagd refuses the flag: .*no_such_op/],
      [['set', 'badjson', '--variants', '{on:true}', '--default', 'on'], /^gantry: --variants is not valid JSON .*expected an object such as/],
      [['set', 'webhooks.delivery.paused', '--bool', 'false', '--expected-version', '1'], /^gantry: ABORTED: flag webhooks\.delivery\.paused is at version 2, not 1: re-read it and retry/],
      [['get', 'no.such.flag'], /^gantry: NOT_FOUND: flag no\.such\.flag does not exist; list the flags with ListFlags \(gantry flags list\)/],
    ];
    const results = await Promise.all(cases.map(([args]) => flags(args)));
    cases.forEach(([args, message], i) => {
      const res = results[i]!;
      assert.notEqual(res.code, 0, `gantry flags ${args.join(' ')} should fail`);
      assert.equal(res.stdout, '');
      assert.match(res.stderr, message);
    });
    assert.equal((await json(['list'])).version, '3');
  });

  test('delete removes a flag; deleting it again says there was nothing to delete', async () => {
    const deleted = await flags(['delete', 'approvals.quorum']);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, 'deleted approvals.quorum\n');
    assert.deepEqual(await json(['delete', 'approvals.quorum']), { key: 'approvals.quorum', existed: false });
    assert.deepEqual(((await json(['list'])).flags as Json[]).map((f) => f.key), ['webhooks.delivery.paused']);
  });

  test('a server that is not there gets a hint to start one', async () => {
    const res = await runGantry(['flags', 'list', '--address', '127.0.0.1:1'], server.env);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /UNAVAILABLE: .*is gantry serving at 127\.0\.0\.1:1\? Start it with 'gantry serve', or pass --address/);
  });
});
