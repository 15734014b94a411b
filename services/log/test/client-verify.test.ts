import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  ZERO_HASH,
  checkpointBody,
  entryHash,
  entryLeafHash,
  verifierKeyString,
  verifyCheckpoint,
  verifyCheckpointConsistency,
  verifyEntryHash,
  verifyEntryInclusion,
  type Checkpoint,
  type ReceivedEntry,
} from '../src/client/index.js';
import { ed25519PublicKeyRaw, signNote } from '../src/domain/checkpoint.js';
import { CompactRange, buildProof, consistencyProofPlan, inclusionProofPlan, type NodeLookup } from '../src/domain/merkle.js';

const KEY_NAME = 'log.gantry.example';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKeyString(KEY_NAME, ed25519PublicKeyRaw(privateKey));

/** A miniature honest server: entries, stored perfect nodes, and a signed checkpoint at each size. */
function fakeServer(partition: string, count: number, payload = (i: number) => `entry ${i}`) {
  const entries: ReceivedEntry[] = [];
  const nodes = new Map<string, Buffer>();
  const notes: string[] = [];
  const range = CompactRange.empty();
  let prevHash: Buffer = ZERO_HASH;
  const sign = () => signNote(checkpointBody(`${KEY_NAME}/${partition}`, range.size, range.root()), KEY_NAME, privateKey);
  notes.push(sign());
  for (let i = 0; i < count; i++) {
    const timestamp = new Date(1_700_000_000_000 + i);
    const fields = { partition, seq: BigInt(i), timestampMs: BigInt(timestamp.getTime()), data: Buffer.from(payload(i)), prevHash };
    const hash = entryHash(fields);
    entries.push({ partition, seq: fields.seq, timestamp, data: fields.data, prevHash, hash });
    for (const node of range.append(entryLeafHash(fields))) nodes.set(`${node.level}/${node.index}`, node.hash);
    notes.push(sign());
    prevHash = hash;
  }
  const lookup: NodeLookup = (level, index) => nodes.get(`${level}/${index}`)!;
  return {
    entries,
    checkpoint: (size: number) => notes[size]!,
    inclusionProof: (seq: number, treeSize: number) => ({ seq: BigInt(seq), treeSize: BigInt(treeSize), hashes: buildProof(inclusionProofPlan(seq, treeSize), lookup) }),
    consistencyProof: (oldSize: number, newSize: number) => ({ oldSize: BigInt(oldSize), newSize: BigInt(newSize), hashes: buildProof(consistencyProofPlan(oldSize, newSize), lookup) }),
  };
}

describe('client-side verification without trusting the server', () => {
  const server = fakeServer('orders', 12);
  const head5 = verifyCheckpoint(server.checkpoint(5), VKEY, { partition: 'orders' });
  const head12 = verifyCheckpoint(server.checkpoint(12), VKEY, { origin: `${KEY_NAME}/orders` });

  test('a verified checkpoint, an inclusion proof recomputed from the entry, and a consistency proof all check out', () => {
    assert.equal(head12.size, 12n);
    for (const entry of server.entries) {
      assert.ok(verifyEntryHash(entry), `hash of ${entry.seq}`);
      assert.ok(verifyEntryInclusion(entry, server.inclusionProof(Number(entry.seq), 12), head12), `inclusion of ${entry.seq}`);
    }
    assert.ok(verifyCheckpointConsistency(head5, head12, server.consistencyProof(5, 12)));
    assert.ok(verifyCheckpointConsistency(head12, head12, []));
  });

  test('a checkpoint of another partition signed by the same key is refused when the partition is given', () => {
    const other = fakeServer('payments', 3);
    assert.throws(() => verifyCheckpoint(other.checkpoint(3), VKEY, { partition: 'orders' }), /not for partition "orders"/);
    assert.throws(() => verifyCheckpoint(other.checkpoint(3), VKEY, { origin: `${KEY_NAME}/orders` }), /expected/);
  });

  test('an altered entry fails inclusion even with a genuine proof (the leaf hash is recomputed, never taken from the server)', () => {
    const entry = server.entries[7]!;
    const proof = server.inclusionProof(7, 12);
    const altered = { ...entry, data: Buffer.from('entry 7, altered') };
    assert.equal(verifyEntryInclusion(altered, proof, head12), false);
    // Even with the hash field made to match the altered fields, the tree does not contain it.
    assert.equal(verifyEntryInclusion({ ...altered, hash: entryHash({ ...altered, timestampMs: BigInt(entry.timestamp!.getTime()) }) }, proof, head12), false);
    assert.equal(verifyEntryInclusion({ ...entry, timestamp: new Date(entry.timestamp!.getTime() + 1) }, proof, head12), false);
  });

  test('an entry whose hash field does not match its fields is refused', () => {
    const entry = { ...server.entries[3]!, hash: Buffer.alloc(32) };
    assert.equal(verifyEntryHash(entry), false);
    assert.equal(verifyEntryInclusion(entry, server.inclusionProof(3, 12), head12), false);
  });

  test('an entry without a timestamp is refused, not hashed with a made-up one', () => {
    assert.equal(verifyEntryHash({ ...server.entries[0]!, timestamp: undefined }), false);
    assert.equal(verifyEntryInclusion({ ...server.entries[0]!, timestamp: undefined }, server.inclusionProof(0, 12), head12), false);
  });

  test('a proof for another tree size, another seq or another partition is refused', () => {
    const entry = server.entries[2]!;
    assert.equal(verifyEntryInclusion(entry, server.inclusionProof(2, 5), head12), false);
    assert.equal(verifyEntryInclusion(entry, server.inclusionProof(3, 12), head12), false);
    const otherPartition: Checkpoint = { ...head12, origin: `${KEY_NAME}/payments` };
    assert.equal(verifyEntryInclusion(entry, server.inclusionProof(2, 12), otherPartition), false);
  });

  test('a forked history (same size 5, different entries) is not consistent with the honest head', () => {
    const fork = fakeServer('orders', 12, (i) => (i === 3 ? 'rewritten' : `entry ${i}`));
    const forkHead5 = verifyCheckpoint(fork.checkpoint(5), VKEY, { partition: 'orders' });
    assert.notDeepEqual(forkHead5.rootHash, head5.rootHash);
    assert.equal(verifyCheckpointConsistency(forkHead5, head12, server.consistencyProof(5, 12)), false);
    assert.equal(verifyCheckpointConsistency(forkHead5, head12, fork.consistencyProof(5, 12)), false);
  });

  test('a consistency proof labelled with other sizes, or between different origins, is refused', () => {
    assert.equal(verifyCheckpointConsistency(head5, head12, server.consistencyProof(6, 12)), false);
    assert.equal(verifyCheckpointConsistency(head12, head5, server.consistencyProof(5, 12)), false);
    assert.equal(verifyCheckpointConsistency(head5, { ...head12, origin: `${KEY_NAME}/payments` }, server.consistencyProof(5, 12)), false);
  });

  test('sizes beyond 2^53 are refused rather than rounded', () => {
    const huge: Checkpoint = { ...head12, size: 2n ** 53n + 1n };
    assert.equal(verifyEntryInclusion(server.entries[0]!, { ...server.inclusionProof(0, 12), treeSize: huge.size }, huge), false);
    assert.equal(verifyCheckpointConsistency(head5, huge, server.consistencyProof(5, 12).hashes), false);
  });
});
