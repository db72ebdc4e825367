// Guardrails over structured payloads: canonical chat messages (every text part and tool-call
// argument) and JSON values (MCP tool arguments/results, string leaves). Copy-on-write: the
// caller gets its own objects back unless something was redacted.
import { evaluateText, finding, findingsFor, newMemo, newTally, overScanLimit, record, summaries, validate, type CompiledGuardrail, type Tally } from './engine-core.ts';
import type { Category, Direction, FindingSummary, Verdict } from './types.ts';

export interface StructuredVerdict<T> {
  verdict: Verdict;
  /** The redacted value, or the very same input object when nothing changed. */
  value: T;
  changed: boolean;
  findings: FindingSummary[];
  blockedBy?: string;
  blockedCategory?: Category;
  /** JSON-schema violations (paths and rules, never values), when a guardrail has json_schema. */
  schemaErrors?: string[];
}

const MAX_DEPTH = 64;

/**
 * The one guardrail walker: every string leaf of a JSON value, in a fixed order, mapped through
 * `fn` with copy-on-write (the same object comes back when nothing changed). Every plane and
 * direction uses it (chat requests and results, embeddings input, MCP arguments and results,
 * HTTP tool bodies, webhooks), so nothing an agent sends or receives is out of its sight:
 * - a string under a key named `arguments` that parses as JSON (tool-call arguments) is walked as JSON;
 * - base64 payloads (`data:` URLs, and `data` / `file_data` / `b64_json` values, A2A file parts' `raw`
 *   and MCP resource contents' `blob`) that decode to text
 *   are walked as that text (re-encoded when changed); ones that decode to binary media are skipped,
 *   but a string that only fits the alphabet (few letters, or one case) is read as written;
 * - opaque provider tokens (thinking `signature`, `encrypted_content`) and enum-like `role`/`type`
 *   values are not content and are skipped;
 * - deeper than MAX_DEPTH, a subtree is handed to `deep` as one flat JSON text (it cannot be rebuilt);
 * - an object's keys, but for the wire's own field names (WIRE_KEYS), go to `keys` as one text per object.
 */
export interface LeafVisitor {
  leaf(text: string, path: string): string;
  /** A subtree too deep to rebuild: scan its JSON text; the walker keeps the value unchanged. */
  deep(flat: string, path: string): void;
  /** The keys of the object at `path` that are not WIRE_KEYS, joined by newlines (never renamed). */
  keys?(names: string, path: string): void;
}

/**
 * Field names of the shapes aam walks (chat wires, JSON Schema, MCP, A2A): protocol vocabulary,
 * not content, so their keys are not scanned and a plain chat request runs no detector on its keys
 * (a chat request has dozens of them). Every other key (tool parameter names, unknown fields,
 * tool arguments, DataPart objects) is content an agent chose.
 */
const WIRE_KEYS: ReadonlySet<string> = new Set([
  'messages', 'role', 'content', 'type', 'text', 'name', 'id', 'tool_calls', 'tool_call_id', 'function', 'arguments',
  'tools', 'tool_choice', 'description', 'parameters', 'properties', 'required', 'items', 'enum', 'additionalProperties',
  'strict', 'image_url', 'url', 'detail', 'file', 'file_id', 'filename', 'file_data', 'input_audio', 'data', 'format',
  'source', 'media_type', 'cache_control', 'thinking', 'signature', 'is_error', 'refusal', 'stop', 'extra', 'anthropicExtra',
  'response_format', 'json_schema', 'schema', 'metadata', 'stream', 'stream_options', 'include_usage', 'max_tokens',
  'max_completion_tokens', 'temperature', 'top_p', 'user', 'parallel_tool_calls', 'tool_use_id', 'input', 'title', 'default',
  'parts', 'messageId', 'contextId', 'taskId', 'kind', 'mimeType', 'mediaType', 'uri', 'blob', 'raw', 'structuredContent', 'isError',
  'annotations', '_meta', 'anyOf', 'oneOf', 'allOf', '$ref', '$defs', 'const', 'minimum', 'maximum', 'pattern',
]);

