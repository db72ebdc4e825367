import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/sqlite.ts';
import { ResponseCache, type CachedEntry } from '../src/cache/store.ts';
import { cacheDirectives } from '../src/cache/directives.ts';
import type { ChatResult } from '../src/providers/types.ts';

const T0 = 1_800_000_000_000;

function entry(text: string, route = 'fast', routeVersion = 'v1', createdAt = T0): CachedEntry {
  const result: ChatResult = { id: 'c1', model: 'm', created: 1, text, toolCalls: [], finishReason: 'stop', usage: { inputTokens: 3, outputTokens: 4 } };
  return { kind: 'chat', result, createdAt, route, scopeKey: 'agent:spiffe://x/a', routeVersion };
}

function tempDir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'aam-cache-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('hit, miss and stats', () => {
  const c = new ResponseCache(null);
  assert.equal(c.get('k', T0), null);
  c.set('k', entry('hello'), 60, T0);
  const got = c.get('k', T0 + 1);
  assert.equal((got?.result as ChatResult).text, 'hello');
  const s = c.stats();
  assert.equal(s.hits, 1);
  assert.equal(s.misses, 1);
  assert.equal(s.entries, 1);
  assert.ok(s.bytes > 50);
});

test('returned entries are frozen copies: callers cannot corrupt the cache', () => {
  const c = new ResponseCache(null);
  const e = entry('hello');
  c.set('k', e, 60, T0);
  (e.result as ChatResult).text = 'changed by caller';
  const got = c.get('k', T0)!;
  assert.equal((got.result as ChatResult).text, 'hello');
  assert.throws(() => { (got.result as ChatResult).text = 'x'; });
});

test('TTL expiry, in memory and on disk', (t) => {
  const db = openDatabase(tempDir(t));
  const c = new ResponseCache(db, { sweepIntervalMs: 0 });
  c.set('k', entry('a'), 10, T0);
  assert.ok(c.get('k', T0 + 9_999));
  assert.equal(c.get('k', T0 + 10_000), null, 'expired exactly at ttl');
  // Memory dropped it; the disk row is expired too and must not come back.
  assert.equal(c.get('k', T0 + 10_001), null);
  assert.equal(c.sweep(T0 + 10_001), 1);
  assert.equal(c.stats().diskEntries, 0);
  c.close();
});

test('maxAgeSeconds (client max-age) rejects older entries without deleting them', () => {
  const c = new ResponseCache(null);
  c.set('k', entry('a'), 600, T0);
  assert.equal(c.get('k', T0 + 30_000, 10), null);
  assert.ok(c.get('k', T0 + 30_000, 60));
  assert.ok(c.get('k', T0 + 30_000));
});

test('LRU bound on entries evicts the least recently used', () => {
  const c = new ResponseCache(null, { maxEntries: 3 });
  for (const k of ['a', 'b', 'c']) c.set(k, entry(k), 60, T0);
  assert.ok(c.get('a', T0)); // a becomes most recent; b is now the oldest
  c.set('d', entry('d'), 60, T0);
  assert.equal(c.get('b', T0), null);
  for (const k of ['a', 'c', 'd']) assert.ok(c.get(k, T0), k);
  assert.equal(c.stats().entries, 3);
  assert.equal(c.stats().evictions, 1);
});

test('LRU bound on bytes; oversize answers are not cached', () => {
  const one = Buffer.byteLength(JSON.stringify(entry('x'.repeat(1000))));
  const c = new ResponseCache(null, { maxBytes: one * 2 + 10, maxEntryBytes: one + 10 });
  c.set('a', entry('x'.repeat(1000)), 60, T0);
  c.set('b', entry('y'.repeat(1000)), 60, T0);
  c.set('c', entry('z'.repeat(1000)), 60, T0);
  assert.equal(c.get('a', T0), null);
  assert.ok(c.get('b', T0) && c.get('c', T0));
  assert.ok(c.stats().bytes <= one * 2 + 10);
  assert.equal(c.set('big', entry('w'.repeat(2000)), 60, T0), false);
  assert.equal(c.get('big', T0), null);
  assert.equal(c.stats().skipped, 1);
});

