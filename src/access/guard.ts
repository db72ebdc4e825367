// The guardrail step of the shared access path: the guardrails an identity's policies attach,
// applied to model prompts/completions (also streamed) and to tool arguments/results. Every
// verdict other than allow is evidence (guardrail, category, where; never the value).
import type { AccessRuntime, GuardrailLists } from './runtime-view.ts';
import type { Identity } from '../identity/types.ts';
import type { ChatRequest, ChatResult, StreamEvent, ThinkingBlock } from '../providers/types.ts';
import { textBlocks, thinkingText, withTextBlocks, withThinkingText } from '../providers/types.ts';
import { guardrailsFor } from '../policy/decide.ts';
import type { PolicySet } from '../policy/compile.ts';
import {
  applyToJson, blockedMessage, compileGuardrail, createEventGuard, leafTexts, replaceLeaves, runWebhookGuardrails,
  type CompiledGuardrail, type Direction, type FindingSummary, type EventGuard, type StructuredVerdict,
} from '../guardrails/engine.ts';
import { scanValue } from '../guardrails/structured.ts';
export { nextTurn, TURN_MS } from '../guardrails/structured.ts';
import { AamError } from './errors.ts';
import { scrubForCheck } from './egress.ts';
import { identityEvidence, type EvidenceAt } from './evidence.ts';

const NONE: readonly CompiledGuardrail[] = Object.freeze([]);
const NONE_NAMES: readonly string[] = Object.freeze([]);

/** The union of an identity's policy guardrails and a route's, memoized per config (see AccessConfig.guardrailLists). */
function mergedNames(memo: GuardrailLists, a: readonly string[], b: readonly string[]): readonly string[] {
  let inner = memo.merged.get(a);
  if (!inner) { inner = new WeakMap(); memo.merged.set(a, inner); }
  let u = inner.get(b);
  if (!u) { u = [...new Set([...a, ...b])]; inner.set(b, u); }
  return u;
}

/** Every PII and secret detector, redacting: what people deciding a held call are shown. */
const REVIEW_REDACTOR: readonly CompiledGuardrail[] = [compileGuardrail('approval-review', {
  on: ['input'], detect: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'], action: 'redact',
})];

/** A held call's arguments for the approvals inbox: PII redacted, then credentials scrubbed, then clipped (64 KiB). */
export function redactForReview(rt: AccessRuntime, args: unknown): string {
  return rt.scrub(JSON.stringify(applyToJson(args ?? {}, REVIEW_REDACTOR, 'input').value), 64 * 1024);
}

export function guardrailsOf(rt: AccessRuntime, identity: Identity, routeGuardrails: readonly string[] = NONE_NAMES, set?: PolicySet): readonly CompiledGuardrail[] {
  const compiled = rt.compiled;
  const memo = compiled.guardrailLists;
  const own = set ? set.guardrails : guardrailsFor(identity.agent, compiled.policies);
  const names = routeGuardrails.length === 0 ? own : mergedNames(memo, own, routeGuardrails);
  if (names.length === 0) return NONE;
  let list = memo.byNames.get(names);
  if (!list) {
    list = names.map((n) => compiled.guardrails.get(n)).filter((g): g is CompiledGuardrail => g !== undefined);
    memo.byNames.set(names, list);
  }
  return list;
}

function record(rt: AccessRuntime, at: EvidenceAt, identity: Identity, direction: Direction, where: string, verdict: string, findings: readonly FindingSummary[], extra: Record<string, unknown> = {}): void {
  const metrics = rt.metrics;
  if (metrics?.guardrailVerdict) for (const name of new Set(findings.map((f) => f.guardrail))) metrics.guardrailVerdict(name, direction, verdict);
  rt.audit?.record({
    type: 'guardrail', request_id: at.requestId, trace_id: at.traceId, identity: identityEvidence(identity),
    guardrail: { direction, where, verdict, findings: findings.map((f) => ({ guardrail: f.guardrail, category: f.category, count: f.count })), ...extra },
  });
}

function blocked(guardrail: string, message: string): AamError {
  return new AamError(400, 'guardrail_blocked', message, { param: guardrail });
}

/** The walker's scan-limit block, decided while the body is read (Access.bodyWatch): the same answer and evidence. */
export function overScanBudget(rt: AccessRuntime, at: EvidenceAt, identity: Identity, g: CompiledGuardrail, where: string): AamError {
  record(rt, at, identity, 'input', where, 'block', [{ guardrail: g.name, category: 'scan_limit', count: 1 }]);
  return blocked(g.name, blockedMessage(g.name, 'scan_limit', 'input'));
}

export type Guarded<T> = { ok: true; value: T } | { ok: false; guardrail: string; message: string };