const OPAQUE_KEYS: ReadonlySet<string> = new Set(['signature', 'encrypted_content']);
const ENUM_KEYS: ReadonlySet<string> = new Set(['role', 'type']);
/**
 * Keys whose string values may be base64 payloads, with the shortest value read as one: 64 for
 * names that also hold plain text (`data`), 1 for fields that are base64 by protocol (A2A's `raw`,
 * MCP's `blob`), so a small text file (one CSV row) is read as the text it holds too.
 */
const BASE64_KEYS: ReadonlyMap<string, number> = new Map([['data', 64], ['file_data', 64], ['b64_json', 64], ['raw', 1], ['blob', 1]]);
const ARGUMENTS_KEY = 'arguments';
const ENUM_VALUE = /^[a-z_]{1,32}$/;

/** Keys whose string values the walker may skip, decode or re-parse rather than scan as they are. */
export function walkerMaySkip(key: string): boolean {
  return OPAQUE_KEYS.has(key) || ENUM_KEYS.has(key) || BASE64_KEYS.has(key) || key === ARGUMENTS_KEY;
}
const DATA_URL = /^data:([^,;]{0,100})((?:;[^,;]{0,100}){0,4});base64,/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

export function mapLeaves(v: unknown, visit: LeafVisitor, path = '$', depth = 0, key = ''): unknown {
  if (typeof v === 'string') return mapString(v, visit, path, key);
  if (typeof v !== 'object' || v === null) return v;
  if (depth >= MAX_DEPTH) { visit.deep(JSON.stringify(v), path); return v; }
  if (Array.isArray(v)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < v.length; i++) {
      const r = mapLeaves(v[i], visit, `${path}[${i}]`, depth + 1, key);
      if (r !== v[i]) { copy ??= v.slice(); copy[i] = r; }
    }
    return copy ?? v;
  }
  let copy: Record<string, unknown> | null = null;
  const keyed = visit.keys !== undefined;
  let names = '';
  for (const [k, item] of Object.entries(v)) {
    if (keyed && !WIRE_KEYS.has(k)) names = names === '' ? k : `${names}\n${k}`;
    if (OPAQUE_KEYS.has(k) && typeof item === 'string') continue;
    const r = mapLeaves(item, visit, `${path}.${k}`, depth + 1, k);
    if (r !== item) { copy ??= { ...v }; copy[k] = r; }
  }
  if (names !== '') visit.keys!(names, path);
  return copy ?? v;
}

/**
 * How many leaves mapLeaves visits at a path ending in `.text`, counted up to `max`. It may count
 * more, never fewer: a string under a key ending in `text` counts (in an array too), and a JSON
 * `arguments` string counts as `max` (its inside is walked as JSON). No path is built, so a caller
 * that needs only those leaves (scrubAcross) skips the walk when there are too few of them.
 */
export function textLeavesUpTo(v: unknown, max: number, depth = 0, key = ''): number {
  if (typeof v === 'string') return textLeafCount(key, v, max);
  if (typeof v !== 'object' || v === null || depth >= MAX_DEPTH) return 0;
  let n = 0;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length && n < max; i++) n += textLeavesUpTo(v[i], max, depth + 1, key);
    return n;
  }
  for (const k in v) {
    if (n >= max) break;
    if (!Object.hasOwn(v, k)) continue;
    n += textLeavesUpTo((v as Record<string, unknown>)[k], max, depth + 1, k);
  }
  return n;
}

/**
 * What a string under `key` (an array's elements under the array's key) counts in textLeavesUpTo:
 * 1 for a text part, `max` for a JSON `arguments` string, else 0. One rule for every walk that counts them.
 */
export function textLeafCount(key: string, s: string, max: number): number {
  if (key === 'text' || key.endsWith('.text')) return 1;
  return key === ARGUMENTS_KEY && (s.startsWith('{') || s.startsWith('[')) ? max : 0;
}

