// The request-content cache holds what it counts: its own copy of each content (not a view that
// keeps a larger buffer alive), and entries counted with their overhead, so short contents are
// bounded too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CONTENT_IDLE_MS, ContentCache, ENTRY_OVERHEAD_BYTES } from '../src/store/content-cache.js';

test('a cached content is a copy of exactly its size, not a view into the buffer it came in', () => {
  const cache = new ContentCache(1024 * 1024);
  const frame = Buffer.alloc(256 * 1024, 7);
  const content = frame.subarray(100, 130);
  cache.put('a', content);
  const held = cache.get('a')!;
  assert.deepEqual(held, content);
  assert.equal(held.buffer.byteLength, 30, 'the cached bytes keep no larger buffer alive');
  frame.fill(0);
  assert.equal(cache.get('a')![0], 7, 'later writes to the original do not reach the copy');
});

test('entries count their overhead: short contents are bounded by count as well as bytes', () => {
  const max = 100 * (ENTRY_OVERHEAD_BYTES + 30);
  const cache = new ContentCache(max);
  for (let i = 0; i < 1_000; i++) cache.put(`id-${i}`, Buffer.alloc(30, i));
  assert.equal(cache.size, 100);
  assert.ok(cache.heldBytes <= max);
  assert.equal(cache.get('id-899'), undefined, 'the least recently used went first');
  assert.deepEqual(cache.get('id-999'), Buffer.alloc(30, 999 % 256));
});

test('a content larger than the whole cache is not kept', () => {
  const cache = new ContentCache(1024);
  cache.put('big', Buffer.alloc(2048));
  assert.equal(cache.get('big'), undefined);
  assert.equal(cache.heldBytes, 0);
});

test('an entry unused for the idle time is dropped; one read meanwhile stays', () => {
  let now = 1_000_000;
  const cache = new ContentCache(1024 * 1024, CONTENT_IDLE_MS, () => now);
  cache.put('read', Buffer.from('r'));
  cache.put('unread', Buffer.from('u'));
  now += CONTENT_IDLE_MS - 1;
  assert.deepEqual(cache.get('read'), Buffer.from('r'), 'within the idle time');
  now += 2;
  // 'unread' was last used CONTENT_IDLE_MS + 1 ago; 'read' only 2 ms ago.
  assert.equal(cache.get('unread'), undefined);
  assert.equal(cache.size, 1);
  assert.equal(cache.heldBytes, 1 + ENTRY_OVERHEAD_BYTES);
  now += CONTENT_IDLE_MS + 1;
  cache.put('new', Buffer.from('n'));
  assert.equal(cache.size, 1, 'a put drops the idle ones too');
  assert.deepEqual(cache.get('new'), Buffer.from('n'));
});
