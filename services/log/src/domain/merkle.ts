// RFC 6962 / RFC 9162 §2.1 Merkle trees over SHA-256: hashing, the server-side storage model
// (perfect subtrees), proof plans, and the client-side verification algorithms. Pure: no I/O.
//
// Sizes and indices are JavaScript numbers, not bigints: every value is asserted to be a safe
// integer (< 2^53), which no partition will reach (2^53 entries at 1 M appends/s is 285 years),
// and numbers keep the hot append path free of bigint allocation. Callers holding uint64 bigints
// convert with toTreeIndex(), which refuses anything larger; CompactRange.deserialize and the
// proof plans take bigint too and convert the same way. Bit tricks are written with arithmetic
// (x % 2, Math.floor(x / 2)) because JavaScript's bitwise operators truncate to 32 bits.
//
// Storage model: node (level, index) is the MTH of leaves [index * 2^level, (index + 1) * 2^level),
// stored once that range is complete. Every range an RFC 6962 proof needs splits into such
// perfect nodes, so the store never hashes more than O(log n) nodes to answer a proof.
import { createHash, hash } from 'node:crypto';
import { HASH_BYTES } from './entry.js';

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** The largest tree size (and leaf index + 1) this module handles: 2^53 - 1. */
export const MAX_TREE_SIZE = Number.MAX_SAFE_INTEGER;

/** MTH of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

/** A half-open leaf range [begin, end). */
export interface Range {
  begin: number;
  end: number;
}

/** A perfect subtree: leaves [index * 2^level, (index + 1) * 2^level). */
export interface NodeId {
  level: number;
  index: number;
}

/** A perfect subtree and its hash, as the store persists it. */
export interface NodeRef extends NodeId {
  hash: Buffer;
}

/** Reads a stored perfect-subtree hash; throws when the store does not have it. */
export type NodeLookup = (level: number, index: number) => Buffer;

/** RFC 6962 leaf hash: SHA-256(0x00 || data). */
export function hashLeaf(data: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest();
}

/** RFC 6962 interior node hash: SHA-256(0x01 || left || right). */
export function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  // One buffer and one-shot crypto.hash: cheaper than a Hash object for 65 bytes (entry.ts).
  const input = Buffer.allocUnsafe(1 + left.length + right.length);
  input[0] = NODE_PREFIX[0]!;
  input.set(left, 1);
  input.set(right, 1 + left.length);
  return hash('sha256', input, 'buffer');
}

