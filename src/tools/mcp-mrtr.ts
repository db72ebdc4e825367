// MCP 2026-07-28 interim results relayed through aam: multi round-trip requests (basic/patterns/mrtr)
// here, and the sealing of Tasks extension ids (used by mcp-tasks.ts). An upstream
// answers `resultType: "input_required"` with `inputRequests` and an opaque `requestState`; the
// client retries with `inputResponses` and that state. aam hands the client its own state instead:
// the upstream's, sealed (AES-256-GCM) with who asked, which server, method and name, a digest of
// the arguments and an expiry. A retry is forwarded only when the seal opens and every binding
// matches, so another identity (or another request) cannot answer the input request, and the
// client never sees or alters the upstream's state. Pure: the key comes from the caller.
import { sealParts, unsealParts } from '../store/seal.ts';
import { RPC, ToolError } from './types.ts';
import { isObj } from '../lib/json.ts';

/** How long a client may take to gather the input (the spec asks for a short expiry). */
export const STATE_TTL_MS = 10 * 60_000;
const PREFIX = 'aam1.';

/** What a sealed state is bound to: the request it continues, as the caller sends it. */
export interface StateBinding { sub: string; server: string; method: string; name: string; args: string }

/** The MRTR fields of a 2026-07-28 request, and the client capabilities an upstream may ask input of. */
export interface MrtrIn { inputResponses?: unknown; requestState?: unknown; clientCapabilities?: Record<string, unknown> }

type Sealed = StateBinding & { up?: string; exp: number };

/** `value` as an opaque string only `key` opens (AES-256-GCM through store/seal.ts): confidential and tamper-evident. */
export function seal(key: Buffer, prefix: string, value: object): string {
  const p = sealParts(key, JSON.stringify(value));
  return prefix + Buffer.concat([p.nonce, p.tag, p.ciphertext]).toString('base64url');
}

/** What `seal` sealed with this key and prefix, or null (not one, altered, or another key's). */
export function unseal<T>(key: Buffer, prefix: string, sealed: unknown): T | null {
  if (typeof sealed !== 'string' || !sealed.startsWith(prefix)) return null;
  const raw = Buffer.from(sealed.slice(prefix.length), 'base64url');
  const text = unsealParts(key, { nonce: raw.subarray(0, 12), tag: raw.subarray(12, 28), ciphertext: raw.subarray(28) });
  if (text === null) return null;
  try { return JSON.parse(text) as T; } catch { return null; }
}

export function sealState(key: Buffer, b: StateBinding, upstream: string | undefined, now = Date.now()): string {
  return seal(key, PREFIX, { ...b, ...(upstream !== undefined ? { up: upstream } : {}), exp: now + STATE_TTL_MS } satisfies Sealed);
}

/** The upstream's state (undefined when it sent none), or why this state is refused for this request. */
export function openState(key: Buffer, state: unknown, b: StateBinding, now = Date.now()): { ok: true; upstream?: string } | { ok: false; why: string } {
  if (typeof state !== 'string' || !state.startsWith(PREFIX)) return { ok: false, why: 'it is not a requestState aam issued' };
  const s = unseal<Sealed>(key, PREFIX, state);
  if (!s) return { ok: false, why: 'it was altered, or issued by another gateway' };
  if (s.sub !== b.sub) return { ok: false, why: 'it was issued to another identity' };
  if (s.server !== b.server || s.method !== b.method || s.name !== b.name || s.args !== b.args) return { ok: false, why: `it continues another request (${s.method} "${s.name}" with other arguments), not this one` };
  if (now > s.exp) return { ok: false, why: `it expired (a retry must come within ${STATE_TTL_MS / 60_000} min)` };
  return { ok: true, ...(s.up !== undefined ? { upstream: s.up } : {}) };
}

/** The Tasks extension's capability key (ext-tasks, SEP-2663). */
export const TASKS_EXT = 'io.modelcontextprotocol/tasks';

/**
 * The client capabilities an upstream may act on through aam: input requests the client answers
 * itself (elicitation, sampling, roots) and the Tasks extension (aam relays tasks/*).
 */
export function inputCapabilities(caps: unknown): Record<string, unknown> {
  if (typeof caps !== 'object' || caps === null) return {};
  const c = caps as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of ['elicitation', 'sampling', 'roots']) if (k in c) out[k] = c[k];
  const ext = c.extensions as Record<string, unknown> | undefined;
  if (ext && typeof ext === 'object' && ext[TASKS_EXT] !== undefined) out.extensions = { [TASKS_EXT]: ext[TASKS_EXT] };
  return out;
}

export const isInputRequired = (r: unknown): r is { resultType: 'input_required'; inputRequests?: unknown; requestState?: unknown } =>
  typeof r === 'object' && r !== null && (r as { resultType?: unknown }).resultType === 'input_required';

