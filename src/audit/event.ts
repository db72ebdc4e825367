// The audit event: one per decision and per upstream action, chained by hash.
// The stored text of an event is {"seq":S,"prev_hash":"P",<members>,"hash":"H"} where H is the
// SHA-256 of that same text without its trailing hash member: the bytes are the evidence, so a
// verifier (ours or anyone's) hashes them as stored, with no re-encoding rules to agree on.
// (Trails written before this format hashed prev_hash + canonical JSON; they still verify.)
import { hash as oneShotHash } from 'node:crypto';
import { canonicalJson } from './canonical.ts';
import { sha256Hex } from '../lib/hash.ts';
import type { JsonValue } from './canonical.ts';
import { errMsg } from '../lib/error-message.ts';

export type AuditEventType =
  | 'decision'
  | 'model_call'
  | 'tool_intent'
  | 'tool_call'
  | 'admin'
  | 'guardrail'
  | 'budget_alert'
  | 'credential_leak'
  | (string & {});

export interface AuditIdentity {
  spiffe_id: string;
  agent: string;
  owner?: string;
  team?: string;
  environment?: string;
  deployment?: string;
  key_id?: string;
  token_id?: string;
  method: string;
}

export interface AuditPolicy {
  name: string;
  /** Config/policy version digest the decision was made against. */
  version: string;
  rule: number | string;
  decision: 'allow' | 'deny' | 'approval_required' | (string & {});
  reason: string;
  /** Shadow mode: the audit-mode policy rule that would have denied this request. */
  would_deny?: { policy: string; rule: number | string; reason: string };
}

export interface AuditCredential {
  name: string;
  version?: string | number;
}

export interface AuditModel {
  route: string;
  /** null/absent when no upstream was reached (all targets failed, served from cache, denied). */
  provider?: string | null;
  model?: string | null;
  input_tokens?: number | null;
  output_tokens?: number | null;
  cached_tokens?: number | null;
  /** Prompt-cache writes (part of input_tokens, priced apart); present only when the upstream reported some. */
  cache_write_tokens?: number;
  /** null = unknown (never record unknown spend as 0); absent when no call was made. */
  cost_usd?: number | null;
  latency_ms?: number;
  stream?: boolean;
  /** Response cache: hit (served at $0 from cache), miss, or null when the route has no cache. */
  cache?: 'hit' | 'miss' | null;
  /** Upstream attempts that failed before the outcome (retried or fallen back from), in order; absent when the first attempt answered. */
  attempts?: Array<{ target: string; status: number; error: string }>;
}

export interface AuditTool {
  /** Absent on a decision made before any server/tool was involved (e.g. AuthZEN-style resource/action). */
  server?: string;
  tool?: string;
  resource?: string;
  action?: string;
  args_digest?: string;
  /** Only when configured, after guardrail redaction. */
  args?: JsonValue;
}

/** Who took an admin action: a system/CLI/token name, or a person from the IdP. */
export type AdminActor = string | { type: 'user'; sub: string; email?: string };

export interface AuditAdmin {
  action: string;
  target?: string;
  actor: AdminActor;
}

export interface AuditOutcome {
  status: string | number;
  error_class?: string;
  error?: string;
}

/**
 * What callers pass to record(): everything except the fields the log assigns (seq, prev_hash,
 * hash). A type alias, not an interface, so it is assignable to Record<string, unknown>.
 * Top-level fields not listed here are kept in the trail as given (JSON values only).
 */
export type AuditEventInput = {
  type: AuditEventType;
  request_id: string;
  /** ISO-8601; stamped by record() when omitted. */
  time?: string;
  trace_id?: string;
  identity?: AuditIdentity;
  policy?: AuditPolicy;
  credential?: AuditCredential;
  model?: AuditModel;
  tool?: AuditTool;
  admin?: AuditAdmin;
  outcome?: AuditOutcome;
  /** Event-specific extras (guardrail findings, budget thresholds, config digest...). */
  detail?: { [key: string]: JsonValue };
  /** Other fields (e.g. the tool plane's `plane`, `approval_id`) are chained as given. */
  [key: string]: unknown;
};

export type AuditEvent = AuditEventInput & {
  seq: number;
  time: string;
  prev_hash: string;
  hash: string;
};

export const GENESIS_HASH = '0'.repeat(64);

const HASH_TAIL = /,"hash":"([0-9a-f]{64})"\}$/;

