// Request content by approval id, in memory. Content never changes once a request is created (and
// requests are never deleted), so a cached copy is never stale, on any replica. Votes answer with
// their request's content and watches send it with every change: with the cache, neither reads it
// back from the database after each commit. Bounded by bytes; the least recently used goes first.

/** Content bytes one process keeps by default. */
export const CONTENT_CACHE_BYTES = 32 * 1024 * 1024;

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
    if (content.length > this.maxBytes || this.entries.has(id)) return;
    this.entries.set(id, content);
    this.bytes += content.length;
    for (const [oldest, c] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= c.length;
    }
  }

  /** Bytes held now (tests). */
  get heldBytes(): number {
    return this.bytes;
  }
}