/**
 * How mapLeaves reads a string for scrubAcross's text parts (its leaves at a path ending in `.text`),
 * for a walk that gathers them without building paths (a2a/event-walk.ts): 1, a part as it is (an
 * object member under `text` or `*.text`: not an array element, whose path ends in `]`); 0, no part;
 * -1, read otherwise (a data: URL part is decoded, a JSON `arguments` string walked as JSON: only
 * mapLeaves knows its parts). `member`: the string is an object's member (else an array element).
 */
export function textPartOf(key: string, s: string, member: boolean): -1 | 0 | 1 {
  if (key === ARGUMENTS_KEY) return s.startsWith('{') || s.startsWith('[') ? -1 : 0;
  if (!member || (key !== 'text' && !key.endsWith('.text'))) return 0;
  return s.startsWith('data:') ? -1 : 1;
}

/** mapLeaves hands a subtree at this depth (its value's own is 0) to `deep`: its text parts are not gathered. */
export const LEAF_MAX_DEPTH = MAX_DEPTH;

function mapString(s: string, visit: LeafVisitor, path: string, key: string): string {
  if (ENUM_KEYS.has(key) && ENUM_VALUE.test(s)) return s;
  if (key === ARGUMENTS_KEY && (s.startsWith('{') || s.startsWith('['))) {
    let parsed: unknown;
    try { parsed = JSON.parse(s); } catch { parsed = undefined; }
    if (parsed !== undefined) {
      const out = mapLeaves(parsed, visit, path, 1);
      return out === parsed ? s : JSON.stringify(out);
    }
  }
  const url = s.startsWith('data:') ? DATA_URL.exec(s) : null;
  if (url || (s.length >= (BASE64_KEYS.get(key) ?? Infinity) && BASE64.test(s))) {
    const prefix = url ? url[0] : '';
    const b64 = s.slice(prefix.length);
    const bytes = Buffer.from(b64, b64.includes('-') || b64.includes('_') ? 'base64url' : 'base64');
    const decoded = textOf(bytes);
    if (decoded !== null) {
      const out = visit.leaf(decoded, path);
      return out === decoded ? s : prefix + Buffer.from(out, 'utf8').toString('base64');
    }
    // Binary (an image, audio, a PDF): nothing a text detector can read. Encoded bytes are mostly
    // letters of both cases (52 of the 64 symbols); a string of digits and `-`/`/` with a letter or
    // two (`078-05-1120/219-09-9999/…`) only fits the alphabet, and is read as the string it is.
    if (readsAsEncoded(b64)) return s;
  }
  return visit.leaf(s, path);
}

/** Upper and lower case letters, and letters at least half of the symbols (random base64: ~81 %). */
function readsAsEncoded(s: string): boolean {
  let upper = 0, lower = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) | 32;
    if (c >= 97 && c <= 122) { if (s.charCodeAt(i) < 97) upper++; else lower++; }
  }
  return upper > 0 && lower > 0 && (upper + lower) * 2 >= s.length;
}

/** Decoded base64 -> UTF-8 text, or null when it is not printable text (an image, audio, a PDF). */
function textOf(bytes: Buffer): string | null {
  if (bytes.length === 0) return null;
  let control = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c < 9 || (c > 13 && c < 32) || c === 127) control++;
  }
  if (control > bytes.length / 100) return null;
  const text = bytes.toString('utf8');
  return text.includes('\uFFFD') ? null : text;
}

/** One walk's state. `queue` is set once the walk defers leaves (scanValue), so they run across loop turns. */
interface Walk {
  gs: readonly CompiledGuardrail[];
  dir: Direction;
  t: Tally;
  chars: number;
  /** Leaves (and deep subtrees) visited so far: a leaf's index in walker order. */
  k: number;
  /** Characters scanned inline, in the caller's loop turn (only counted when deferring is allowed). */
  inline: number;
  defer: boolean;
  queue: Queued[] | null;
  /** Outputs that differ from their leaf, by leaf index (kept once leaves may be deferred). */
  changed: Map<number, string> | null;
  /** Every object's scanned keys, joined by newlines: one text scanned once, after the leaves (scanKeys). */
  keyText: string;
  /** Where each object's keys start in keyText, and the object's path. */
  keyAt: KeyAt[] | null;
}

