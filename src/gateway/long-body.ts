// The upstream body of a request with long strings (a 1 MB prompt) is built across loop turns.
// Built at once, JSON.stringify held the loop ~10 ms per 1 MB prompt, and encoding that text to
// UTF-8 for the socket another ~4 ms (load 15). Here the adapter stringifies the request with a
// short placeholder for each long string, then each long string is JSON-encoded and UTF-8-encoded
// in slices, a loop turn at most TURN_MS long, and the pieces are joined as bytes (a memcpy).
// The bytes are exactly those of the adapter's own JSON.stringify, or the adapter is called as
// before (when it did not pass a placeholder through as a whole JSON string).
import { randomBytes } from 'node:crypto';
import { nextTurn, TURN_MS } from '../access/guard.ts';
import type { ChatRequest, ProviderAdapter, TargetInfo, UpstreamRequest } from '../providers/types.ts';
import type { OutboundRequest } from './upstream.ts';

/** Strings this long (UTF-16 units) are encoded outside the adapter's stringify. */
const LONG = 64 * 1024;
const SLICE = 16 * 1024;

/**
 * The adapter's request; built across turns (a promise) when the client's body was long. `built`:
 * the head and body object the adapter's rawChatRequest already built for this request, serialised
 * here instead of building them again (a long body is still built anew, with its placeholders).
 */
export function chatRequestInTurns(adapter: ProviderAdapter, req: ChatRequest, target: TargetInfo, bodyBytes: number, built?: { head: Omit<UpstreamRequest, 'body'>; body: Record<string, unknown> }): OutboundRequest | Promise<OutboundRequest> {
  // A body shorter than LONG bytes holds no string of LONG characters: nothing to walk, no await.
  if (bodyBytes >= LONG) return inTurns(adapter, req, target);
  return built ? { ...built.head, body: JSON.stringify(built.body) } : adapter.chatRequest(req, target);
}

async function inTurns(adapter: ProviderAdapter, req: ChatRequest, target: TargetInfo): Promise<OutboundRequest> {
  const long: string[] = [];
  const tag = `aam-long-${randomBytes(9).toString('hex')}-`;
  const stand = withPlaceholders(req, long, tag) as ChatRequest;
  if (long.length === 0) return adapter.chatRequest(req, target);
  const up = adapter.chatRequest(stand, target);
  const skeleton = up.body;
  const at = long.map((_, i) => {
    const quoted = `"${tag}${i}"`;
    const p = skeleton.indexOf(quoted);
    return p >= 0 && skeleton.indexOf(quoted, p + 1) < 0 ? p : -1;
  });
  if (at.includes(-1)) return adapter.chatRequest(req, target);
  const order = long.map((_, i) => i).sort((a, b) => at[a] - at[b]);
  const parts: Buffer[] = [];
  let from = 0;
  let since = performance.now();
  for (const i of order) {
    parts.push(Buffer.from(skeleton.slice(from, at[i]) + '"'));
    const s = long[i];
    for (let p = 0; p < s.length;) {
      let q = Math.min(s.length, p + SLICE);
      // Never between the halves of a surrogate pair: alone, each half would be escaped.
      if (q < s.length && isHigh(s.charCodeAt(q - 1)) && isLow(s.charCodeAt(q))) q++;
      const json = JSON.stringify(s.slice(p, q));
      parts.push(Buffer.from(json.slice(1, -1)));
      p = q;
      if (performance.now() - since >= TURN_MS) { await nextTurn(); since = performance.now(); }
    }
    parts.push(Buffer.from('"'));
    from = at[i] + tag.length + String(i).length + 2;
  }
  parts.push(Buffer.from(skeleton.slice(from)));
  return { ...up, body: Buffer.concat(parts) };
}

const isHigh = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number): boolean => c >= 0xdc00 && c <= 0xdfff;

/**
 * Only message text: adapters pass it through whole, while other strings may be read (a data URL
 * an adapter splits into media type and data must reach it as itself).
 */
const TEXT_KEYS = new Set(['content', 'text']);

/** `v` with each message text of LONG characters or more replaced by tag + its index in `long` (copied where changed). */
function withPlaceholders(v: unknown, long: string[], tag: string, key = ''): unknown {
  if (typeof v === 'string') return v.length >= LONG && TEXT_KEYS.has(key) ? tag + (long.push(v) - 1) : v;
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < v.length; i++) {
      const r = withPlaceholders(v[i], long, tag);
      if (r !== v[i]) { copy ??= v.slice(); copy[i] = r; }
    }
    return copy ?? v;
  }
  let copy: Record<string, unknown> | null = null;
  for (const k of Object.keys(v)) {
    const item = (v as Record<string, unknown>)[k];
    const r = withPlaceholders(item, long, tag, k);
    if (r !== item) { copy ??= { ...v }; copy[k] = r; }
  }
  return copy ?? v;
}