/** Tasks extension (see mcp-tasks.ts): the task id aam gives a client seals the upstream's with its binding. */
export const TASK_PREFIX = 'aamtask1.';
/** How long aam honours a task id: the upstream's ttlMs, within these bounds. */
const DEFAULT_TTL_MS = 60 * 60_000;
const MAX_TTL_MS = 24 * 60 * 60_000;

type Json = Record<string, unknown>;
/**
 * `args`: the digest of the creating call's arguments, so an id stays bounded whatever the call sent;
 * `ttl`: the ttlMs aam honours the id for (the client is told this one); `exp`: when it lapses.
 */
export interface TaskBinding { sub: string; server: string; tool: string; args: string; up: string; ttl?: number; exp: number }

export const isTask = (r: unknown): boolean => typeof r === 'object' && r !== null && (r as Json).resultType === 'task';

/** Did this request's client capabilities declare the Tasks extension (SEP-2663: per request, `extensions[TASKS_EXT]`)? */
export const declaresTasks = (caps: unknown): boolean => {
  const ext = typeof caps === 'object' && caps !== null ? (caps as Json).extensions : undefined;
  return typeof ext === 'object' && ext !== null && (ext as Json)[TASKS_EXT] !== undefined;
};

/** The statuses a Task may have (SEP-2663 "Task Status"); completed, failed and cancelled are terminal. */
const STATUSES: ReadonlySet<string> = new Set(['working', 'input_required', 'completed', 'failed', 'cancelled']);
/** The field each status carries in a DetailedTask (tasks/get, notifications/tasks). */
const PAYLOAD: Record<string, string> = { input_required: 'inputRequests', completed: 'result', failed: 'error' };

/**
 * Why an upstream's task is not one a client can rely on (SEP-2663's Task: a known status,
 * createdAt and lastUpdatedAt; `detailed`, a tasks/get result or notifications/tasks: also the
 * payload its status carries), or null. Names fields only: the upstream's values stay out of errors.
 */
export function taskFault(t: Json, detailed: boolean): string | null {
  if (typeof t.status !== 'string' || !STATUSES.has(t.status)) return 'its status is missing or none of working, input_required, completed, failed, cancelled';
  for (const k of ['createdAt', 'lastUpdatedAt']) if (typeof t[k] !== 'string') return `it has no ${k} (an ISO 8601 string)`;
  if (t.statusMessage !== undefined && typeof t.statusMessage !== 'string') return 'its statusMessage is not a string';
  if (t.pollIntervalMs !== undefined && !(Number.isInteger(t.pollIntervalMs) && (t.pollIntervalMs as number) >= 0)) return 'its pollIntervalMs is not a whole number of milliseconds';
  const payload = PAYLOAD[t.status];
  if (detailed && payload && !isObj(t[payload])) return `a ${t.status} task must carry ${payload} (an object)`;
  return null;
}

/**
 * The ttlMs a client is told: the upstream's while it is within what aam honours the id for
 * (the binding's), else aam's (the id lapses then, whatever the upstream keeps).
 */
export function taskTtl(b: Pick<TaskBinding, 'ttl'>, upstreamTtl: unknown): number {
  const ours = b.ttl ?? DEFAULT_TTL_MS;
  return Number.isInteger(upstreamTtl) && (upstreamTtl as number) > 0 && (upstreamTtl as number) < ours ? upstreamTtl as number : ours;
}

/** The CreateTaskResult the client gets: the upstream's, with aam's sealed taskId and the ttlMs aam honours it for. */
export function relayTask(key: Buffer, r: unknown, b: Omit<TaskBinding, 'up' | 'exp' | 'ttl'>, now = Date.now()): Json {
  const task = r as Json;
  if (typeof task.taskId !== 'string' || !task.taskId) throw new ToolError('upstream_error', `MCP server "${b.server}" answered tools/call "${b.tool}" with a task without a taskId`, { code: RPC.upstream, status: 502 });
  const fault = taskFault(task, false);
  if (fault) throw new ToolError('upstream_error', `MCP server "${b.server}" answered tools/call "${b.tool}" with a task that is not one per the Tasks extension: ${fault}`, { code: RPC.upstream, status: 502 });
  const ttl = Number.isInteger(task.ttlMs) && (task.ttlMs as number) > 0 ? Math.min(task.ttlMs as number, MAX_TTL_MS) : DEFAULT_TTL_MS;
  return { ...task, resultType: 'task', taskId: seal(key, TASK_PREFIX, { ...b, up: task.taskId, ttl, exp: now + ttl } satisfies TaskBinding), ttlMs: ttl };
}
