// `gantry approvals` against a real `gantry serve --target=approvals` process: a request from
// submission to APPROVED with votes cast as different people (--as mints their dev tokens), a
// live `watch` and `pending` that see it happen, and refusals that say why.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { repoRoot, runGantry, startGantry, type GantryServer } from '../support/gantry-process.js';

type Json = Record<string, unknown>;

/** A long-running `gantry approvals ...` (watch, pending): its JSON lines as they come, and a stop. */
function follow(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'services/gantry/src/main.ts'), 'approvals', ...args], { cwd: repoRoot, env: { ...process.env, ...env } });
  const lines: Json[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line) as Json));
  return {
    lines,
    /** Resolves once a line satisfies `match`; fails after 30 s with what arrived. */
    async waitFor(match: (l: Json) => boolean): Promise<Json> {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const hit = lines.find(match);
        if (hit) return hit;
        if (Date.now() > deadline) assert.fail(`no matching line within 30 s; got ${JSON.stringify(lines)}; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: () => child.kill('SIGTERM'),
  };
}

describe('gantry approvals: a 2-of-3 request from submission to approved, against gantry serve --target=approvals', () => {
  let server: GantryServer;
  let id: string;
  const addr = () => ['--address', `127.0.0.1:${server.port}`];
  const approvals = (args: string[]) => runGantry(['approvals', ...args, ...addr()], server.env);
  async function json(args: string[]): Promise<Json> {
    const res = await approvals([...args, '--json']);
    assert.equal(res.code, 0, `gantry approvals ${args.join(' ')} failed:\n${res.stderr}`);
    return JSON.parse(res.stdout) as Json;
  }

  before(async () => {
    server = await startGantry('approvals');
  });
  after(async () => {
    await server?.stop();
  });

  test('submit, then pending, votes, watch and status follow the request to APPROVED', async () => {
    const submitted = await json(['submit', '--as', 'alice', '--validators', 'bob,carol,dave', '--required', '2', '--title', 'raise the limit', '--type', 'parameter-change', '--priority', 'high', '--ttl', '1h', '--label', 'team=payments', 'new limit: 5000']);
    id = submitted.approvalId as string;
    assert.equal(submitted.state, 'pending');
    assert.equal(submitted.requester, 'alice');
    assert.equal(submitted.priority, 'high');
    assert.deepEqual(submitted.labels, { team: 'payments' });

    const pending = follow(['pending', '--as', 'bob', '--json', ...addr()], server.env);
    const watch = follow(['watch', '--id', id, '--from', String(submitted.version), '--json', ...addr()], server.env);
    try {
      await pending.waitFor((l) => l.change === 'added' && (l.approval as Json).approvalId === id);

      const bob = await json(['vote', '--as', 'bob', id, 'approve', '--reason', 'looks right']);
      assert.equal(bob.duplicate, false);
      assert.equal((bob.approval as Json).state, 'pending');
      await pending.waitFor((l) => l.change === 'removed' && (l.approval as Json).approvalId === id);

      const carol = await json(['vote', '--as', 'carol', id, 'approve']);
      assert.equal((carol.approval as Json).state, 'approved');

      const finalized = await watch.waitFor((l) => l.type === 'finalized');
      assert.equal((finalized.approval as Json).state, 'approved');
      assert.ok(watch.lines.some((l) => l.type === 'voted'), 'the watch saw the first vote too');
    } finally {
      pending.stop();
      watch.stop();
    }

    const status = await json(['status', id]);
    assert.deepEqual(status.tally, { approvals: 2, rejections: 0, abstentions: 0, outstanding: 1 });
    assert.deepEqual((status.votes as Json[]).map((v) => [v.validator, v.decision]), [['bob', 'approve'], ['carol', 'approve']]);
    const human = await approvals(['status', id]);
    assert.match(human.stdout, new RegExp(`^${id}\\tapproved\\t2/2 of 3\\tparameter_change\\thigh\\traise the limit`));
  });

  test('list filters by state and validator', async () => {
    const res = await approvals(['list', '--state', 'approved', '--validator', 'dave', '--json']);
    assert.equal(res.code, 0, res.stderr);
    const ids = res.stdout.trim().split('\n').map((l) => (JSON.parse(l) as Json).approvalId);
    assert.ok(ids.includes(id));
    const none = await approvals(['list', '--state', 'rejected', '--json']);
    assert.equal(none.stdout.trim(), '');
  });

  test('refusals exit non-zero and say why: a vote after the decision, a requester voting, a bad decision word', async () => {
    const late = await approvals(['vote', '--as', 'dave', id, 'reject']);
    assert.notEqual(late.code, 0);
    assert.match(late.stderr, /FAILED_PRECONDITION: .*already APPROVED; votes are closed/);
    const own = await approvals(['submit', '--as', 'erin', '--validators', 'erin,frank', '--required', '1', 'x', '--json']);
    const ownId = (JSON.parse(own.stdout) as Json).approvalId as string;
    const self = await approvals(['vote', '--as', 'erin', ownId, 'approve']);
    assert.match(self.stderr, /PERMISSION_DENIED: .*cannot vote/);
    const word = await approvals(['vote', '--as', 'bob', id, 'yes']);
    assert.notEqual(word.code, 0);
    assert.match(word.stderr, /<decision> must be one of approve, reject, abstain/);
  });
});
