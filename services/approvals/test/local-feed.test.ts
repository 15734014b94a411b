// Changes committed by this process reach its watches straight from the commit (the feed is handed
// them, encoded once for every watcher); a watch resumed from the history reads the same changes
// back from the database. Both must send exactly the same messages.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { APPROVE, BOOKMARK, REJECT, newRequest, rpc, startApprovalsPlatform, watch, type ApprovalsPlatform } from './support.js';

requirePostgresInCi('the approvals local feed tests');

for (const engine of engines()) {
  describe(`approvals watches fed from local commits on ${engine.name}`, { skip: engine.skip }, () => {
    let p: ApprovalsPlatform;
    before(async () => {
      p = await startApprovalsPlatform(engine.name);
    });
    after(async () => p?.close());

    test('live watchers and a watch resumed from the history receive identical changes, each once, in order', async () => {
      // A change first, so the watches' bookmark is a version to resume from (0 means "from now").
      await rpc(p).submit(newRequest({ validators: ['lf-x'], m: 1 }));
      const live = [watch(p, {}), watch(p, {}), watch(p, {})];
      const [bookmark] = await live[0]!.count(1);
      await Promise.all(live.slice(1).map((w) => w.count(1)));
      const vs = ['lf-a', 'lf-b', 'lf-c'];
      const r = await rpc(p).submit(newRequest({ validators: vs, m: 2 }));
      await rpc(p, 'lf-a').vote(r.approvalId, APPROVE, 'fine');
      await rpc(p, 'lf-b').vote(r.approvalId, REJECT);
      await rpc(p, 'lf-c').vote(r.approvalId, APPROVE);
      // The bookmark, then CREATED, VOTED, VOTED, FINALIZED.
      const seen = await Promise.all(live.map(async (w) => (await w.count(5)).slice(1)));
      const resumed = watch(p, { fromVersion: bookmark!.version });
      const readBack = await resumed.count(4);
      for (const w of [...live, resumed]) w.cancel();
      assert.deepEqual(readBack.map((m) => m.approval!.votes.length), [0, 1, 2, 3]);
      assert.deepEqual(readBack.map((m) => m.version), [r.version, r.version + 1n, r.version + 2n, r.version + 3n]);
      for (const s of seen) assert.deepEqual(s, readBack);
      for (const w of live) assert.equal(w.messages.filter((m) => m.type !== BOOKMARK).length, 4, 'each change once');
    });
  });
}