/** Where one object's keys start in the walk's key text, and the object's path. */
interface KeyAt { start: number; at: string }

/** A leaf (or a deep subtree's JSON text, or the walk's keys with `keyAt`) left for later, in walker order. */
export interface Queued { k: number; text: string; at: string; deep: boolean; keyAt?: KeyAt[] }

function newWalk(gs: readonly CompiledGuardrail[], dir: Direction, defer: boolean): Walk {
  return { gs, dir, t: newTally(), chars: 0, k: 0, inline: 0, defer, queue: null, changed: null, keyText: '', keyAt: null };
}

/** Deep subtrees are scanned as text, and block rather than pass what cannot be redacted. */
function scanDeep(gs: readonly CompiledGuardrail[], dir: Direction, t: Tally, flat: string, at: string): void {
  const probe = newTally();
  probe.scanned = t.scanned; // one scan budget per walk, deep subtrees included
  evaluateText(flat, gs, dir, probe, false, at);
  t.scanned = probe.scanned;
  for (const s of probe.summaries.values()) {
    const g = gs.find((x) => x.name === s.guardrail);
    if (g) record(t, g, Array.from({ length: s.count }, () => finding(s.category, 0, 0)), g.action === 'redact' ? 'block' : g.action, at);
  }
}

/** Scan one leaf or deep subtree into the tally: the output text (the same string when unchanged). */
export function scanQueued(gs: readonly CompiledGuardrail[], dir: Direction, t: Tally, q: Queued): string {
  if (q.keyAt !== undefined) { scanKeys(gs, dir, t, q.text, q.keyAt); return q.text; }
  if (!q.deep) return evaluateText(q.text, gs, dir, t, false, q.at);
  scanDeep(gs, dir, t, q.text, q.at);
  return q.text;
}

/**
 * Characters scanned in the caller's loop turn before the rest of a walk is deferred: ~1-1.5 ms of
 * every detector (bench/DETECTORS.md: at most ~80 us/KB), so small bodies pay nothing extra.
 */
export const INLINE_CHARS = 16 * 1024;

/** Is this leaf (and so every later one) left for scanValue to scan across loop turns? */
function deferred(w: Walk, len: number): boolean {
  if (!w.defer) return false;
  if (w.queue === null) {
    if (w.inline + len <= INLINE_CHARS) { w.inline += len; return false; }
    w.queue = [];
  }
  return true;
}

/** The detector pass over one value: every leaf scanned (or queued), redactions applied, findings tallied. */
function walk(v: unknown, path: string, w: Walk): unknown {
  const out = mapLeaves(v, {
    leaf(text, at) {
      const k = w.k++;
      w.chars += text.length;
      if (deferred(w, text.length)) { w.queue!.push({ k, text, at, deep: false }); return text; }
      const out = evaluateText(text, w.gs, w.dir, w.t, false, at);
      if (out !== text && w.defer) (w.changed ??= new Map()).set(k, out);
      return out;
    },
    deep(flat, at) {
      const k = w.k++;
      w.chars += flat.length;
      if (deferred(w, flat.length)) { w.queue!.push({ k, text: flat, at, deep: true }); return; }
      scanDeep(w.gs, w.dir, w.t, flat, at);
    },
    keys(names, at) {
      const start = w.keyText === '' ? 0 : w.keyText.length + 1;
      (w.keyAt ??= []).push({ start, at });
      w.keyText = start === 0 ? names : `${w.keyText}\n${names}`;
    },
  }, path);
  // The keys after every leaf, queued like one when the walk defers (so the split walk equals this one).
  if (w.keyText !== '') {
    const q: Queued = { k: w.k++, text: w.keyText, at: '$', deep: true, keyAt: w.keyAt! };
    if (deferred(w, q.text.length)) w.queue!.push(q);
    else scanQueued(w.gs, w.dir, w.t, q);
  }
  return out;
}