// What an event's hash covers: its line (from encodeEvent) with seq and prev_hash put in front.
const chainPrefix = (seq: number, prevHash: string): string => '{"seq":' + seq + ',"prev_hash":"' + prevHash + '",';

/** The hash that seals event line `json` as event `seq` after `prevHash`. */
export function chainHash(json: string, seq: number, prevHash: string): string {
  return oneShotHash('sha256', chainPrefix(seq, prevHash) + json.slice(1));
}

// chainPrefix's parts, for chainHashLines to write into its buffer itself.
const SEQ_HEAD = Buffer.from('{"seq":');
const PREV_HEAD = Buffer.from(',"prev_hash":"');
const PREV_TAIL = Buffer.from('",');

/**
 * chainHash for each newline-terminated line in `bytes` (UTF-8, as stored), numbered from
 * firstSeq: the writer hashes the bytes it read without decoding them to strings. Each line's
 * prefix is written into the buffer part by part (seq digit by digit): a prefix string costs a
 * flattening copy per line, ~200 of the ~1,000 ns a line took (bench/audit-writer.ts).
 */
export function chainHashLines(bytes: Buffer, firstSeq: number, prevHash: string): string[] {
  const out: string[] = [];
  let scratch = Buffer.allocUnsafe(4096);
  let prev = prevHash;
  for (let at = 0, seq = firstSeq; at < bytes.length; seq++) {
    const nl = bytes.indexOf(10, at);
    const end = nl < 0 ? bytes.length : nl;
    let digits = 1;
    for (let x = seq; x >= 10; x = Math.floor(x / 10)) digits++;
    // prev is hex (ASCII): one byte per char.
    const len = SEQ_HEAD.length + digits + PREV_HEAD.length + prev.length + PREV_TAIL.length + end - at - 1;
    if (scratch.length < len) scratch = Buffer.allocUnsafe(len * 2);
    let o = SEQ_HEAD.copy(scratch, 0) + digits;
    for (let x = seq, i = o - 1; i >= SEQ_HEAD.length; i--, x = Math.floor(x / 10)) scratch[i] = 48 + (x % 10);
    o += PREV_HEAD.copy(scratch, o);
    o += scratch.write(prev, o, 'latin1');
    o += PREV_TAIL.copy(scratch, o);
    bytes.copy(scratch, o, at + 1, end);
    prev = oneShotHash('sha256', scratch.subarray(0, len));
    out.push(prev);
    at = end + 1;
  }
  return out;
}

/** The sealed text of an event line: what exports carry and what chainHash covers, plus the hash. */
export function sealedText(json: string, seq: number, prevHash: string, hash: string): string {
  return chainPrefix(seq, prevHash) + json.slice(1, -1) + sealTail(hash);
}

/** Seal one event line: its hash and sealed text. */
export function sealLine(json: string, seq: number, prevHash: string): { hash: string; body: string } {
  const { hash, head } = sealHead(json, seq, prevHash);
  return { hash, body: head + sealTail(hash) };
}

/**
 * Seal one event line in two parts: its hash, and its sealed text up to where the hash member goes
 * (head + sealTail(hash) is sealedText's bytes). The head is a slice of the very text hashed, so
 * it is made once and never copied (the fleet log has PostgreSQL append the tail).
 */
export function sealHead(json: string, seq: number, prevHash: string): { hash: string; head: string } {
  const hashed = chainPrefix(seq, prevHash) + json.slice(1);
  const hash = oneShotHash('sha256', hashed);
  return { hash, head: hashed.slice(0, -1) };
}

/** What follows a sealed text's head: the hash member and the closing brace. */
export const sealTail = (hash: string): string => ',"hash":"' + hash + '"}';

/**
 * The hash a stored event text commits to, recomputed from its bytes; undefined when the text
 * does not match its own hash member (edited) or has none. `parsed` is the same text parsed
 * (only read for trails in the older canonical format).
 */
export function recomputeHash(body: string, parsed: Record<string, unknown>): string | undefined {
  const m = HASH_TAIL.exec(body);
  if (m) return oneShotHash('sha256', body.slice(0, m.index) + '}') === m[1] ? m[1] : undefined;
  if (typeof parsed.hash !== 'string') return undefined;
  return eventHash(parsed) === parsed.hash ? parsed.hash : undefined;
}

// Export/JSONL lines are the stored text with "kind" spliced in first, never re-serialised.
const EXPORT_PREFIX = '{"kind":"event",';

/** The export line of one stored event text. */
export function exportLine(body: string): string {
  return EXPORT_PREFIX + body.slice(1);
}