function assertSize(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be an integer in [0, 2^53), got ${value}`);
}

/** Converts a uint64 (as the contract carries it) to a tree size/index; throws RangeError beyond 2^53 - 1. */
export function toTreeIndex(value: bigint | number, name = 'value'): number {
  if (typeof value === 'bigint') {
    if (value < 0n || value > BigInt(MAX_TREE_SIZE)) throw new RangeError(`${name} must be in [0, 2^53), got ${value}`);
    return Number(value);
  }
  assertSize(name, value);
  return value;
}

/** Largest power of two strictly below n (n >= 2): the split point k of RFC 6962 §2.1. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** log2(n) when n is a power of two, else -1. */
function exactLog2(n: number): number {
  let level = 0;
  for (let p = 1; p <= n; p *= 2, level++) if (p === n) return level;
  return -1;
}

/** Reference MTH (RFC 6962 §2.1) of a list of leaf hashes; the empty tree is SHA-256(""). */
export function rootFromLeafHashes(leafHashes: readonly Uint8Array[]): Buffer {
  if (leafHashes.length === 0) return Buffer.from(EMPTY_ROOT);
  // Bottom-up pairing gives the same tree as the recursive definition: an odd node out is
  // carried up unchanged, which is exactly RFC 6962's "largest power of two" left split.
  let level: Buffer[] = leafHashes.map((h) => Buffer.from(h));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(hashChildren(level[i]!, level[i + 1]!));
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return level[0]!;
}

/**
 * The perfect subtrees that make up a range appearing in RFC 6962's recursions, left to right
 * (largest first). Such a range splits at the largest power of two below its size, again and
 * again, and each left part must start on a multiple of its own size to be a stored node;
 * throws RangeError for a range that does not.
 */
export function perfectSubtrees(begin: number, end: number): NodeId[] {
  assertSize('begin', begin);
  assertSize('end', end);
  if (begin >= end) throw new RangeError(`range [${begin}, ${end}) is empty`);
  const nodes: NodeId[] = [];
  while (begin < end) {
    const size = end - begin;
    const level = exactLog2(size);
    const width = level >= 0 ? size : splitPoint(size);
    if (begin % width !== 0) throw new RangeError(`range [${begin}, ${end}) is not a subtree of an RFC 6962 tree`);
    nodes.push({ level: level >= 0 ? level : exactLog2(width), index: begin / width });
    begin += width;
  }
  return nodes;
}

/**
 * The right edge of a tree: the perfect subtrees of [0, size), one per set bit of size, largest
 * (leftmost) first — at most 53 hashes. Enough to append and to compute the root without
 * reading anything else.
 */
export class CompactRange {
  private constructor(
    private treeSize: number,
    private readonly hashes: Buffer[],
  ) {}

  /** The compact range of the empty tree. */
  static empty(): CompactRange {
    return new CompactRange(0, []);
  }

  /** Rebuilds a range from serialize()'s bytes for a tree of `size` leaves; throws on a length mismatch. */
  static deserialize(treeSize: number | bigint, buf: Uint8Array): CompactRange {
    const size = toTreeIndex(treeSize, 'size');
    const count = bitCount(size);
    if (buf.length !== count * HASH_BYTES) throw new RangeError(`a compact range of size ${size} is ${count * HASH_BYTES} bytes, got ${buf.length}`);
    const hashes: Buffer[] = [];
    for (let i = 0; i < count; i++) hashes.push(Buffer.from(buf.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)));
    return new CompactRange(size, hashes);
  }

  /** Number of leaves. */
  get size(): number {
    return this.treeSize;
  }

  /** The hashes concatenated left to right (32 bytes each); the size is stored beside them. */
  serialize(): Buffer {
    return Buffer.concat(this.hashes);
  }

  /** The perfect subtrees of the edge with their hashes, left to right. */
  nodes(): NodeRef[] {
    const ids = this.treeSize === 0 ? [] : perfectSubtrees(0, this.treeSize);
    return ids.map((id, i) => ({ ...id, hash: this.hashes[i]! }));
  }

  /**
   * Appends a leaf and returns every perfect node it completes, bottom-up: the leaf itself at
   * level 0, then one node per level the new leaf closes. The store persists all of them.
   */
  append(leafHash: Uint8Array): NodeRef[] {
    if (leafHash.length !== HASH_BYTES) throw new RangeError(`leaf hash must be ${HASH_BYTES} bytes, got ${leafHash.length}`);
    if (this.treeSize >= MAX_TREE_SIZE) throw new RangeError('tree is full (2^53 - 1 leaves)');
    let node: Buffer = Buffer.from(leafHash);
    let index = this.treeSize;
    let level = 0;
    const created: NodeRef[] = [{ level, index, hash: node }];
    // Each trailing 1 bit of the old size is a perfect left sibling on the edge that the new
    // node completes: merge them, as in a binary counter's carry.
    while (index % 2 === 1) {
      node = hashChildren(this.hashes.pop()!, node);
      index = (index - 1) / 2;
      level += 1;
      created.push({ level, index, hash: node });
    }
    this.hashes.push(node);
    this.treeSize += 1;
    return created;
  }

  /** MTH of the whole tree: the edge's hashes folded right to left. */
  root(): Buffer {
    if (this.hashes.length === 0) return Buffer.from(EMPTY_ROOT);
    let acc = this.hashes[this.hashes.length - 1]!;
    for (let i = this.hashes.length - 2; i >= 0; i--) acc = hashChildren(this.hashes[i]!, acc);
    return acc;
  }

  /** An independent copy (appends to it do not affect this one). */
  clone(): CompactRange {
    return new CompactRange(this.treeSize, [...this.hashes]);
  }
}

function bitCount(n: number): number {
  let count = 0;
  for (; n > 0; n = Math.floor(n / 2)) count += n % 2;
  return count;
}

/**
 * The leaf ranges whose MTHs form RFC 6962 PATH(index, D[size]) (§2.1.1), in the RFC's order:
 * from the leaf's sibling up to the root's other child. Throws RangeError unless 0 <= index < size.
 */
export function inclusionProofPlan(leafIndex: number | bigint, treeSize: number | bigint): Range[] {
  const index = toTreeIndex(leafIndex, 'index');
  const size = toTreeIndex(treeSize, 'size');
  if (index >= size) throw new RangeError(`index ${index} is not below tree size ${size}`);
  // Walk down from the root; each step records the subtree on the other side of the split.
  const topDown: Range[] = [];
  let begin = 0;
  let end = size;
  while (end - begin > 1) {
    const mid = begin + splitPoint(end - begin);
    if (index < mid) {
      topDown.push({ begin: mid, end });
      end = mid;
    } else {
      topDown.push({ begin, end: mid });
      begin = mid;
    }
  }
  return topDown.reverse();
}

/**
 * The leaf ranges whose MTHs form RFC 6962 PROOF(oldSize, D[newSize]) (§2.1.2, SUBPROOF), in the
 * RFC's order. Empty when oldSize is 0 or equals newSize (nothing to prove); throws RangeError
 * when oldSize > newSize.
 */
export function consistencyProofPlan(oldTreeSize: number | bigint, newTreeSize: number | bigint): Range[] {
  const oldSize = toTreeIndex(oldTreeSize, 'oldSize');
  const newSize = toTreeIndex(newTreeSize, 'newSize');
  if (oldSize > newSize) throw new RangeError(`old size ${oldSize} is larger than new size ${newSize}`);
  if (oldSize === 0 || oldSize === newSize) return [];
  const topDown: Range[] = [];
  let begin = 0;
  let end = newSize;
  // `whole` is SUBPROOF's b: true while the current subtree's left edge is the old tree's, in which
  // case the old tree's hash for this subtree is known to the verifier and need not be sent.
  let whole = true;
  for (;;) {
    if (oldSize === end) {
      if (!whole) topDown.push({ begin, end });
      break;
    }
    const mid = begin + splitPoint(end - begin);
    if (oldSize <= mid) {
      topDown.push({ begin: mid, end });
      end = mid;
    } else {
      topDown.push({ begin, end: mid });
      begin = mid;
      whole = false;
    }
  }
  return topDown.reverse();
}

/** MTH of a range from stored perfect nodes: the decomposition folded right to left. */
export function rangeHash(range: Range, lookup: NodeLookup): Buffer {
  const nodes = perfectSubtrees(range.begin, range.end);
  let acc = lookup(nodes[nodes.length - 1]!.level, nodes[nodes.length - 1]!.index);
  for (let i = nodes.length - 2; i >= 0; i--) acc = hashChildren(lookup(nodes[i]!.level, nodes[i]!.index), acc);
  return acc;
}

/** The proof hashes for a plan, from stored perfect nodes. */
export function buildProof(plan: readonly Range[], lookup: NodeLookup): Buffer[] {
  return plan.map((range) => rangeHash(range, lookup));
}

/** Every stored node a plan reads, deduplicated, so the store can fetch them in one query. */
export function nodesNeeded(plan: readonly Range[]): NodeId[] {
  const seen = new Map<string, NodeId>();
  for (const range of plan) for (const node of perfectSubtrees(range.begin, range.end)) seen.set(`${node.level}/${node.index}`, node);
  return [...seen.values()];
}

function isHash(h: Uint8Array): boolean {
  return h.length === HASH_BYTES;
}

/**
 * The root an inclusion proof implies for leafHash at index in a tree of size leaves (RFC 9162
 * §2.1.3.2). Throws an Error naming the problem for malformed input: index >= size, a proof of
 * the wrong length, or a hash that is not 32 bytes.
 */
export function rootFromInclusionProof(leafHash: Uint8Array, index: number, size: number, proof: readonly Uint8Array[]): Buffer {
  assertSize('index', index);
  assertSize('size', size);
  if (index >= size) throw new RangeError(`index ${index} is not below tree size ${size}`);
  if (!isHash(leafHash)) throw new Error(`leaf hash must be ${HASH_BYTES} bytes, got ${leafHash.length}`);
  const expected = inclusionProofPlan(index, size).length;
  if (proof.length !== expected) throw new Error(`inclusion proof for index ${index} in size ${size} has ${expected} hashes, got ${proof.length}`);
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leafHash);
  for (const p of proof) {
    if (!isHash(p)) throw new Error(`proof hash must be ${HASH_BYTES} bytes, got ${p.length}`);
    if (sn === 0) throw new Error('inclusion proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      // On the tree's right edge a node may have no sibling at some levels: skip them.
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('inclusion proof is too short');
  return r;
}

/** True when proof shows leafHash at index in the tree of size leaves with this root; never throws. */
export function verifyInclusion(leafHash: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  try {
    return isHash(root) && rootFromInclusionProof(leafHash, index, size, proof).equals(root);
  } catch {
    return false;
  }
}

/**
 * True when proof shows the tree of oldSize leaves (oldRoot) is a prefix of the tree of newSize
 * leaves (newRoot), per RFC 9162 §2.1.4.2; never throws. Equal sizes need an empty proof and equal
 * roots; oldSize 0 needs an empty proof and oldRoot = EMPTY_ROOT; oldSize > newSize is false.
 */
export function verifyConsistency(oldSize: number, newSize: number, proof: readonly Uint8Array[], oldRoot: Uint8Array, newRoot: Uint8Array): boolean {
  if (!Number.isSafeInteger(oldSize) || !Number.isSafeInteger(newSize) || oldSize < 0 || oldSize > newSize) return false;
  if (!isHash(oldRoot) || !isHash(newRoot) || !proof.every(isHash)) return false;
  if (oldSize === newSize) return proof.length === 0 && Buffer.from(oldRoot).equals(newRoot);
  if (oldSize === 0) return proof.length === 0 && EMPTY_ROOT.equals(oldRoot);
  if (proof.length !== consistencyProofPlan(oldSize, newSize).length) return false;

  // When the old tree is a perfect subtree its root is the proof's implicit first element.
  const path = exactLog2(oldSize) >= 0 ? [oldRoot, ...proof] : [...proof];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}