/**
 * The guardrail step for any value an agent sends (input) or receives (output), on every plane:
 * detectors, regexes, keywords and size over every string leaf (the walker; detectors, regexes and
 * keywords over object keys too), json_schema on tool payloads, then webhook guardrails over the same leaves. Non-allow verdicts are evidence.
 */
export async function guardValue<T>(rt: AccessRuntime, at: EvidenceAt, identity: Identity, gs: readonly CompiledGuardrail[], direction: Direction, value: T, where: string, shape: 'chat' | 'json' = 'json', key?: ItemKey): Promise<Guarded<T>> {
  if (gs.length === 0) return { ok: true, value };
  // Large values are scanned across loop turns (big leaves on the scan thread); small ones at once, with no await.
  const scanned = key === undefined ? scanValue(value, gs, direction, shape, rt.scanThread) : listedVerdict(rt, gs, direction, shape, value, key);
  const v = scanned instanceof Promise ? await scanned : scanned;
  if (v.verdict !== 'allow') record(rt, at, identity, direction, where, v.verdict, v.findings);
  if (v.verdict === 'block') return { ok: false, guardrail: v.blockedBy ?? '', message: blockedMessage(v.blockedBy ?? 'guardrail', v.blockedCategory, direction) };
  let out = v.value as T;
  if (gs.some((g) => g.webhook !== undefined && g.on.has(direction))) {
    // The checker is a third party: it never gets a credential (an upstream's echo of one).
    const w = await runWebhookGuardrails(scrubForCheck(rt.egress, leafTexts(out)), gs, direction, identity.agent.spiffeId, where);
    if (w.verdict !== 'allow') record(rt, at, identity, direction, where, w.verdict, [], { webhook: w.results });
    if (w.verdict === 'block') return { ok: false, guardrail: w.blockedBy ?? '', message: blockedMessage(w.blockedBy ?? 'webhook', undefined, direction) };
    if (w.verdict === 'redact') out = replaceLeaves(out, w.texts);
  }
  return { ok: true, value: out };
}

/**
 * What stands for a listed item in the verdict cache: its content (`{ content }`: the item itself,
 * matched by value), its text (a string), or an object that stands for it while it lives (a
 * tool's definition: a new object whenever the upstream changes it) with the name it is shown under.
 */
export type ItemKey = string | { readonly content: unknown } | { readonly obj: object; readonly name: string };

type Scanned = StructuredVerdict<unknown> | Promise<StructuredVerdict<unknown>>;
/** Items seen under one name, newest first: a private copy of each (what its verdict is about) and the verdict. */
type Seen = Array<{ readonly copy: unknown; readonly v: Scanned }>;
interface Verdicts { byObj: WeakMap<object, Map<string, Scanned>>; byText: Map<string, Scanned>; byContent: Map<string, Seen> }
/** Content keys kept per guardrail list (then it starts over: a listing is not a way to fill memory). */
const TEXT_VERDICTS_MAX = 10_000;
/** Items kept per name (a name whose content keeps changing is scanned again, not kept in memory). */
const SEEN_PER_NAME = 4;
/** Per guardrail list (one array per config and names: a reload starts over). */
const verdicts = new WeakMap<readonly CompiledGuardrail[], Verdicts>();

/**
 * The walker's verdict on a listed item, scanned once per guardrail list and item however many
 * callers list it. The verdict is cached, not its evidence: guardValue records it for every caller
 * whose listing it changes. Webhook guardrails (a third party may answer otherwise) are asked every time.
 */
function listedVerdict<T>(rt: AccessRuntime, gs: readonly CompiledGuardrail[], direction: Direction, shape: 'chat' | 'json', value: T, key: ItemKey): StructuredVerdict<T> | Promise<StructuredVerdict<T>> {
  let memo = verdicts.get(gs);
  if (!memo) verdicts.set(gs, memo = { byObj: new WeakMap(), byText: new Map(), byContent: new Map() });
  if (typeof key === 'object' && 'content' in key && typeof key.content === 'object' && key.content !== null) return contentVerdict(rt, memo, gs, direction, shape, value, key.content);
  let map: Map<string, Scanned>;
  let k: string;
  if (typeof key === 'string' || 'content' in key) {
    map = memo.byText;
    k = `${direction}\0${shape}\0${typeof key === 'string' ? key : String(key.content)}`;
    if (map.size >= TEXT_VERDICTS_MAX && !map.has(k)) map.clear();
  } else {
    let byName = memo.byObj.get(key.obj);
    if (!byName) memo.byObj.set(key.obj, byName = new Map());
    map = byName;
    k = `${direction}\0${shape}\0${key.name}`;
  }
  let v = map.get(k);
  if (v === undefined) {
    v = scanValue(value, gs, direction, shape, rt.scanThread);
    map.set(k, v);
    if (v instanceof Promise) v.catch(() => map.delete(k));
  }
  return v as StructuredVerdict<T> | Promise<StructuredVerdict<T>>;
}