/** The stored text back from an export line (the bytes its hash covers). */
export function storedText(line: string): string {
  return line.startsWith(EXPORT_PREFIX) ? '{' + line.slice(EXPORT_PREFIX.length) : line;
}

/** Query keys of one event, stored beside its line: time, type, request_id, agent, decision. */
export type IndexCols = [string, string, string, string | null, string | null];

/**
 * Encode an event for the trail: its JSON line as chainHash() takes it (time stamped,
 * assigned fields dropped) and its query keys. Runs where the event is recorded, so the
 * writer never parses. An event JSON cannot encode (BigInt, cycles) becomes an encoding-failure event.
 */
export function encodeEvent(input: AuditEventInput, at: number, iso: (ms: number) => string = isoTime): { json: string; cols: IndexCols } {
  let e: Record<string, unknown> = input;
  if ('seq' in e || 'prev_hash' in e || 'hash' in e) {
    const { seq: _s, prev_hash: _p, hash: _h, ...rest } = e;
    e = rest;
  }
  const given = typeof e.time === 'string' ? e.time : undefined;
  const time = given ?? iso(at);
  let json: string | undefined;
  try {
    const head = given === undefined ? (e as { [EVENT_HEAD]?: EventHead })[EVENT_HEAD] : undefined;
    const rest = head !== undefined ? membersAfter(e, head) : undefined;
    if (rest !== undefined) json = '{"time":"' + time + '"' + (head!.text ? ',' + head!.text : '') + rest + '}';
    else if (given === undefined && !('time' in e)) json = timeFirst(e, time);
    if (json === undefined) {
      // A time member given (or another value to drop), or an integer-like key: the time joined in front.
      const j = JSON.stringify(given !== undefined || e.time === undefined ? e : { ...e, time: undefined });
      json = given !== undefined ? j : '{"time":"' + time + '"' + (j.length > 2 ? ',' + j.slice(1) : '}');
    }
  } catch (err) {
    e = encodingFailureEvent(input, err);
    json = JSON.stringify({ ...e, time });
  }
  const { agent, decision } = indexColumns(e);
  return { json, cols: [time, String(e.type), String(e.request_id), agent, decision] };
}

const isoTime = (ms: number): string => new Date(ms).toISOString();

/**
 * The text of `e` (which has no time member) with `time` as its first member, as one flat string:
 * the scrubber reads it as it is. The event's own text with the time joined in front was three
 * strings (its text, a slice, the joined one) and a flatten by the scrubber: ~0.8 KB more per
 * event, on every plane. Undefined when an integer-like key leads (it goes before "time" in any object).
 */
function timeFirst(e: Record<string, unknown>, time: string): string | undefined {
  const json = JSON.stringify({ time, ...e });
  return json.startsWith('{"time":"') ? json : undefined;
}

/**
 * An event's leading members encoded ahead of the rest (a model call's type, request, trace,
 * identity and policy, while its upstream works: at c=1 the main thread waits then, and what is
 * left to encode once the answer is in is its outcome). Carried on the event under EVENT_HEAD (a
 * symbol: JSON.stringify and every reader of the event's fields pass it by).
 */
export interface EventHead {
  readonly keys: readonly string[];
  readonly values: readonly unknown[];
  /** JSON.stringify of those members, without its braces. */
  readonly text: string;
}

export const EVENT_HEAD: unique symbol = Symbol('aam.audit.eventHead');

/**
 * The head of an event that starts with `members` (undefined values are left out of the text, as
 * JSON.stringify leaves them out). Trailing undefined members are not part of it: they add nothing
 * to the text, so an event may be its own head's source while its last members (an outcome) are
 * still to be filled in.
 */
export function eventHead(members: Record<string, unknown>): EventHead {
  const keys = Object.keys(members);
  while (keys.length > 0 && members[keys[keys.length - 1]] === undefined) keys.pop();
  return { keys, values: keys.map((k) => members[k]), text: JSON.stringify(members).slice(1, -1) };
}

/**
 * The members of `e` after its head, encoded (each starting with a comma), when `e` still starts
 * with the head's very members (same keys in the same order, the same values): head text + this is
 * then JSON.stringify(e)'s text. Undefined otherwise (the caller encodes the whole event).
 */
