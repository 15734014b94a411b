// The quorum rules, exhaustively for small validator sets and by random sequences for large ones.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Status } from '@gantry/kit';
import { castVote, quorumState, stateAt, type ApprovalState, type Decision, type QuorumRequest } from '../src/domain/quorum.js';

const DECISIONS: readonly Decision[] = ['APPROVE', 'REJECT', 'ABSTAIN'];
const NOW = 1_000_000;

function request(n: number, m: number, over: Partial<QuorumRequest> = {}): QuorumRequest {
  return { id: 'req-1', requester: 'alice', validators: Array.from({ length: n }, (_, i) => `v${i}`), requiredApprovals: m, state: 'PENDING', expiresAtMs: NOW + 60_000, votes: [], ...over };
}

const codeOf = (fn: () => unknown): number => {
  try {
    fn();
  } catch (err) {
    return (err as { code: number }).code;
  }
  return Status.OK;
};

/** The spec, written independently of the code: the first prefix that decides the request. */
function expectedAfter(n: number, m: number, sequence: readonly Decision[]): ApprovalState {
  let approvals = 0;
  for (let i = 0; i < sequence.length; i++) {
    if (sequence[i] === 'APPROVE') approvals++;
    const remaining = n - (i + 1);
    if (approvals >= m) return 'APPROVED';
    if (approvals + remaining < m) return 'REJECTED';
  }
  return 'PENDING';
}

/** Plays votes v0, v1, ... in order, as the store would: recorded votes and finalization stick. */
function play(n: number, m: number, sequence: readonly Decision[]): { state: ApprovalState; refusedAfterFinal: number } {
  let req = request(n, m);
  let refusedAfterFinal = 0;
  sequence.forEach((d, i) => {
    if (req.state !== 'PENDING') {
      assert.equal(codeOf(() => castVote(req, `v${i}`, d, NOW)), Status.FAILED_PRECONDITION, 'a vote after finalization is refused');
      refusedAfterFinal++;
      return;
    }
    const out = castVote(req, `v${i}`, d, NOW);
    assert.equal(out.kind, 'recorded');
    if (out.kind === 'recorded') req = { ...req, state: out.state, votes: [...req.votes, { validator: `v${i}`, decision: d }] };
  });
  return { state: req.state, refusedAfterFinal };
}

describe('quorum rules', () => {
  test('every tally of up to 8 validators: APPROVED at M approvals, REJECTED once M is out of reach', () => {
    for (let n = 1; n <= 8; n++)
      for (let m = 1; m <= n; m++)
        for (let a = 0; a <= n; a++)
          for (let r = 0; a + r <= n; r++)
            for (let ab = 0; a + r + ab <= n; ab++) {
              const expected = a >= m ? 'APPROVED' : a + (n - a - r - ab) < m ? 'REJECTED' : 'PENDING';
              assert.equal(quorumState({ approvals: a, rejections: r, abstentions: ab }, n, m), expected, `n=${n} m=${m} a=${a} r=${r} ab=${ab}`);
            }
  });

  test('every vote sequence of up to 5 validators ends as the first deciding prefix says, and later votes are refused', () => {
    for (let n = 1; n <= 5; n++)
      for (let m = 1; m <= n; m++) {
        const sequences: Decision[][] = [[]];
        for (let k = 0; k < n; k++) {
          const grown = sequences.splice(0).flatMap((s) => DECISIONS.map((d) => [...s, d]));
          sequences.push(...grown);
        }
        for (const seq of sequences) {
          const { state } = play(n, m, seq);
          assert.equal(state, expectedAfter(n, m, seq), `n=${n} m=${m} ${seq.join(',')}`);
          assert.notEqual(state, 'PENDING', 'once every validator has voted the request is decided');
        }
      }
  });

  test('random sequences over up to 40 validators follow the same rule', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 1, max: n }), fc.array(fc.constantFrom(...DECISIONS), { minLength: 0, maxLength: n }))),
        ([n, m, seq]) => {
          assert.equal(play(n, m, seq).state, expectedAfter(n, m, seq));
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('one vote per validator: the same vote again is idempotent, a different one is refused', () => {
    assert.deepEqual(castVote(request(3, 2), 'v0', 'APPROVE', NOW), { kind: 'recorded', state: 'PENDING' });
    const voted = request(3, 2, { votes: [{ validator: 'v0', decision: 'APPROVE' }] });
    assert.deepEqual(castVote(voted, 'v0', 'APPROVE', NOW), { kind: 'duplicate', state: 'PENDING' });
    assert.equal(codeOf(() => castVote(voted, 'v0', 'REJECT', NOW)), Status.ALREADY_EXISTS);
    // The vote that finalized a request can be retried and still answers "duplicate".
    const approved = request(1, 1, { state: 'APPROVED', votes: [{ validator: 'v0', decision: 'APPROVE' }] });
    assert.deepEqual(castVote(approved, 'v0', 'APPROVE', NOW), { kind: 'duplicate', state: 'APPROVED' });
  });

  test('requesters and outsiders cannot vote', () => {
    assert.equal(codeOf(() => castVote(request(3, 2, { validators: ['alice', 'v1', 'v2'] }), 'alice', 'APPROVE', NOW)), Status.PERMISSION_DENIED);
    assert.equal(codeOf(() => castVote(request(3, 2), 'mallory', 'APPROVE', NOW)), Status.PERMISSION_DENIED);
  });

  test('the deadline expires a pending request, and terminal states never change', () => {
    const pending = request(3, 2);
    assert.equal(stateAt(pending, pending.expiresAtMs - 1), 'PENDING');
    assert.equal(stateAt(pending, pending.expiresAtMs), 'EXPIRED');
    assert.deepEqual(castVote(pending, 'v0', 'APPROVE', pending.expiresAtMs), { kind: 'expired' });
    for (const state of ['APPROVED', 'REJECTED', 'EXPIRED'] as const) {
      const done = request(3, 2, { state });
      assert.equal(stateAt(done, done.expiresAtMs + 1), state);
      assert.equal(codeOf(() => castVote(done, 'v1', 'APPROVE', NOW)), Status.FAILED_PRECONDITION);
    }
  });
});
