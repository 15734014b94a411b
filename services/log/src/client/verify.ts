// The client library's verifier: checks what a log server sends without trusting it. Every hash
// is recomputed here from the entry's own fields; a server-sent leaf_hash is never used, because a
// lying server would simply send the leaf hash its proof needs. The author is one of those fields
// (entries without one are hashed in the earlier layout), so a verified inclusion also proves who
// the log recorded as the entry's appender.
//
// Typical use:
//   const head = verifyCheckpoint(res.checkpoint, PINNED_KEY, { partition: 'orders' });
//   verifyEntryInclusion(entry, await client.getInclusionProof({ partition, seq, treeSize: head.size }), head);
//   verifyCheckpointConsistency(previousHead, head, (await client.getConsistencyProof(...)).hashes);
import { entryHash, entryLeafHash, type EntryFields } from '../domain/entry.js';
import { openCheckpoint, type Checkpoint, type VerifierKey } from '../domain/checkpoint.js';
import { toTreeIndex, verifyConsistency, verifyInclusion } from '../domain/merkle.js';

export { ChainVerifier, ENTRY_DOMAIN_SEPARATOR, ENTRY_V2_DOMAIN_SEPARATOR, HASH_BYTES, ZERO_HASH, canonicalEntryBytes, entryEncodingVersion, entryHash, entryLeafHash, verifyChain } from '../domain/entry.js';
export { AUDIT_PARTITION_PREFIX, auditFamilyOf } from '../domain/authority.js';
export type { ChainCheck, ChainEnd, ChainFailure, EntryFields, StoredEntry } from '../domain/entry.js';
export { checkpointBody, noteKeyId, openCheckpoint, openNote, parseCheckpointBody, parseVerifierKey, verifierKeyString } from '../domain/checkpoint.js';
export type { Checkpoint, VerifierKey } from '../domain/checkpoint.js';
export { EMPTY_ROOT, hashChildren, hashLeaf, rootFromInclusionProof, verifyConsistency, verifyInclusion } from '../domain/merkle.js';

/** An entry as the client receives it (structurally logv1.Entry). */
export interface ReceivedEntry {
  partition: string;
  seq: bigint;
  timestamp: Date | undefined;
  data: Uint8Array;
  prevHash: Uint8Array;
  hash: Uint8Array;
  /** Empty or absent for an entry appended before authors were recorded. */
  author?: string;
}

/** The parts of GetInclusionProofResponse the verifier reads (leaf_hash deliberately not among them). */
export interface InclusionProof {
  seq: bigint;
  treeSize: bigint;
  hashes: Uint8Array[];
}

/** The parts of GetConsistencyProofResponse the verifier reads. */
export interface ConsistencyProof {
  oldSize: bigint;
  newSize: bigint;
  hashes: Uint8Array[];
}

/** What the caller expects a checkpoint to be about. */
export interface CheckpointExpectation {
  /** The exact origin line, "<log origin>/<partition>". */
  origin?: string;
  /** The partition the checkpoint must be for (its origin must end in "/<partition>"). */
  partition?: string;
}

/** The hashed fields of a received entry; throws when it has no valid timestamp. */
export function entryFieldsOf(entry: ReceivedEntry): EntryFields {
  const ms = entry.timestamp?.getTime();
  if (ms === undefined || Number.isNaN(ms)) throw new Error(`entry ${entry.seq} of ${entry.partition} has no valid timestamp`);
  return { partition: entry.partition, seq: entry.seq, timestampMs: BigInt(ms), data: entry.data, prevHash: entry.prevHash, author: entry.author };
}

/** True when entry.hash is the SHA-256 of the entry's canonical encoding; never throws. */
export function verifyEntryHash(entry: ReceivedEntry): boolean {
  try {
    return entryHash(entryFieldsOf(entry)).equals(entry.hash);
  } catch {
    return false;
  }
}

/**
 * Opens a signed checkpoint with a pinned verifier key and checks it is the one expected.
 * Pass `partition` (or `origin`): the same key signs every partition's checkpoints, so without it
 * a server could answer with a genuine checkpoint of another partition. Throws an Error on any problem.
 */
export function verifyCheckpoint(note: string | Uint8Array, verifierKey: string | VerifierKey, expected: CheckpointExpectation = {}): Checkpoint {
  const checkpoint = openCheckpoint(note, verifierKey);
  if (expected.origin !== undefined && checkpoint.origin !== expected.origin) {
    throw new Error(`checkpoint is for origin ${JSON.stringify(checkpoint.origin)}, expected ${JSON.stringify(expected.origin)}`);
  }
  if (expected.partition !== undefined && !checkpoint.origin.endsWith(`/${expected.partition}`)) {
    throw new Error(`checkpoint origin ${JSON.stringify(checkpoint.origin)} is not for partition ${JSON.stringify(expected.partition)}`);
  }
  return checkpoint;
}

/**
 * True when the entry is self-consistent (its hash matches its fields) and the proof places it at
 * leaf `entry.seq` of the tree the verified checkpoint commits to; never throws. The leaf hash is
 * recomputed from the entry; the proof must be for the checkpoint's size and the entry's partition.
 */
export function verifyEntryInclusion(entry: ReceivedEntry, proof: InclusionProof, checkpoint: Checkpoint): boolean {
  try {
    if (proof.seq !== entry.seq || proof.treeSize !== checkpoint.size) return false;
    if (!checkpoint.origin.endsWith(`/${entry.partition}`)) return false;
    const fields = entryFieldsOf(entry);
    if (!entryHash(fields).equals(entry.hash)) return false;
    return verifyInclusion(entryLeafHash(fields), toTreeIndex(entry.seq, 'seq'), toTreeIndex(checkpoint.size, 'tree size'), proof.hashes, checkpoint.rootHash);
  } catch {
    return false;
  }
}

/**
 * True when `newer` extends `older`: same origin, and the proof shows older's tree is a prefix of
 * newer's (so the log did not rewrite history between the two verified checkpoints); never throws.
 */
export function verifyCheckpointConsistency(older: Checkpoint, newer: Checkpoint, proof: ConsistencyProof | Uint8Array[]): boolean {
  try {
    const hashes = Array.isArray(proof) ? proof : proof.hashes;
    if (!Array.isArray(proof) && (proof.oldSize !== older.size || proof.newSize !== newer.size)) return false;
    if (older.origin !== newer.origin) return false;
    return verifyConsistency(toTreeIndex(older.size, 'old size'), toTreeIndex(newer.size, 'new size'), hashes, older.rootHash, newer.rootHash);
  } catch {
    return false;
  }
}
