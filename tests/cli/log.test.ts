// `gantry log` against a real `gantry serve --target=log` process: appends name their author, read
// prints it, `proof` proves it on this machine, and an append to an audit trail with a token is
// refused with a message that says why and what to do instead.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runGantry, startGantry, type GantryServer } from '../support/gantry-process.js';

/** The subject of the dev token the CLI mints when given none. */
const CLI_SUBJECT = 'gantry-cli';

describe('gantry log: authors and audit trails against gantry serve --target=log', () => {
  let server: GantryServer;
  const log = (args: string[]) => runGantry(['log', ...args, '--address', `127.0.0.1:${server.port}`], server.env);

  before(async () => {
    server = await startGantry('log');
  });
  after(async () => {
    await server?.stop();
  });

  test('append names the author, read prints it before the data, and proof --json proves it in the signed tree', async () => {
    const appended = await log(['append', 'orders', 'hello world']);
    assert.equal(appended.code, 0, appended.stderr);
    assert.match(appended.stdout, new RegExp(`^appended orders seq 0 hash [0-9a-f]{64} by ${CLI_SUBJECT}\\n$`));

    const read = await log(['read', 'orders']);
    assert.equal(read.code, 0, read.stderr);
    assert.match(read.stdout, new RegExp(`^0\\t\\S+Z\\t[0-9a-f]{16}\\t${CLI_SUBJECT}\\thello world\\n$`));

    const proof = await log(['proof', 'orders', '0', '--json']);
    assert.equal(proof.code, 0, proof.stderr);
    const proven = JSON.parse(proof.stdout) as Record<string, unknown>;
    assert.deepEqual([proven.author, proven.included], [CLI_SUBJECT, true]);
  });

  test('an append to audit.settlement with a token exits non-zero with PERMISSION_DENIED saying only the settlement service writes it', async () => {
    const refused = await log(['append', 'audit.settlement', '{"forged":true}']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /only the settlement service appends to it, by its workload certificate/);
    assert.equal(refused.stdout, '');
  });
});
