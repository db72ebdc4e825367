// The leak hunt's vocabulary (test/leak-hunt.test.ts): provider-like random secrets, the forms an
// upstream may echo one in (what the leaky upstream writes), and the detector that looks for any
// of them in what an agent received or aam wrote. The detector is independent of aam's scrubber
// (src/credentials/scrub.ts) on purpose: it must catch what that scrubber misses.
import { randomInt } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { setFlagsFromString } from 'node:v8';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const B64 = ALNUM + '+/';

function randomFrom(alphabet: string, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[randomInt(alphabet.length)];
  return s;
}

/**
 * A long random secret shaped like a provider's: `prefix` + n characters. `opaque` draws from the
 * base64 alphabet and makes sure '+' and '/' occur (as in AWS secret keys and many opaque tokens),
 * so URL-encoding and the JSON escapes some serializers use change how it is spelled.
 */
export function providerSecret(prefix: string, n: number, opaque = false): string {
  for (;;) {
    const s = prefix + randomFrom(opaque ? B64 : ALNUM, n);
    if (!opaque || (s.includes('+') && s.includes('/'))) return s;
  }
}

function b64(text: string, enc: 'base64' | 'base64url'): string {
  return Buffer.from(text, 'utf8').toString(enc);
}

/** A piece of payload: `text` as a decoded string (headers, plain text), `json` as it is written inside a JSON string literal. */
export interface Piece { text: string; json: string }
const plain = (text: string): Piece => ({ text, json: JSON.stringify(text).slice(1, -1) });