/**
 * The walk's object keys, scanned as one text after every leaf, against the same scan budget. A
 * key cannot be redacted in place (renaming may collide or break the receiver's schema), so redact
 * blocks, as in deep subtrees; a finding is evidence at the path of the object holding the key,
 * suffixed `{key}`.
 */
function scanKeys(gs: readonly CompiledGuardrail[], dir: Direction, t: Tally, text: string, keyAt: readonly KeyAt[]): void {
  const memo = newMemo(text);
  const scanned = t.scanned;
  t.scanned += text.length;
  for (const g of gs) {
    if (!g.on.has(dir)) continue;
    if (scanned + text.length > g.maxScanChars) { overScanLimit(t, g, `${keyAt[0].at}{key}`); continue; }
    for (const f of findingsFor(g, memo, false)) record(t, g, [f], g.action === 'redact' ? 'block' : g.action, `${keyOwner(keyAt, f.start)}{key}`);
  }
}

/** The path of the object whose keys hold offset `pos` of the walk's key text (binary search: findings x objects stays small). */
function keyOwner(at: readonly KeyAt[], pos: number): string {
  let lo = 0;
  let hi = at.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (at[mid].start <= pos) lo = mid; else hi = mid - 1;
  }
  return at[lo].at;
}

/** Every text leaf of a value, in walker order (what webhook guardrails are sent; not keys, which cannot be rewritten per leaf). */
export function leafTexts(v: unknown): string[] {
  const out: string[] = [];
  mapLeaves(v, { leaf(text) { out.push(text); return text; }, deep(flat) { out.push(flat); } });
  return out;
}

/** Replace the leaves of a value, in walker order, by `texts` (a webhook's per-leaf redaction). */
export function replaceLeaves<T>(v: T, texts: readonly string[]): T {
  return replaceEach(v, (k, text) => { const r = texts[k]; return typeof r === 'string' ? r : text; });
}

/** The leaves of a value mapped by their index in walker order. */
function replaceEach<T>(v: T, fn: (k: number, text: string) => string): T {
  let k = 0;
  return mapLeaves(v, { leaf(text) { return fn(k++, text); }, deep() { k++; } }) as T;
}

/** Size limits on structured payloads count all text; a truncated conversation or argument is not meaningful, so redact means block. */
function checkSize(w: Walk, where: string): void {
  for (const g of w.gs) {
    if (g.on.has(w.dir) && g.maxChars !== undefined && w.chars > g.maxChars) {
      record(w.t, g, [finding('size', g.maxChars, w.chars)], g.action === 'flag' ? 'flag' : 'block', where);
    }
  }
}

function result<T>(w: Walk, input: T, value: T, schemaErrors?: string[]): StructuredVerdict<T> {
  const res: StructuredVerdict<T> = { verdict: w.t.verdict, value, changed: value !== input, findings: summaries(w.t) };
  if (w.t.blockedBy !== undefined) { res.blockedBy = w.t.blockedBy; res.blockedCategory = w.t.blockedCategory; }
  if (schemaErrors !== undefined && schemaErrors.length > 0) res.schemaErrors = schemaErrors;
  return res;
}

/** After the walk: size limits, and json_schema guardrails on JSON payloads (tool arguments and results). */
function finish<T>(w: Walk, shape: 'chat' | 'json', value: T, out: T): StructuredVerdict<T> {
  checkSize(w, shape === 'chat' ? 'messages' : '$');
  if (shape === 'chat') return result(w, value, out);
  const schemaErrors: string[] = [];
  for (const g of w.gs) {
    if (!g.on.has(w.dir) || g.schema === undefined) continue;
    const errors = validate(g.schema, value);
    if (errors.length === 0) continue;
    // A schema violation cannot be redacted away: redact escalates to block.
    record(w.t, g, errors.map(() => finding('schema', 0, 0)), g.action === 'flag' ? 'flag' : 'block', errors[0].path);
    for (const e of errors) schemaErrors.push(`${g.name}: ${e.path} ${e.message}`);
  }
  return result(w, value, out, schemaErrors);
}