function membersAfter(e: Record<string, unknown>, head: EventHead): string | undefined {
  const keys = Object.keys(e);
  const n = head.keys.length;
  if (keys.length < n) return undefined;
  for (let i = 0; i < n; i++) if (keys[i] !== head.keys[i] || e[keys[i]] !== head.values[i]) return undefined;
  if (keys.length === n) return '';
  if (keys.includes('__proto__')) return undefined; // not a member an assignment can copy
  // The rest as one object: one JSON.stringify call, cheaper than one per member.
  const rest: Record<string, unknown> = {};
  for (let i = n; i < keys.length; i++) rest[keys[i]] = e[keys[i]];
  const j = JSON.stringify(rest);
  return j.length > 2 ? ',' + j.slice(1, -1) : '';
}

/**
 * Date#toISOString for event times, its text memoized per second: an event is stamped once, on
 * the request's path before its answer, and V8's toISOString costs ~0.5 us (~1 us in situ: it
 * looks up the local time zone even for UTC text). One clock per audit log (no module state).
 * The same text as toISOString for every time; a fractional or out-of-range one goes to it.
 */
export function isoClock(): (ms: number) => string {
  let second = NaN;
  let prefix = ''; // "YYYY-MM-DDTHH:MM:SS."
  return (ms) => {
    if (!Number.isInteger(ms)) return isoTime(ms);
    const s = Math.floor(ms / 1000);
    if (s !== second) {
      const full = isoTime(s * 1000);
      if (full.length !== 24) return isoTime(ms); // a six-digit year (+/-YYYYYY)
      second = s;
      prefix = full.slice(0, 20);
    }
    // One string made per event: the second's prefix joined to a shared millisecond suffix (the
    // time is kept with its queued event for a batch, ~250 ms: a string of three joins and a
    // number's text was four objects promoted per event at c=64).
    return prefix + MS_SUFFIX[ms - s * 1000];
  };
}

/** "000Z" .. "999Z": an event time's milliseconds and zone, made once. */
const MS_SUFFIX: readonly string[] = Array.from({ length: 1000 }, (_, r) => `${r < 10 ? '00' : r < 100 ? '0' : ''}${r}Z`);

/** Trails in the older format: hash over prev_hash + canonical JSON of everything but `hash`. */
export function eventHash(eventWithoutHash: Record<string, unknown>): string {
  const { hash: _ignored, ...rest } = eventWithoutHash;
  return sha256Hex(String(rest.prev_hash) + canonicalJson(rest));
}

// The tool planes' events (tool.decision, tool.outcome, ...) are flat: identity fields, server,
// tool, resource and action at the top, the decision in `decision`. These read either shape, for
// every view of an event (aam audit show/query, OCSF) and its index columns.
type Flat = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The acting agent's name: `identity.agent`, or a flat event's `agent`. */
function agentOf(e: Flat): string | undefined {
  return str((e.identity as Flat | undefined)?.agent) ?? str(e.agent);
}

/** The decision's effect: `policy.decision`, or a flat event's `decision` (the effect itself, or an object's `effect`). */
function effectOf(e: Flat): string | undefined {
  const d = e.decision;
  return str((e.policy as Flat | undefined)?.decision) ?? str(d) ?? (d !== null && typeof d === 'object' ? str((d as Flat).effect) : undefined);
}

/** Copies of event fields kept as query keys; the verifier checks they agree with the event. */
export function indexColumns(e: Record<string, unknown>): { agent: string | null; decision: string | null } {
  return { agent: agentOf(e) ?? null, decision: effectOf(e) ?? null };
}

/** Who acted, from `identity` or the flat fields. */
export function identityOf(e: AuditEvent): AuditIdentity | undefined {
  if (e.identity) return e.identity;
  const f = e as Flat;
  const spiffe = str(f.spiffe_id);
  if (spiffe === undefined) return undefined;
  const id: AuditIdentity = { spiffe_id: spiffe, agent: agentOf(f) ?? '?', method: str(f.auth_method) ?? '?' };
  for (const k of ['owner', 'team', 'environment', 'deployment', 'key_id'] as const) {
    const v = str(f[k]);
    if (v !== undefined) id[k] = v;
  }
  return id;
}

/** The decision, from `policy` or a flat event's `decision`. */
export function policyOf(e: AuditEvent): AuditPolicy | undefined {
  if (e.policy) return e.policy;
  const d = (e as Flat).decision;
  if (d === null || typeof d !== 'object') return undefined;
  const v = d as Flat;
  return { name: str(v.policy) ?? '', version: str(v.config_version) ?? '', rule: typeof v.rule === 'number' ? v.rule : str(v.rule) ?? '?', decision: effectOf(e as Flat) ?? '?', reason: str(v.reason) ?? '' };
}