/** How a piece is written in JSON by serializers found in the wild (PHP escapes '/', .NET escapes '+' and HTML characters). */
const phpJson = (t: string): Piece => ({ text: t, json: JSON.stringify(t).slice(1, -1).replace(/\//g, '\\/') });
const dotnetJson = (t: string): Piece => ({ text: t, json: JSON.stringify(t).slice(1, -1).replace(/[+<>&'`]/g, (c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`) });

/**
 * Text forms: each turns the secret into the pieces an upstream echoes. The base64 ones shift the
 * secret by 0, 1 and 2 bytes (every alignment of its 6-bit groups), as in `user:secret` basic auth.
 */
export const TEXT_FORMS: Readonly<Record<string, (s: string) => Piece[]>> = {
  raw: (s) => [plain(s)],
  'b64-std-0': (s) => [plain(b64(s, 'base64'))],
  'b64-std-1': (s) => [plain(b64(`u${s}:`, 'base64'))],
  'b64-std-2': (s) => [plain(b64(`us${s}:p`, 'base64'))],
  'b64-url-0': (s) => [plain(b64(s, 'base64url'))],
  'b64-url-1': (s) => [plain(b64(`u${s}:`, 'base64url'))],
  'b64-url-2': (s) => [plain(b64(`us${s}:p`, 'base64url'))],
  // Buffer.from(key).toString('hex'): an upstream dumping the bytes it got, either case.
  hex: (s) => [plain(Buffer.from(s, 'utf8').toString('hex'))],
  'hex-upper': (s) => [plain(Buffer.from(s, 'utf8').toString('hex').toUpperCase())],
  url: (s) => [plain(encodeURIComponent(s))],
  'url-lower': (s) => [plain(encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()))],
  'json-php': (s) => [phpJson(s)],
  'json-dotnet': (s) => [dotnetJson(s)],
};

/** Forms that are about how bytes travel rather than how the secret is spelled. */
export const SPLIT_DELTA = ['split-delta@1', 'split-delta@mid', 'split-delta@-1', 'split-delta-b64'] as const;
export const SPLIT_PARTS = ['split-parts@mid', 'split-parts@1'] as const;
export const SPLIT_TCP = ['split-tcp@mid', 'split-tcp@1'] as const;
export const BINARY = ['binary', 'gzip'] as const;

/** Where a split cuts the secret (`split-x@1`: after its first character; `@-1`: before its last). */
export function cutOf(form: string, secretLength: number): number {
  const at = form.split('@')[1] ?? 'mid';
  return at === '1' ? 1 : at === '-1' ? secretLength - 1 : secretLength >> 1;
}

/** The pieces for any form: split and transport forms carry the raw secret (b64 for split-delta-b64). */
export function piecesOf(form: string, secret: string): Piece[] {
  const f = TEXT_FORMS[form];
  if (f) return f(secret);
  if (form === 'split-delta-b64') return TEXT_FORMS['b64-std-1'](secret);
  const off = /^offset-(\d+)$/.exec(form);
  // Truncation probes: the secret after `n` characters of harmless text.
  if (off) return [plain('x'.repeat(Number(off[1])) + secret)];
  return [plain(secret)];
}

/** The payload text an upstream echoes: harmless words around the form's pieces. */
export function payload(form: string, secret: string, as: 'text' | 'json'): string {
  const pieces = piecesOf(form, secret).map((p) => p[as]);
  return form.startsWith('offset-') ? `${pieces[0]} (quoted)` : `upstream echo: ${pieces.join(' and ')} (end)`;
}

/** Bytes that are not UTF-8 around the secret: an application/octet-stream answer. */
export function binaryWith(secret: string): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28]), Buffer.from(secret, 'latin1'), Buffer.from([0x00, 0xe2, 0x82, 0xff, 0x0a])]);
}

// ---- detection ----

export interface Leak { secret: string; form: string; at: number; context: string }

/** The base64 text of `s` that does not depend on its neighbours, for each alignment (std and url). */
function base64Cores(s: string): Record<string, string> {
  const bytes = Buffer.from(s, 'utf8');
  const out: Record<string, string> = {};
  for (let k = 0; k < 3; k++) {
    const enc = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64');
    const core = enc.slice(Math.ceil((8 * k) / 6), Math.floor((8 * (bytes.length + k)) / 6));
    out[`b64-core-${k}`] = core;
    out[`b64url-core-${k}`] = core.replace(/\+/g, '-').replace(/\//g, '_');
  }
  return out;
}

/** Every spelling of a secret the hunt looks for (exact strings), by name. */
export function spellings(s: string): Map<string, string> {
  const m = new Map<string, string>([['raw', s]]);
  const add = (name: string, v: string) => { if (v.length >= 8 && ![...m.values()].includes(v)) m.set(name, v); };
  // (Base64 of ASCII text has no '+' or '/' unless the text has '>', '?' or '~': no escaped spellings needed.)
  for (const [k, v] of Object.entries(base64Cores(s))) add(k, v);
  const hex = Buffer.from(s, 'utf8').toString('hex');
  add('hex', hex);
  add('hex-upper', hex.toUpperCase());
  // A clipped hex dump: its first 16 digits (8 bytes of the secret), either case.
  add('hex-prefix', hex.slice(0, 16));
  add('hex-upper-prefix', hex.slice(0, 16).toUpperCase());
  add('url', encodeURIComponent(s));
  add('url-lower', encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase()));
  add('json-php', s.replace(/\//g, '\\/'));
  add('json-dotnet', s.replace(/\+/g, '\\u002B'));
  add('json-dotnet-lower', s.replace(/\+/g, '\\u002b'));
  return m;
}

export interface Secret { name: string; value: string }

/** Pieces of the raw secret this long are a leak too (a clipped secret). */
const WINDOW = 12;

interface Needle { secret: string; form: string }
interface Matcher { re: RegExp; owner: Map<string, Needle> }
const matchers = new WeakMap<readonly Secret[], Map<number, Matcher>>();

/** One regex for every needle of every secret (one pass over the text; longest needles first, so a whole spelling wins over its pieces). */
function matcherFor(secrets: readonly Secret[], stride: number): Matcher {
  let byStride = matchers.get(secrets);
  if (!byStride) { byStride = new Map(); matchers.set(secrets, byStride); }
  const cached = byStride.get(stride);
  if (cached) return cached;
  const owner = new Map<string, Needle>();
  const add = (secret: string, form: string, v: string) => { if (!owner.has(v)) owner.set(v, { secret, form }); };
  for (const s of secrets) {
    for (const [form, v] of spellings(s.value)) add(s.name, form, v);
    // "Never reveal even a prefix of length >= 8": its first 8 characters, anywhere.
    add(s.name, 'prefix-8', s.value.slice(0, 8));
    for (let i = 0; i + WINDOW <= s.value.length; i += stride) add(s.name, `piece@${i}`, s.value.slice(i, i + WINDOW));
  }
  const alt = [...owner.keys()].sort((a, b) => b.length - a.length).map((v) => v.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')).join('|');
  const m = { re: new RegExp(alt, 'g'), owner };
  byStride.set(stride, m);
  return m;
}

/**
 * Every secret found in `text`: any spelling, its first 8 characters (a prefix of length >= 8),
 * or a WINDOW-long piece of it. `stride` spaces the pieces tried (1: every piece; large files use
 * WINDOW / 2, which still finds any piece of WINDOW * 1.5 characters). Without `every`, one
 * finding per secret and spelling.
 */
export function findLeaks(text: string, secrets: readonly Secret[], opts: { stride?: number; every?: boolean } = {}): Leak[] {
  const { re, owner } = matcherFor(secrets, opts.stride ?? 1);
  const out: Leak[] = [];
  const seen = new Set<string>();
  // A process that loaded aam (linear-regex.ts) has V8 re-run a regex on its linear engine after
  // 50,000 backtracks; that engine took this alternation over a data dir's 4 MB WAL 39 min and
  // 4.7 GB (leak-hunt in npm test). V8 reads the flag at each exec: off for this synchronous scan only.
  setFlagsFromString('--no-enable-experimental-regexp-engine-on-excessive-backtracks');
  try {
    for (const m of text.matchAll(re)) {
      const n = owner.get(m[0]) as Needle;
      const k = `${n.secret}|${n.form}`;
      if (!opts.every && seen.has(k)) continue;
      seen.add(k);
      out.push({ secret: n.secret, form: n.form, at: m.index, context: JSON.stringify(text.slice(Math.max(0, m.index - 60), m.index + 90)) });
    }
  } finally { setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks'); }
  return out;
}

// ---- what an agent sees ----

const CONCAT_KEYS = new Set(['content', 'text', 'arguments', 'partial_json', 'message', 'data', 'description', 'thinking']);

/** String leaves of a JSON value (keys too); string leaves that are JSON themselves (tool arguments) are opened. */
function leaves(v: unknown, out: string[], concat: string[], key = '', depth = 0): void {
  if (depth > 64) return;
  if (typeof v === 'string') {
    out.push(v);
    if (CONCAT_KEYS.has(key)) concat.push(v);
    const t = v.trimStart();
    if (t.startsWith('{') || t.startsWith('[')) { try { leaves(JSON.parse(v), out, concat, '', depth + 1); } catch { /* not JSON */ } }
    return;
  }
  if (Array.isArray(v)) { for (const x of v) leaves(x, out, concat, key, depth + 1); return; }
  if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) { out.push(k); leaves(x, out, concat, k, depth + 1); }
}

/** Bytes as latin1 (one char per byte: ASCII secrets show whatever the encoding), inflated too when gzip. */
export function rawViews(bytes: Buffer): string[] {
  const views = [bytes.toString('latin1')];
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) { try { views.push(gunzipSync(bytes).toString('latin1')); } catch { /* not gzip after all */ } }
  return views;
}

/**
 * The texts an agent can derive from bytes it received: the bytes (latin1), inflated
 * when gzip, every JSON string leaf decoded (whole body, or each SSE data line), and the text
 * fields of all documents concatenated in order (a secret split over stream deltas or content
 * parts reassembles there).
 */
export function agentViews(bytes: Buffer): string[] {
  const views = rawViews(bytes);
  const text = bytes.toString('utf8');
  const docs: unknown[] = [];
  try { docs.push(JSON.parse(text)); } catch {
    for (const line of text.split(/\r?\n/)) {
      if (!line.startsWith('data:')) continue;
      try { docs.push(JSON.parse(line.slice(5))); } catch { /* [DONE], comments */ }
    }
  }
  const out: string[] = [];
  const concat: string[] = [];
  for (const d of docs) leaves(d, out, concat);
  views.push(out.join('\n'), concat.join(''));
  return views;
}

/** Every leaf of decoded values (SDK results, error objects) and their text fields concatenated. */
export function valueViews(values: readonly unknown[]): string[] {
  const out: string[] = [];
  const concat: string[] = [];
  for (const v of values) {
    if (v instanceof Error) { out.push(v.message, String((v as { stack?: string }).stack ?? '')); leaves({ ...v }, out, concat); continue; }
    leaves(v, out, concat);
  }
  return [out.join('\n'), concat.join('')];
}
