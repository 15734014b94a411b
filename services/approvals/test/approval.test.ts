// How a stored request reads at a moment: a PENDING request past its deadline reads as EXPIRED
// (finalized at its deadline) before the sweeper records it, exactly as the quorum rules' stateAt
// says; any other request reads as stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { presentAt, quorumView, type RequestRecord } from '../src/domain/approval.js';
import { stateAt, type ApprovalState } from '../src/domain/quorum.js';

const EXPIRES_MS = 1_000_000;

function record(state: ApprovalState): RequestRecord {
  const finalizedAt = state === 'PENDING' ? null : new Date(EXPIRES_MS - 10);
  return {
    id: 'req-1', createdVersion: 1n, version: 2n, requester: 'alice', type: 'OTHER', priority: 1, title: 't', contentHash: Buffer.alloc(32), contentBytes: 0,
    validators: ['bob'], requiredApprovals: 1, state, labels: {}, createdAt: new Date(0), expiresAt: new Date(EXPIRES_MS), finalizedAt, votes: [],
  };
}

test('a request reads at a moment as stateAt says; an expired one is finalized at its deadline, others unchanged', () => {
  const states = fc.constantFrom<ApprovalState>('PENDING', 'APPROVED', 'REJECTED', 'EXPIRED');
  fc.assert(
    fc.property(states, fc.integer({ min: 0, max: 2 * EXPIRES_MS }), (state, nowMs) => {
      const r = record(state);
      const seen = presentAt(r, nowMs);
      assert.equal(seen.state, stateAt(quorumView(r), nowMs));
      if (seen.state !== r.state) assert.deepEqual(seen.finalizedAt, r.expiresAt);
      else assert.equal(seen, r);
    }),
  );
});