/** Scan string leaves of a JSON value (MCP tool arguments or results) and check json_schema guardrails. */
export function applyToJson<T>(value: T, guardrails: readonly CompiledGuardrail[], direction: Direction): StructuredVerdict<T> {
  const w = newWalk(guardrails, direction, false);
  return finish(w, 'json', value, walk(value, '$', w) as T);
}

/** Scan a whole chat request or result (messages, every content part, tool definitions, unknown fields). */
export function applyToChat<T extends object>(value: T, guardrails: readonly CompiledGuardrail[], direction: Direction): StructuredVerdict<T> {
  const w = newWalk(guardrails, direction, false);
  return finish(w, 'chat', value, walk(value, '$', w) as T);
}

/** Scans one large leaf on another thread (src/guardrails/offload.ts), updating the tally in place. */
export interface ScanOffload {
  scan(gs: readonly CompiledGuardrail[], dir: Direction, t: Tally, q: Queued): Promise<string>;
}

/** Leaves at least this long go to the offload thread, when there is one. */
export const OFFLOAD_CHARS = 16 * 1024;
/** The most a deferred scan (or a guarded stream) holds the event loop before it lets other requests run. */
export const TURN_MS = 1;

/** Resolves in a later loop turn, after pending I/O (other requests) has run. */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * applyToChat / applyToJson without holding the event loop: the first INLINE_CHARS characters are
 * scanned at once (a small value is answered synchronously, with no await); the rest, in walker
 * order, across loop turns, large leaves on the offload thread. Same tally, same order, same
 * redactions as the synchronous walk (test/guardrails-offload.test.ts).
 */
export function scanValue<T>(value: T, gs: readonly CompiledGuardrail[], dir: Direction, shape: 'chat' | 'json', offload?: ScanOffload): StructuredVerdict<T> | Promise<StructuredVerdict<T>> {
  const w = newWalk(gs, dir, true);
  const out = walk(value, '$', w) as T;
  if (w.queue === null) return finish(w, shape, value, out);
  // Deferred leaves came back unchanged from the walk: when none changes, `out` is the answer.
  return drain(w, offload).then((changed) => finish(w, shape, value, changed ? replaceEach(value, (k, text) => w.changed!.get(k) ?? text) : out));
}

/**
 * Will a guardrail scan a text this long, next in the walk? Past every scan budget it is only
 * tallied as over the limit (evaluateText): nothing for the thread, and no megabytes to copy there.
 */
function scansAny(w: Walk, len: number): boolean {
  for (const g of w.gs) if (g.on.has(w.dir) && w.t.scanned + len <= g.maxScanChars) return true;
  return false;
}

/** Scan the deferred leaves in order; true when one of them changed (a redaction). */
async function drain(w: Walk, offload: ScanOffload | undefined): Promise<boolean> {
  let changed = false;
  let since = performance.now();
  let handed = false;
  for (const q of w.queue!) {
    let out: string | undefined;
    if (offload !== undefined && q.text.length >= OFFLOAD_CHARS && scansAny(w, q.text.length)) {
      // Copying megabytes to the thread costs ~1-3 ms: not in the turn that just parsed them.
      if (!handed) { handed = true; await nextTurn(); }
      // A failed thread (crashed, closing) leaves the tally untouched: scan here instead.
      try { out = await offload.scan(w.gs, w.dir, w.t, q); } catch { out = undefined; }
      since = performance.now();
    }
    out ??= scanQueued(w.gs, w.dir, w.t, q);
    if (out !== q.text) { (w.changed ??= new Map()).set(q.k, out); changed = true; }
    if (performance.now() - since >= TURN_MS) { await nextTurn(); since = performance.now(); }
  }
  return changed;
}
