import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CompactRange,
  EMPTY_ROOT,
  buildProof,
  consistencyProofPlan,
  hashChildren,
  hashLeaf,
  inclusionProofPlan,
  nodesNeeded,
  perfectSubtrees,
  rangeHash,
  rootFromInclusionProof,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
  type NodeLookup,
  type NodeRef,
} from '../src/domain/merkle.js';

const h = (hex: string): Buffer => Buffer.from(hex, 'hex');

// Reference vectors of RFC 6962 trees, from transparency-dev/merkle proof/verify_test.go (the same
// set as certificate-transparency-go's merkletree tests): 8 leaves, the roots of the trees of the
// first 1..8 of them, and published inclusion and consistency proofs. Leaf indices there are
// 1-based ({leaf: 1} is index 0); they are converted to 0-based here.
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(h);
const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(h);
const INCLUSION_PROOFS: { index: number; size: number; proof: Buffer[] }[] = [
  { index: 0, size: 1, proof: [] },
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ].map(h),
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ].map(h),
  },
  { index: 2, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'].map(h) },
  {
    index: 1,
    size: 5,
    proof: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ].map(h),
  },
];
const CONSISTENCY_PROOFS: { oldSize: number; newSize: number; proof: Buffer[] }[] = [
  { oldSize: 1, newSize: 1, proof: [] },
  {
    oldSize: 1,
    newSize: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ].map(h),
  },
  {
    oldSize: 6,
    newSize: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ].map(h),
  },
  {
    oldSize: 2,
    newSize: 5,
    proof: ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'].map(h),
  },
  {
    oldSize: 6,
    newSize: 7,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ].map(h),
  },
];

/** A node store fed by CompactRange.append, the way the server persists nodes. */
function buildStore(leafHashes: Buffer[]): { lookup: NodeLookup; ranges: CompactRange[] } {
  const nodes = new Map<string, Buffer>();
  const ranges: CompactRange[] = [CompactRange.empty()];
  const range = CompactRange.empty();
  for (const leaf of leafHashes) {
    for (const node of range.append(leaf)) {
      const key = `${node.level}/${node.index}`;
      assert.ok(!nodes.has(key), `node ${key} is created once`);
      nodes.set(key, node.hash);
    }
    ranges.push(range.clone());
  }
  const lookup: NodeLookup = (level, index) => {
    const hash = nodes.get(`${level}/${index}`);
    if (!hash) throw new Error(`node ${level}/${index} not stored`);
    return hash;
  };
  return { lookup, ranges };
}

function leafHashesOf(count: number, seed = 0): Buffer[] {
  return Array.from({ length: count }, (_, i) => hashLeaf(Buffer.from(`leaf ${seed}/${i}`)));
}

function flipBit(proof: readonly Buffer[], item: number, bit: number): Buffer[] {
  return proof.map((p, i) => {
    if (i !== item) return p;
    const copy = Buffer.from(p);
    copy[bit >> 3]! ^= 1 << (bit & 7);
    return copy;
  });
}

