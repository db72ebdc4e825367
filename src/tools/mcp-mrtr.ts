// MCP 2026-07-28 multi round-trip requests (basic/patterns/mrtr) relayed through aam. An upstream
// answers `resultType: "input_required"` with `inputRequests` and an opaque `requestState`; the
// client retries with `inputResponses` and that state. aam hands the client its own state instead:
// the upstream's, sealed (AES-256-GCM) with who asked, which server, method and name, a digest of
// the arguments and an expiry. A retry is forwarded only when the seal opens and every binding
// matches, so another identity (or another request) cannot answer the input request, and the
// client never sees or alters the upstream's state. Pure: the key comes from the caller.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/** How long a client may take to gather the input (the spec asks for a short expiry). */
export const STATE_TTL_MS = 10 * 60_000;
const PREFIX = 'aam1.';

/** What a sealed state is bound to: the request it continues, as the caller sends it. */
export interface StateBinding { sub: string; server: string; method: string; name: string; args: string }

/** The MRTR fields of a 2026-07-28 request, and the client capabilities an upstream may ask input of. */
export interface MrtrIn { inputResponses?: unknown; requestState?: unknown; clientCapabilities?: Record<string, unknown> }

type Sealed = StateBinding & { up?: string; exp: number };

export function sealState(key: Buffer, b: StateBinding, upstream: string | undefined, now = Date.now()): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const body: Sealed = { ...b, ...(upstream !== undefined ? { up: upstream } : {}), exp: now + STATE_TTL_MS };
  const ct = Buffer.concat([c.update(JSON.stringify(body), 'utf8'), c.final()]);
  return PREFIX + Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64url');
}

/** The upstream's state (undefined when it sent none), or why this state is refused for this request. */
export function openState(key: Buffer, state: unknown, b: StateBinding, now = Date.now()): { ok: true; upstream?: string } | { ok: false; why: string } {
  if (typeof state !== 'string' || !state.startsWith(PREFIX)) return { ok: false, why: 'it is not a requestState aam issued' };
  let s: Sealed;
  try {
    const raw = Buffer.from(state.slice(PREFIX.length), 'base64url');
    const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    s = JSON.parse(Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8')) as Sealed;
  } catch {
    return { ok: false, why: 'it was altered, or issued by another gateway' };
  }
  if (s.sub !== b.sub) return { ok: false, why: 'it was issued to another identity' };
  if (s.server !== b.server || s.method !== b.method || s.name !== b.name || s.args !== b.args) return { ok: false, why: `it continues another request (${s.method} "${s.name}" with other arguments), not this one` };
  if (now > s.exp) return { ok: false, why: `it expired (a retry must come within ${STATE_TTL_MS / 60_000} min)` };
  return { ok: true, ...(s.up !== undefined ? { upstream: s.up } : {}) };
}

/** The capabilities an upstream may send inputRequests for: those the client answers itself. */
export function inputCapabilities(caps: unknown): Record<string, unknown> {
  if (typeof caps !== 'object' || caps === null) return {};
  const out: Record<string, unknown> = {};
  for (const k of ['elicitation', 'sampling', 'roots']) if (k in caps) out[k] = (caps as Record<string, unknown>)[k];
  return out;
}

export const isInputRequired = (r: unknown): r is { resultType: 'input_required'; inputRequests?: unknown; requestState?: unknown } =>
  typeof r === 'object' && r !== null && (r as { resultType?: unknown }).resultType === 'input_required';