/**
 * An object item's verdict, found by its name (name, uri, uriTemplate or id) and then by its
 * content, compared with a private copy of the item it was scanned for. Measured (bench/guard-listing.ts,
 * 50 MCP-tool-like items, warm): keyed by its JSON, each item cost 6-9 us (JSON.stringify and the
 * long key's hash); compared by value, ~1.5 us.
 */
function contentVerdict<T>(rt: AccessRuntime, memo: Verdicts, gs: readonly CompiledGuardrail[], direction: Direction, shape: 'chat' | 'json', value: T, content: object): StructuredVerdict<T> | Promise<StructuredVerdict<T>> {
  const k = `${direction}\0${shape}\0${itemName(content)}`;
  const map = memo.byContent;
  let seen = map.get(k);
  if (seen !== undefined) for (const s of seen) if (sameJson(s.copy, content, 0)) return s.v as StructuredVerdict<T> | Promise<StructuredVerdict<T>>;
  const v = scanValue(value, gs, direction, shape, rt.scanThread);
  let copy: unknown;
  // The copy is the cache's own: a listing that changes its items later changes no verdict. An item that cannot be copied is not kept.
  try { copy = structuredClone(content); } catch { return v; }
  if (seen === undefined) {
    if (map.size >= TEXT_VERDICTS_MAX) map.clear();
    map.set(k, seen = []);
  }
  const entry = { copy, v };
  seen.unshift(entry);
  if (seen.length > SEEN_PER_NAME) seen.pop();
  if (v instanceof Promise) {
    const kept = seen;
    v.catch(() => { const i = kept.indexOf(entry); if (i >= 0) kept.splice(i, 1); });
  }
  return v;
}

/** The name a listed item goes by (MCP prompt, resource, template; an A2A skill), '' for none. */
function itemName(item: object): string {
  const o = item as { name?: unknown; uri?: unknown; uriTemplate?: unknown; id?: unknown };
  return typeof o.name === 'string' ? o.name : typeof o.uri === 'string' ? o.uri : typeof o.uriTemplate === 'string' ? o.uriTemplate : typeof o.id === 'string' ? o.id : '';
}

/** Deepest nesting compared; deeper items are scanned again rather than compared. */
const SAME_DEPTH_MAX = 64;

/** The same JSON value: equal leaves, the same keys in the same order (what JSON.stringify would show equal). */
function sameJson(a: unknown, b: unknown, depth: number): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || depth >= SAME_DEPTH_MAX) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i], depth + 1)) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    const k = ka[i];
    if (k !== kb[i] || !sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], depth + 1)) return false;
  }
  return true;
}

/** One item of a listing: where it is shown (evidence), the guardrails it passes and what stands for it in the verdict cache. */
export interface ListedItem { where: string; gs: readonly CompiledGuardrail[]; key: ItemKey }

/**
 * A listing as the caller's output guardrails leave it (MCP tools, prompts, resources and
 * templates; an A2A card's skills): each item guarded on its own, with its descriptions, schemas
 * and examples. A redaction shows the redacted item; a block withholds that item alone (recorded
 * for this caller), so one poisoned item does not hide the others.
 */
export async function guardListing<T>(rt: AccessRuntime, at: EvidenceAt, identity: Identity, items: readonly T[], of: (item: T) => ListedItem, shape: 'chat' | 'json' = 'json'): Promise<T[]> {
  const out: T[] = [];
  for (const item of items) {
    const o = of(item);
    const g = await guardValue(rt, at, identity, o.gs, 'output', item, o.where, shape, o.key);
    if (g.ok) out.push(g.value);
  }
  return out;
}

function orThrow<T>(g: Guarded<T>): T {
  if (!g.ok) throw blocked(g.guardrail, g.message);
  return g.value;
}

/** guardValue for the model plane: a block is the 400 guardrail_blocked error. */
export async function guardOrThrow<T>(rt: AccessRuntime, at: EvidenceAt, identity: Identity, gs: readonly CompiledGuardrail[], direction: Direction, value: T, where: string, shape: 'chat' | 'json' = 'json'): Promise<T> {
  return orThrow(await guardValue(rt, at, identity, gs, direction, value, where, shape));
}

/** Input guardrails on a whole chat request (every message part, tool definitions, unknown fields); the route name is not content. */
export async function guardChatInput(rt: AccessRuntime, at: EvidenceAt, identity: Identity, gs: readonly CompiledGuardrail[], req: ChatRequest): Promise<ChatRequest> {
  const { model, ...rest } = req;
  const out = orThrow(await guardValue(rt, at, identity, gs, 'input', rest, 'prompt', 'chat'));
  return out === rest ? req : { model, ...out };
}