describe('RFC 6962 hashing', () => {
  test('hashes match the transparency-dev/merkle rfc6962 vectors (empty tree, empty leaf, leaf, node)', () => {
    assert.equal(EMPTY_ROOT.toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(rootFromLeafHashes([]).toString('hex'), EMPTY_ROOT.toString('hex'));
    assert.equal(hashLeaf(Buffer.alloc(0)).toString('hex'), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    assert.equal(hashLeaf(Buffer.from('L123456')).toString('hex'), '395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56');
    assert.equal(hashChildren(Buffer.from('N123'), Buffer.from('N456')).toString('hex'), 'aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb');
  });

  test('roots of the 8 reference leaves match the published roots for sizes 1..8, by MTH and by CompactRange', () => {
    const leafHashes = LEAVES.map(hashLeaf);
    const range = CompactRange.empty();
    for (let size = 1; size <= 8; size++) {
      range.append(leafHashes[size - 1]!);
      assert.deepEqual(rootFromLeafHashes(leafHashes.slice(0, size)), ROOTS[size - 1], `MTH of size ${size}`);
      assert.deepEqual(range.root(), ROOTS[size - 1], `CompactRange root of size ${size}`);
    }
  });
});

describe('RFC 6962 published proofs', () => {
  const leafHashes = LEAVES.map(hashLeaf);
  const { lookup } = buildStore(leafHashes);

  for (const v of INCLUSION_PROOFS) {
    test(`inclusion proof of leaf ${v.index} in size ${v.size}: built from stored nodes it equals the published one and verifies`, () => {
      assert.deepEqual(buildProof(inclusionProofPlan(v.index, v.size), lookup), v.proof);
      const root = ROOTS[v.size - 1]!;
      assert.deepEqual(rootFromInclusionProof(leafHashes[v.index]!, v.index, v.size, v.proof), root);
      assert.ok(verifyInclusion(leafHashes[v.index]!, v.index, v.size, v.proof, root));
    });

    test(`inclusion proof of leaf ${v.index} in size ${v.size}: every corruption the reference suite tries is refused`, () => {
      const root = ROOTS[v.size - 1]!;
      const leaf = leafHashes[v.index]!;
      const probes: [string, number, number, Buffer[], Buffer, Buffer][] = [
        ['index - 1', v.index - 1, v.size, v.proof, root, leaf],
        ['index + 1', v.index + 1, v.size, v.proof, root, leaf],
        ['index ^ 2', v.index ^ 2, v.size, v.proof, root, leaf],
        ['size * 2', v.index, v.size * 2, v.proof, root, leaf],
        ['size / 2', v.index, Math.floor(v.size / 2), v.proof, root, leaf],
        ['wrong leaf', v.index, v.size, v.proof, root, hashLeaf(Buffer.from('WrongLeaf'))],
        ['empty root', v.index, v.size, v.proof, EMPTY_ROOT, leaf],
        ['trailing garbage', v.index, v.size, [...v.proof, Buffer.alloc(0)], root, leaf],
        ['trailing root', v.index, v.size, [...v.proof, root], root, leaf],
        ['preceding root', v.index, v.size, [root, ...v.proof], root, leaf],
      ];
      for (let i = 0; i < v.proof.length; i++) probes.push([`proof[${i}] bit 3 flipped`, v.index, v.size, flipBit(v.proof, i, 3), root, leaf]);
      if (v.proof.length > 0) probes.push(['removed component', v.index, v.size, v.proof.slice(0, -1), root, leaf]);
      for (const [desc, index, size, proof, r, l] of probes) assert.equal(verifyInclusion(l, index, size, proof, r), false, desc);
    });
  }

  for (const v of CONSISTENCY_PROOFS) {
    test(`consistency proof ${v.oldSize} -> ${v.newSize}: built from stored nodes it equals the published one and verifies`, () => {
      assert.deepEqual(buildProof(consistencyProofPlan(v.oldSize, v.newSize), lookup), v.proof);
      assert.ok(verifyConsistency(v.oldSize, v.newSize, v.proof, ROOTS[v.oldSize - 1]!, ROOTS[v.newSize - 1]!));
    });

    if (v.proof.length > 0) {
      test(`consistency proof ${v.oldSize} -> ${v.newSize}: every corruption the reference suite tries is refused`, () => {
        const r1 = ROOTS[v.oldSize - 1]!;
        const r2 = ROOTS[v.newSize - 1]!;
        const probes: [string, number, number, Buffer[], Buffer, Buffer][] = [
          ['old - 1', v.oldSize - 1, v.newSize, v.proof, r1, r2],
          ['old + 1', v.oldSize + 1, v.newSize, v.proof, r1, r2],
          ['old ^ 2', v.oldSize ^ 2, v.newSize, v.proof, r1, r2],
          ['new * 2', v.oldSize, v.newSize * 2, v.proof, r1, r2],
          ['new / 2', v.oldSize, Math.floor(v.newSize / 2), v.proof, r1, r2],
          ['wrong old root', v.oldSize, v.newSize, v.proof, EMPTY_ROOT, r2],
          ['wrong new root', v.oldSize, v.newSize, v.proof, r1, EMPTY_ROOT],
          ['swapped roots', v.oldSize, v.newSize, v.proof, r2, r1],
          ['empty proof', v.oldSize, v.newSize, [], r1, r2],
          ['trailing old root', v.oldSize, v.newSize, [...v.proof, r1], r1, r2],
          ['preceding new root', v.oldSize, v.newSize, [r2, ...v.proof], r1, r2],
          ['preceding proof[0]', v.oldSize, v.newSize, [v.proof[0]!, ...v.proof], r1, r2],
          ['truncated', v.oldSize, v.newSize, v.proof.slice(0, -1), r1, r2],
        ];
        for (let i = 0; i < v.proof.length; i++) probes.push([`proof[${i}] bit 4 flipped`, v.oldSize, v.newSize, flipBit(v.proof, i, 4), r1, r2]);
        for (const [desc, o, n, proof, a, b] of probes) assert.equal(verifyConsistency(o, n, proof, a, b), false, desc);
      });
    }
  }

  test('degenerate consistency: equal sizes need equal roots and no proof; size 0 needs the empty root; shrinking is refused', () => {
    const r = ROOTS[2]!;
    assert.ok(verifyConsistency(3, 3, [], r, r));
    assert.equal(verifyConsistency(3, 3, [], r, ROOTS[3]!), false);
    assert.equal(verifyConsistency(3, 3, [r], r, r), false);
    assert.ok(verifyConsistency(0, 5, [], EMPTY_ROOT, ROOTS[4]!));
    assert.equal(verifyConsistency(0, 5, [], r, ROOTS[4]!), false);
    assert.equal(verifyConsistency(5, 3, [], ROOTS[4]!, r), false);
    assert.deepEqual(consistencyProofPlan(0, 5), []);
    assert.deepEqual(consistencyProofPlan(5, 5), []);
    assert.throws(() => consistencyProofPlan(6, 5), RangeError);
  });

  test('malformed inclusion input is refused: index >= size, unsafe integers, short hashes; rootFromInclusionProof says why', () => {
    const leaf = leafHashes[0]!;
    assert.equal(verifyInclusion(leaf, 1, 1, [], ROOTS[0]!), false);
    assert.equal(verifyInclusion(leaf, 0, 0, [], EMPTY_ROOT), false);
    assert.equal(verifyInclusion(leaf, -1, 1, [], ROOTS[0]!), false);
    assert.equal(verifyInclusion(leaf, 0, 2 ** 53, [], ROOTS[0]!), false);
    assert.equal(verifyInclusion(leaf.subarray(0, 31), 0, 1, [], ROOTS[0]!), false);
    assert.throws(() => rootFromInclusionProof(leaf, 1, 1, []), /index 1 is not below tree size 1/);
    assert.throws(() => rootFromInclusionProof(leaf, 0, 8, []), /has 3 hashes, got 0/);
    assert.throws(() => inclusionProofPlan(8, 8), RangeError);
  });
});

describe('perfect-subtree storage model', () => {
  test('ranges split into stored perfect subtrees left to right, and unaligned ranges are refused', () => {
    assert.deepEqual(perfectSubtrees(0, 7), [
      { level: 2, index: 0 },
      { level: 1, index: 2 },
      { level: 0, index: 6 },
    ]);
    assert.deepEqual(perfectSubtrees(8, 13), [
      { level: 2, index: 2 },
      { level: 0, index: 12 },
    ]);
    assert.deepEqual(perfectSubtrees(4, 8), [{ level: 2, index: 1 }]);
    assert.throws(() => perfectSubtrees(1, 3), /not a subtree/);
    assert.throws(() => perfectSubtrees(3, 3), /empty/);
  });

  test('appending a leaf returns the leaf and every perfect node it completes, bottom-up', () => {
    const range = CompactRange.empty();
    const leaves = leafHashesOf(8);
    const created: NodeRef[][] = leaves.map((leaf) => range.append(leaf));
    assert.deepEqual(
      created.map((nodes) => nodes.map((n) => `${n.level}/${n.index}`)),
      [['0/0'], ['0/1', '1/0'], ['0/2'], ['0/3', '1/1', '2/0'], ['0/4'], ['0/5', '1/2'], ['0/6'], ['0/7', '1/3', '2/1', '3/0']],
    );
    assert.deepEqual(created[7]!.at(-1)!.hash, rootFromLeafHashes(leaves));
  });

  test('nodesNeeded lists each stored node a plan reads once', () => {
    const plan = [...inclusionProofPlan(0, 13), ...consistencyProofPlan(5, 13)];
    const needed = nodesNeeded(plan);
    const keys = needed.map((n) => `${n.level}/${n.index}`);
    assert.equal(new Set(keys).size, keys.length);
    for (const range of plan) for (const node of perfectSubtrees(range.begin, range.end)) assert.ok(keys.includes(`${node.level}/${node.index}`));
  });

  test('uint64 bigints are accepted where the store passes them and refused beyond 2^53 - 1', () => {
    assert.deepEqual(inclusionProofPlan(5n, 8n), inclusionProofPlan(5, 8));
    assert.deepEqual(consistencyProofPlan(6n, 8n), consistencyProofPlan(6, 8));
    assert.equal(CompactRange.deserialize(0n, Buffer.alloc(0)).size, 0);
    assert.throws(() => inclusionProofPlan(0n, 2n ** 53n), RangeError);
    assert.throws(() => CompactRange.deserialize(-1n, Buffer.alloc(0)), RangeError);
  });

  test('deserialize refuses a buffer whose length does not match the size', () => {
    const range = CompactRange.empty();
    for (const leaf of leafHashesOf(5)) range.append(leaf);
    assert.throws(() => CompactRange.deserialize(5, range.serialize().subarray(1)), RangeError);
    assert.throws(() => CompactRange.deserialize(7, range.serialize()), RangeError); // 7 needs 3 hashes, 5 has 2
    assert.throws(() => range.append(Buffer.alloc(31)), RangeError);
  });
});

describe('properties over random trees (fast-check)', () => {
  const MAX_SIZE = 300;
  const leaves = leafHashesOf(MAX_SIZE, 1);
  const { lookup, ranges } = buildStore(leaves);
  const roots = Array.from({ length: MAX_SIZE + 1 }, (_, size) => rootFromLeafHashes(leaves.slice(0, size)));

  test('CompactRange.root() equals the reference MTH after every append, and serialize/deserialize round-trips', () => {
    for (let size = 0; size <= MAX_SIZE; size++) {
      const range = ranges[size]!;
      assert.equal(range.size, size);
      assert.deepEqual(range.root(), roots[size], `root at size ${size}`);
      const copy = CompactRange.deserialize(size, range.serialize());
      assert.deepEqual(copy.root(), roots[size]);
      assert.deepEqual(copy.serialize(), range.serialize());
      // A restored range keeps appending to the same tree.
      if (size < MAX_SIZE) assert.deepEqual((copy.append(leaves[size]!), copy.root()), roots[size + 1]);
    }
  });

  test('the range hash of any RFC 6962 range equals the MTH of its leaves', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_SIZE }), fc.nat(), (size, pick) => {
        const plan = [...inclusionProofPlan(pick % size, size), ...consistencyProofPlan((pick % size) + 1, size)];
        for (const range of plan) assert.deepEqual(rangeHash(range, lookup), rootFromLeafHashes(leaves.slice(range.begin, range.end)));
      }),
      { numRuns: 200 },
    );
  });

  test('inclusion proofs built from stored nodes verify against the reference root; a flipped bit, index or size does not', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_SIZE }), fc.nat(), fc.nat(), fc.integer({ min: 1, max: MAX_SIZE }), (size, pick, bitPick, otherSize) => {
        const index = pick % size;
        const proof = buildProof(inclusionProofPlan(index, size), lookup);
        const root = roots[size]!;
        assert.ok(verifyInclusion(leaves[index]!, index, size, proof, root));
        if (proof.length > 0) {
          const bit = bitPick % (proof.length * 256);
          assert.equal(verifyInclusion(leaves[index]!, index, size, flipBit(proof, Math.floor(bit / 256), bit % 256), root), false, 'flipped bit');
        }
        const otherIndex = (index + 1 + (bitPick % size)) % size;
        if (otherIndex !== index) assert.equal(verifyInclusion(leaves[index]!, otherIndex, size, proof, root), false, 'wrong index');
        // A claimed size is checked against that size's root: the proof must not fit another tree.
        if (otherSize !== size) assert.equal(verifyInclusion(leaves[index]!, index, otherSize, proof, roots[otherSize]!), false, 'wrong size');
      }),
      { numRuns: 300 },
    );
  });

  test('consistency proofs built from stored nodes verify between reference roots; a flipped bit or wrong size does not', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_SIZE }), fc.integer({ min: 1, max: MAX_SIZE }), fc.nat(), fc.integer({ min: 1, max: MAX_SIZE }), (a, b, bitPick, otherSize) => {
        const [oldSize, newSize] = a <= b ? [a, b] : [b, a];
        const proof = buildProof(consistencyProofPlan(oldSize, newSize), lookup);
        assert.ok(verifyConsistency(oldSize, newSize, proof, roots[oldSize]!, roots[newSize]!));
        if (proof.length > 0) {
          const bit = bitPick % (proof.length * 256);
          assert.equal(verifyConsistency(oldSize, newSize, flipBit(proof, Math.floor(bit / 256), bit % 256), roots[oldSize]!, roots[newSize]!), false, 'flipped bit');
        }
        if (otherSize !== oldSize && otherSize <= newSize) {
          assert.equal(verifyConsistency(otherSize, newSize, proof, roots[otherSize]!, roots[newSize]!), false, 'wrong old size');
        }
        if (otherSize !== newSize && otherSize >= oldSize) {
          assert.equal(verifyConsistency(oldSize, otherSize, proof, roots[oldSize]!, roots[otherSize]!), false, 'wrong new size');
        }
      }),
      { numRuns: 300 },
    );
  });

  test('a CompactRange restored at any size and appended to yields the same nodes as one built from scratch', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_SIZE - 1 }), (size) => {
        const restored = CompactRange.deserialize(size, ranges[size]!.serialize());
        const fresh = ranges[size]!.clone();
        assert.deepEqual(restored.append(leaves[size]!), fresh.append(leaves[size]!));
        assert.deepEqual(restored.nodes(), ranges[size + 1]!.nodes());
      }),
      { numRuns: 100 },
    );
  });
});