/** The tool acted on, from `tool` or the flat fields (where `tool` is the tool's name). */
export function toolOf(e: AuditEvent): AuditTool | undefined {
  if (typeof e.tool !== 'string') return e.tool;
  const f = e as Flat;
  return { server: str(f.server), tool: str(f.tool), resource: str(f.resource), action: str(f.action), args_digest: str(f.args_digest) };
}

/** The planes an event can belong to (the audit page's and API's `plane` filter). */
export const PLANES = ['model', 'tool', 'a2a', 'admin'] as const;
export type Plane = typeof PLANES[number];

/**
 * The plane an event belongs to, or null (guardrail, budget, delegation and leak events span planes).
 * A `decision` event is named by what it decided on: a model route, an A2A callee or a tool.
 */
export function planeOf(e: Record<string, unknown>): Plane | null {
  const type = String(e.type);
  if (type === 'admin') return 'admin';
  if (type === 'model_call' || (type === 'decision' && e.model !== undefined)) return 'model';
  if (type.startsWith('a2a') || (type === 'decision' && e.a2a !== undefined)) return 'a2a';
  if (type.startsWith('tool') || (type === 'decision' && e.tool !== undefined)) return 'tool';
  return null;
}

/** Whether an event of `type` can be in `plane` (decided on the stored keys, before the text is read). */
export function typeMayBeIn(type: string, plane: Plane): boolean {
  return type === 'decision' ? plane !== 'admin' : planeOf({ type }) === plane;
}

/**
 * An administrative action taken outside a client request (by the gateway itself or from the CLI):
 * who did what to which target; `detail` never holds a secret. The request id names the action.
 */
export function adminEvent(action: string, target: string, actor: AdminActor, detail: { [key: string]: string | number | boolean } = {}, status: number | string = 200, idPrefix = ''): AuditEventInput {
  return { type: 'admin', request_id: `${idPrefix}${action}-${Date.now()}`, admin: { action, target, actor }, detail, outcome: { status } };
}

/**
 * The type of the event that amends a request's outcome after the fact: its events (model_call,
 * tool.outcome, a2a_call) were written before its answer, then could not be made durable in time
 * (fleet: PostgreSQL down; embedded: the segment write failed), so the caller was refused 503, or
 * a stream whose 200 head was out ended with an error event (the agent got a cut answer). A
 * second event of the call's own type would be counted twice (policy diff, usage); this one
 * carries no decision, model or tool usage, only the link (request_id, `amends`) and what the
 * caller got.
 */
export const EVIDENCE_REFUSED = 'evidence_refused';

/** How the caller was answered when its evidence was not durable: refused outright, or its stream cut after the 200 head. */
export type UnacknowledgedAs = 'refused' | 'stream_cut';

/**
 * The members of an evidence_refused event (the caller adds request, trace and identity): the
 * event type it amends, how the caller was answered, and the outcome the counters also say
 * (status: the refusal's, 503, for a cut stream too, as aam_model_requests_total counts it).
 */
export function evidenceRefusedMembers(amends: string, answered: UnacknowledgedAs, status: number, error: string): { type: typeof EVIDENCE_REFUSED; amends: string; answered: UnacknowledgedAs; outcome: AuditOutcome } {
  return { type: EVIDENCE_REFUSED, amends, answered, outcome: { status, error_class: 'evidence_not_durable', error } };
}

/** What `aam audit show` and the console say of an evidence_refused event (null for other events). */
export function unacknowledgedText(e: Record<string, unknown>): string | null {
  if (e.type !== EVIDENCE_REFUSED) return null;
  const status = (e.outcome as AuditOutcome | undefined)?.status ?? 503;
  const amends = typeof e.amends === 'string' ? e.amends : 'call';
  return e.answered === 'stream_cut'
    ? `stream cut (200 head sent, then an error event; counted ${status}): evidence not durable, the ${amends} above was not acknowledged`
    : `answered ${status}: evidence not durable, the ${amends} above was not acknowledged`;
}

/** The event that replaces one whose content cannot be encoded: the failure is recorded, never dropped. */
export function encodingFailureEvent(input: AuditEventInput, err: unknown): AuditEventInput {
  return {
    type: typeof input.type === 'string' ? input.type : 'unknown',
    request_id: typeof input.request_id === 'string' ? input.request_id : 'unknown',
    time: typeof input.time === 'string' ? input.time : undefined,
    outcome: { status: 'audit_encoding_error', error_class: 'audit_encoding', error: errMsg(err) },
  };
}
