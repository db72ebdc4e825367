// Micro-benchmark of the response cache on the request path.
// Run: node_modules/.bin/node bench/cache-lookup.ts
// Measures cacheKey + get (memory hit, memory miss, SQLite hit/miss behind the LRU), set, stream
// replay, and a semantic search over 2,000 entries of dim 256. Writes bench/CACHE-RESULTS.md.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/sqlite.ts';
import { cacheKey, type CacheScope } from '../src/cache/key.ts';
import { ResponseCache, type CachedEntry } from '../src/cache/store.ts';
import { resultToEvents } from '../src/cache/replay.ts';
import { SemanticCache, contextHash } from '../src/cache/semantic.ts';
import { embedSync } from '../src/cache/test-embedder.ts';
import type { ChatRequest, ChatResult } from '../src/providers/types.ts';

const N = 2_000;
const BATCH = 50;
const scope: CacheScope = { mode: 'agent', agent: 'spiffe://prod/agent/finance-analyst', team: 'finance' };

function request(i: number): ChatRequest {
  return {
    model: 'fast', temperature: 0.2, max_tokens: 512,
    messages: [
      { role: 'system', content: 'You are a careful financial analyst. Answer briefly and cite the table you used. '.repeat(4) },
      { role: 'user', content: `Question ${i}: what was the operating margin of segment ${i % 17} in Q3, and how does it compare to Q2?` },
    ],
    tools: [{ type: 'function', function: { name: 'query_table', description: 'Run a read-only query', parameters: { type: 'object', properties: { sql: { type: 'string' } }, required: ['sql'] } } }],
  };
}

function result(i: number): ChatResult {
  return {
    id: `chatcmpl-${i}`, model: 'gpt-4o', created: 1_800_000_000, finishReason: 'stop', toolCalls: [],
    text: `The operating margin of segment ${i % 17} was 14.2% in Q3, up from 12.9% in Q2. `.repeat(8),
    usage: { inputTokens: 180, outputTokens: 160 },
  };
}

const entry = (i: number): CachedEntry => ({ kind: 'chat', result: result(i), createdAt: Date.now(), route: 'fast', scopeKey: 'agent:x', routeVersion: 'v1' });

/** Per-op microseconds: p50 and p99 over batch means (batches of BATCH ops), plus the overall mean. */
function measure(name: string, ops: number, fn: (i: number) => void): Row {
  for (let i = 0; i < Math.min(ops, 500); i++) fn(i); // warm-up
  const per: number[] = [];
  let total = 0;
  for (let b = 0; b < ops / BATCH; b++) {
    const t = performance.now();
    for (let j = 0; j < BATCH; j++) fn(b * BATCH + j);
    const us = ((performance.now() - t) * 1000) / BATCH;
    per.push(us);
    total += us;
  }
  per.sort((a, b) => a - b);
  const row = { name, mean: total / per.length, p50: per[Math.floor(per.length * 0.5)], p99: per[Math.min(per.length - 1, Math.floor(per.length * 0.99))] };
  console.log(`${name.padEnd(58)} mean ${row.mean.toFixed(2).padStart(8)} us  p50 ${row.p50.toFixed(2).padStart(8)}  p99 ${row.p99.toFixed(2).padStart(8)}`);
  return row;
}
interface Row { name: string; mean: number; p50: number; p99: number }

