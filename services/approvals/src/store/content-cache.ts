// Request content by approval id, in memory. Content never changes once a request is created (and
// requests are never deleted), so a cached copy is never stale, on any replica. Votes answer with
// their request's content and watches send it with every change: with the cache, neither reads it
// back from the database after each commit. Bounded by bytes; the least recently used goes first,
// and an entry unused for CONTENT_IDLE_MS goes too: votes and watch changes come while a request is
// being decided, so a cache that kept every request it ever saw until the byte bound would hold
// mostly decided ones, and fill for an hour or more at a steady load (the soak saw it as growth).

/** Content bytes one process keeps by default. */
export const CONTENT_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * What an entry costs beyond its content: the Map entry, the id string, the Buffer object and its
 * own backing store. Without it, a cache of short contents would be bounded by their bytes alone,
 * that is by nothing (a million entries of 30 bytes fit in 32 MiB).
 */
export const ENTRY_OVERHEAD_BYTES = 256;

/** An entry not read or written for this long is dropped (at the next put or get). */
export const CONTENT_IDLE_MS = 5 * 60_000;

interface Entry {
  content: Buffer;
  /** When it was last put or read (the cache's clock). */
  usedAt: number;
}

export class ContentCache {
  /** Insertion order is recency order: a hit moves its entry to the end, so the front is the least recently used. */
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number = CONTENT_CACHE_BYTES,
    private readonly idleMs: number = CONTENT_IDLE_MS,
    private readonly now: () => number = Date.now,
  ) {}

  get(id: string): Buffer | undefined {
    const at = this.now();
    this.dropIdle(at);
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    this.entries.delete(id);
    entry.usedAt = at;
    this.entries.set(id, entry);
    return entry.content;
  }

  put(id: string, content: Buffer): void {
    const at = this.now();
    this.dropIdle(at);
    const cost = content.length + ENTRY_OVERHEAD_BYTES;
    if (cost > this.maxBytes || this.entries.has(id)) return;
    // A copy of exactly its size, outside Node's shared pool: the Buffer handed in is usually a view
    // into a larger one (the request's decoded HTTP/2 data, an 8 KiB pool slab, a database result),
    // and a cached view would keep all of it alive for as long as the entry lives. (Measured in the
    // soak: the approvals process's ArrayBuffers grew ~5 MB a minute, one slab per request.)
    const own = Buffer.allocUnsafeSlow(content.length);
    content.copy(own);
    this.entries.set(id, { content: own, usedAt: at });
    this.bytes += cost;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.remove(oldest, entry);
    }
  }

  /** Drops the entries unused for idleMs, from the least recently used: they are all at the front. */
  private dropIdle(at: number): void {
    for (const [id, entry] of this.entries) {
      if (at - entry.usedAt <= this.idleMs) break;
      this.remove(id, entry);
    }
  }

  private remove(id: string, entry: Entry): void {
    this.entries.delete(id);
    this.bytes -= entry.content.length + ENTRY_OVERHEAD_BYTES;
  }

  /** Bytes held now, overhead included (tests). */
  get heldBytes(): number {
    return this.bytes;
  }

  /** Entries held now (tests). */
  get size(): number {
    return this.entries.size;
  }
}