test('persisted across reopen; evicted from memory still served from disk', (t) => {
  const dir = tempDir(t);
  let db = openDatabase(dir);
  let c = new ResponseCache(db, { maxEntries: 1, sweepIntervalMs: 0 });
  c.set('a', entry('A'), 60, T0);
  c.set('b', entry('B'), 60, T0); // evicts a from memory only
  assert.equal(c.stats().entries, 1);
  assert.equal((c.get('a', T0)?.result as ChatResult).text, 'A');
  c.close();
  db.close();
  db = openDatabase(dir);
  c = new ResponseCache(db, { sweepIntervalMs: 0 });
  assert.equal(c.stats().entries, 0);
  assert.equal((c.get('b', T0 + 1)?.result as ChatResult).text, 'B');
  assert.equal(c.get('b', T0 + 60_000), null, 'ttl survives the restart');
  c.close();
  db.close();
});

test('disk is bounded: sweep trims to maxDiskEntries, oldest-expiring first', (t) => {
  const db = openDatabase(tempDir(t));
  const c = new ResponseCache(db, { maxEntries: 2, maxDiskEntries: 3, sweepIntervalMs: 0 });
  for (let i = 0; i < 5; i++) c.set(`k${i}`, entry(String(i)), 60 + i, T0);
  c.sweep(T0);
  assert.equal(c.stats().diskEntries, 3);
  assert.equal(c.get('k0', T0), null);
  assert.ok(c.get('k2', T0));
  c.close();
});

test('delete, clear(route) and pruneRoutes', (t) => {
  const db = openDatabase(tempDir(t));
  const c = new ResponseCache(db, { sweepIntervalMs: 0 });
  c.set('a', entry('a', 'fast'), 60, T0);
  c.set('b', entry('b', 'slow'), 60, T0);
  c.set('c', entry('c', 'slow', 'old'), 60, T0);
  c.set('d', entry('d', 'gone'), 60, T0);
  c.delete('a');
  assert.equal(c.get('a', T0), null);
  assert.equal(c.pruneRoutes(new Map([['slow', 'v1'], ['fast', 'v1']])), 4, 'c (old version) and d (route removed), in memory and on disk');
  assert.ok(c.get('b', T0));
  assert.equal(c.get('c', T0), null);
  assert.equal(c.get('d', T0), null);
  c.clear('slow');
  assert.equal(c.get('b', T0), null);
  assert.equal(c.stats().diskEntries, 0);
  c.close();
});

test('cacheDirectives: no-cache, no-store, max-age, pragma', () => {
  assert.deepEqual(cacheDirectives({}), { lookup: true, store: true });
  assert.deepEqual(cacheDirectives({ 'cache-control': 'no-cache' }), { lookup: false, store: true });
  assert.deepEqual(cacheDirectives({ 'cache-control': 'No-Store' }), { lookup: false, store: false });
  assert.deepEqual(cacheDirectives({ 'cache-control': 'max-age=0' }), { lookup: false, store: true });
  assert.deepEqual(cacheDirectives({ 'cache-control': 'max-age=30' }), { lookup: true, store: true, maxAgeSeconds: 30 });
  assert.deepEqual(cacheDirectives({ 'cache-control': ['max-age=30', 'no-store'] }), { lookup: false, store: false });
  assert.deepEqual(cacheDirectives({ pragma: 'no-cache' }), { lookup: false, store: true });
  assert.deepEqual(cacheDirectives({ 'cache-control': 'max-age=30', pragma: 'no-cache' }), { lookup: true, store: true, maxAgeSeconds: 30 });
  assert.deepEqual(cacheDirectives({ 'cache-control': 'private' }), { lookup: true, store: true });
});
