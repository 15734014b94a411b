// Request content by approval id, in memory. Content never changes once a request is created (and
// requests are never deleted), so a cached copy is never stale, on any replica. Votes answer with
// their request's content and watches send it with every change: with the cache, neither reads it
// back from the database after each commit. Bounded by bytes; the least recently used goes first.

/** Content bytes one process keeps by default. */
export const CONTENT_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * What an entry costs beyond its content: the Map entry, the id string, the Buffer object and its
 * own backing store. Without it, a cache of short contents would be bounded by their bytes alone,
 * that is by nothing (a million entries of 30 bytes fit in 32 MiB).
 */
export const ENTRY_OVERHEAD_BYTES = 256;

export class ContentCache {
  /** Insertion order is recency order: a hit moves its entry to the end. */
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number = CONTENT_CACHE_BYTES) {}

  get(id: string): Buffer | undefined {
    const content = this.entries.get(id);
    if (content !== undefined) {
      this.entries.delete(id);
      this.entries.set(id, content);
    }
    return content;
  }

  put(id: string, content: Buffer): void {
    const cost = content.length + ENTRY_OVERHEAD_BYTES;
    if (cost > this.maxBytes || this.entries.has(id)) return;
    // A copy of exactly its size, outside Node's shared pool: the Buffer handed in is usually a view
    // into a larger one (the request's decoded HTTP/2 data, an 8 KiB pool slab, a database result),
    // and a cached view would keep all of it alive for as long as the entry lives. (Measured in the
    // soak: the approvals process's ArrayBuffers grew ~5 MB a minute, one slab per request.)
    const own = Buffer.allocUnsafeSlow(content.length);
    content.copy(own);
    this.entries.set(id, own);
    this.bytes += cost;
    for (const [oldest, c] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= c.length + ENTRY_OVERHEAD_BYTES;
    }
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
