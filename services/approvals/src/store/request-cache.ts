// Requests as they stood at a version, kept between vote batches so that a batch locks its requests
// without reading each one's columns and every vote back (a request's votes were read and parsed
// again for every batch that touched it: most of what a vote allocated). A request at a given version is
// immutable: every change to a request (a vote, an expiry) takes a new service-wide version in the
// transaction that makes it, so an entry is used only when the locked row's version is the entry's,
// whichever replica made the change; anything else is read again. Only committed states go in: what
// was read from the database, and a batch's changes once its transaction has committed (a rolled-back
// batch's versions are handed out again).
import type { RequestRecord } from '../domain/approval.js';

/** Requests kept at most: the ones being voted on now; each holds its votes (at most one per validator). */
export const MAX_CACHED_REQUESTS = 10_000;

export class RequestCache {
  private readonly entries = new Map<string, RequestRecord>();

  constructor(private readonly maxEntries = MAX_CACHED_REQUESTS) {}

  /** The request as it stood at `version`, if kept. */
  at(id: string, version: bigint): RequestRecord | undefined {
    const r = this.entries.get(id);
    return r && r.version === version ? r : undefined;
  }

  /** Keeps a committed state of a request (frozen: entries are shared by the batches that use them). */
  set(r: RequestRecord): void {
    const kept = this.entries.get(r.id);
    if (kept && kept.version >= r.version) return;
    this.entries.delete(r.id);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    Object.freeze(r.votes);
    this.entries.set(r.id, Object.freeze(r));
  }

  get size(): number {
    return this.entries.size;
  }
}
