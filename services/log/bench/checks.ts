// What every log benchmark run checks about the log it loaded (also in --quick): every
// acknowledged append is in the partition, the chain verifies over exactly the partition's size,
// and the first and last entries are proven into the signed tree. Never a time.
import type { Metadata } from '@grpc/grpc-js';
import { streamOf, unary } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { check } from '../../kit/bench/lib.js';
import { verifyCheckpoint, verifyEntryInclusion } from '../src/client/index.js';

export type LogClient = InstanceType<typeof logv1.LogServiceClient>;

/** Entries a partition must hold: acknowledged ones, plus those of failed calls that may have landed. */
export interface Expected {
  acknowledged: number;
  uncertain: number;
}

/** Adds a load run's outcome (calls answered OK and failed) to the partition's expectation. */
export function expect(expected: Map<string, Expected>, partition: string, okCalls: number, failedCalls: number, entriesPerCall: number): void {
  const e = expected.get(partition) ?? { acknowledged: 0, uncertain: 0 };
  e.acknowledged += okCalls * entriesPerCall;
  e.uncertain += failedCalls * entriesPerCall;
  expected.set(partition, e);
}

/** The partition's signed head, checked with the key the server names (the benchmark trusts its own server). */
export async function signedHead(client: LogClient, md: Metadata, partition: string) {
  const res = await unary(client.getCheckpoint, client, { partition }, md);
  return verifyCheckpoint(res.checkpoint, res.verifierKey, { partition });
}

/** Fetches the entry at `seq` and checks its inclusion proof against the signed head. */
export async function proveEntry(client: LogClient, md: Metadata, partition: string, seq: bigint, head: Awaited<ReturnType<typeof signedHead>>): Promise<boolean> {
  let entry: logv1.Entry | undefined;
  for await (const msg of streamOf(client.read({ partition, startSeq: seq, limit: 1n }, md))) entry ??= msg.entries[0];
  if (!entry) return false;
  const proof = await unary(client.getInclusionProof, client, { partition, seq, treeSize: head.size }, md);
  return verifyEntryInclusion(entry, proof, head);
}

/** Fails the run (check) unless the partition holds every acknowledged entry, verifies, and proves its ends. */
export async function checkPartition(client: LogClient, md: Metadata, partition: string, expected: Expected): Promise<void> {
  const head = await signedHead(client, md, partition);
  const size = Number(head.size);
  check(
    size >= expected.acknowledged && size <= expected.acknowledged + expected.uncertain,
    `partition ${partition} holds ${size} entries; ${expected.acknowledged} were acknowledged (and ${expected.uncertain} more failed and may have landed)`,
  );
  const verdict = await unary(client.verify, client, { partition }, md);
  check(verdict.valid && verdict.count === head.size, `partition ${partition}: Verify says valid=${verdict.valid}, ${verdict.count} of ${size} entries (${verdict.reason || 'no reason'})`);
  for (const seq of new Set([0n, head.size / 2n, head.size - 1n])) {
    check(await proveEntry(client, md, partition, seq, head), `partition ${partition}: the inclusion proof of seq ${seq} does not verify against the signed checkpoint of size ${size}`);
  }
}