/**
 * `value` with each text leaf that the guardrails rewrote between `before` and `after` (the same
 * shape, leaves in walker order) rewritten the same way: a wire's own form of a request (e.g. the
 * Responses items aam stores) keeps the redactions, webhook ones included, without a second scan.
 */
export function sameRedactions<T>(value: T, before: unknown, after: unknown): T {
  if (before === after) return value;
  const from = leafTexts(before);
  const to = leafTexts(after);
  const changed = new Map<string, string>();
  for (let i = 0; i < from.length; i++) if (from[i] !== to[i] && to[i] !== undefined) changed.set(from[i], to[i]);
  if (changed.size === 0) return value;
  return replaceLeaves(value, leafTexts(value).map((t) => changed.get(t) ?? t));
}

/**
 * Output guardrails on a complete answer (text, tool-call arguments, and the text of its thinking
 * blocks and OpenAI reasoning items' summaries: the client reads it; never a signature, redacted
 * data or encrypted_content); the same object when clean.
 */
export async function guardChatOutput(rt: AccessRuntime, at: EvidenceAt, identity: Identity, gs: readonly CompiledGuardrail[], result: ChatResult): Promise<ChatResult> {
  const th = result.thinking;
  // Interleaved thinking with several text blocks: each block is shown on its own, so a redaction
  // keeps it in its place (the order's lengths are those of the guarded blocks).
  const segments = result.order !== undefined ? textBlocks(result.order, result.text ?? '') : undefined;
  const shown: { text: string | string[] | null; tool_calls: ChatResult['toolCalls']; thinking?: Array<string | string[]> } = { text: segments ?? result.text, tool_calls: result.toolCalls };
  if (th !== undefined) shown.thinking = th.map(thinkingText);
  const out = orThrow(await guardValue(rt, at, identity, gs, 'output', shown, 'completion', 'chat'));
  if (out === shown) return result;
  const guarded: ChatResult = Array.isArray(out.text) ? withTextBlocks({ ...result, toolCalls: out.tool_calls }, out.text) : { ...result, text: out.text, toolCalls: out.tool_calls };
  if (th !== undefined) guarded.thinking = th.map((b, i) => withThinkingText(b, out.thinking?.[i]));
  return guarded;
}

/**
 * True when a guardrail checks output. Then an answer leaves only as aam encodes what the guardrails
 * saw: an upstream body passed through as written would carry fields they never read.
 */
export function watchesOutput(gs: readonly CompiledGuardrail[]): boolean {
  return gs.some((g) => g.on.has('output'));
}

/** True when a webhook guardrail checks output: a stream cannot be checked piecewise by it. */
export function hasOutputWebhook(gs: readonly CompiledGuardrail[]): boolean {
  return gs.some((g) => g.webhook !== undefined && g.on.has('output'));
}

/** Stream deltas longer than this reach the output guard in pieces: one push scans about this much. */
const STREAM_PIECE = 16 * 1024;

/**
 * A text or tool-argument delta cut into pieces of at most STREAM_PIECE characters (never inside a
 * surrogate pair), so a giant delta is guarded across loop turns; any other event as it is. The
 * guard holds back what could still become a match, so pieces are guarded like any other chunking.
 */
export function streamPieces(ev: StreamEvent): StreamEvent[] {
  const s = ev.type === 'text' || ev.type === 'thinking' ? ev.text : ev.type === 'tool_args' ? ev.delta : '';
  if (s.length <= STREAM_PIECE) return [ev];
  const out: StreamEvent[] = [];
  for (let i = 0; i < s.length;) {
    let j = Math.min(s.length, i + STREAM_PIECE);
    const last = s.charCodeAt(j - 1);
    if (j < s.length && last >= 0xd800 && last <= 0xdbff) j--;
    const p = s.slice(i, j);
    out.push(ev.type === 'tool_args' ? { type: 'tool_args', index: ev.index, delta: p } : { type: ev.type === 'thinking' ? 'thinking' : 'text', text: p });
    i = j;
  }
  return out;
}

/** Windowed output guard for streams, or null when no guardrail watches output. */
export function chatStreamGuard(gs: readonly CompiledGuardrail[]): EventGuard | null {
  return watchesOutput(gs) ? createEventGuard(gs) : null;
}

export function recordStreamFindings(rt: AccessRuntime, at: EvidenceAt, identity: Identity, guard: EventGuard, blockedBy?: string): void {
  const f = guard.findings();
  if (f.length || blockedBy) record(rt, at, identity, 'output', 'stream', blockedBy ? 'block' : 'redact_or_flag', f);
}

export type GuardedEvents = { events: StreamEvent[]; blocked?: string };