const dir = mkdtempSync(join(tmpdir(), 'aam-cache-bench-'));
const rows: Row[] = [];
try {
  const reqs = Array.from({ length: N }, (_, i) => request(i));
  const keys = reqs.map((r) => cacheKey('chat', 'fast', r, scope, 'v1'));

  rows.push(measure('cacheKey (system + user + 1 tool, ~700 B canonical)', 20_000, (i) => { cacheKey('chat', 'fast', reqs[i % N], scope, 'v1'); }));

  const mem = new ResponseCache(null);
  for (let i = 0; i < N; i++) mem.set(keys[i], entry(i), 3600);
  rows.push(measure('cacheKey + get, memory hit', 20_000, (i) => { if (!mem.get(cacheKey('chat', 'fast', reqs[i % N], scope, 'v1'))) throw new Error('expected hit'); }));
  rows.push(measure('cacheKey + get, miss (memory only)', 20_000, (i) => { if (mem.get(cacheKey('chat', 'fast', reqs[i % N], scope, 'v2'))) throw new Error('expected miss'); }));

  const db = openDatabase(dir);
  const disk = new ResponseCache(db, { maxEntries: 100, sweepIntervalMs: 0 });
  rows.push(measure('set (memory + SQLite INSERT OR REPLACE, ~1.1 KB entry)', N, (i) => { disk.set(keys[i % N], entry(i % N), 3600); }));
  rows.push(measure('cacheKey + get, miss (memory miss + SQLite point read)', 20_000, (i) => { if (disk.get(cacheKey('chat', 'fast', reqs[i % N], scope, 'v2'))) throw new Error('expected miss'); }));
  // LRU of 100 over 2,000 keys walked in order: every get falls through to SQLite.
  rows.push(measure('cacheKey + get, SQLite hit (evicted from memory LRU)', 20_000, (i) => { if (!disk.get(cacheKey('chat', 'fast', reqs[i % N], scope, 'v1'))) throw new Error('expected hit'); }));
  disk.close();

  rows.push(measure('resultToEvents (650-char answer)', 20_000, (i) => { resultToEvents(result(i % N)); }));

  // Semantic: 2,000 entries of dim 256 in one scope, same context (worst case: every vector is compared).
  const DIM = 256;
  const sem = new SemanticCache(null, { maxPerScope: N, sweepIntervalMs: 0 });
  const sScope = { scopeKey: 'agent:x', route: 'fast', routeVersion: 'v1' };
  const ctx = contextHash(reqs[0]);
  const rand = (seed: number) => { let s = seed; return () => ((s = Math.imul(s ^ (s >>> 15), 2246822519) + 0x9e3779b9 | 0) >>> 0) / 2 ** 32 - 0.5; };
  const unit = (r: () => number) => { const v = new Float32Array(DIM); let n = 0; for (let i = 0; i < DIM; i++) { v[i] = r(); n += v[i] * v[i]; } n = Math.sqrt(n); for (let i = 0; i < DIM; i++) v[i] /= n; return v; };
  const r = rand(42);
  const vecs = Array.from({ length: N }, () => unit(r));
  for (let i = 0; i < N; i++) sem.store(sScope, { text: `q${i}`, context: ctx, embedding: vecs[i] }, entry(i), 3600);
  const queries = Array.from({ length: 200 }, () => unit(r));
  rows.push(measure(`semantic search, ${N} entries x dim ${DIM}, miss (full scan)`, 2_000, (i) => { sem.search(sScope, ctx, queries[i % 200], 0.95); }));
  rows.push(measure(`semantic search, ${N} entries x dim ${DIM}, hit`, 2_000, (i) => { if (!sem.search(sScope, ctx, vecs[(i * 7) % N], 0.95)) throw new Error('expected hit'); }));
  rows.push(measure('contextHash (semantic partition of a request)', 20_000, (i) => { contextHash(reqs[i % N]); }));
  rows.push(measure('test embedder, one question (dim 256)', 20_000, (i) => { embedSync(reqs[i % N].messages[1].content as string, DIM); }));

  const md = [
    '# Response cache: lookup cost',
    '',
    `Measured ${new Date().toISOString()} with \`node_modules/.bin/node bench/cache-lookup.ts\` on ${cpus()[0]?.model ?? 'unknown CPU'} (${cpus().length} cores, load ${loadavg()[0].toFixed(2)}), Node ${process.version}.`,
    'Load above 1 per core means other work shared the CPU: then means and p99 are pessimistic and p50 is the steadier figure.',
    `Per-operation microseconds; p50/p99 are over means of batches of ${BATCH} operations (single operations are too short to time alone).`,
    '',
    '| operation | mean us | p50 us | p99 us |',
    '|---|---:|---:|---:|',
    ...rows.map((x) => `| ${x.name} | ${x.mean.toFixed(2)} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} |`),
    '',
    'Notes:',
    '- A memory hit is one canonicalisation + SHA-256 + one Map lookup. A memory miss on a persistent cache costs one',
    '  SQLite primary-key read (synchronous, page cache); the LRU in front keeps hot entries off that path.',
    '- `set` runs after the answer was sent (not on the client\'s latency path); it writes through to SQLite.',
    '- The semantic search is a linear scan over one scope\'s bounded set (cap 2,000): this is the worst case, all entries',
    '  in the same scope and context. The embedding call to a real embedding route (a network round trip, typically',
    '  10-100 ms) dominates a semantic lookup; the exact cache is tried first so an exact hit never pays it.',
    '',
  ].join('\n');
  writeFileSync(join(import.meta.dirname, 'CACHE-RESULTS.md'), md);
  db.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
