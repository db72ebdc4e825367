// The client's own request bytes as the upstream body, when nothing in them must change. A chat
// request is still parsed whole (policy, budget and guardrails read it), but re-serialising it for
// a provider of the same wire only spent CPU and bytes on the loop: the adapter's body object, its
// JSON.stringify and the socket's UTF-8 encoding of that string. The bytes go as they are when:
// - no object in them repeats a key (readJsonBody refuses those: JSON.parse keeps the last value,
//   an upstream may keep the first, so aam and the upstream could read different requests);
// - they are valid UTF-8 (aam read U+FFFD for a bad byte; an upstream may read something else);
// - the adapter's body would hold exactly the parsed request's fields and values, "model" aside,
//   or those and top-level fields it adds (ProviderAdapter.rawChatRequest, decided by one rule:
//   providers/util.ts rawChatHead): a guardrail's redaction, a Responses conversation or a
//   dropped or changed field is a new value, so such a request is re-serialised as before;
// and the route's target model is put in place of the client's "model" string, and the added
// fields (a stream's stream_options when the client wrote none: aam meters every stream) are
// written at the start of the top-level object.
import { isUtf8 } from 'node:buffer';
import type { JsonBody } from '../access/request.ts';
import { topLevelModel } from '../access/json-keys.ts';
import type { ChatRequest, ProviderAdapter, TargetInfo } from '../providers/types.ts';
import { chatRequestInTurns } from './long-body.ts';
import { isObj } from '../lib/json.ts';
import type { OutboundRequest } from './upstream.ts';

/** A client body that may go upstream as it is (see clientBody). */
export interface ClientBody { readonly value: Readonly<Record<string, unknown>>; readonly bytes: Buffer }

/** The body read by readJsonBody, when its bytes may stand for it upstream (an object, valid UTF-8). */
export function clientBody(body: JsonBody): ClientBody | undefined {
  const { value, bytes } = body;
  if (!isObj(value) || !isUtf8(bytes)) return undefined;
  return { value, bytes };
}

/**
 * One attempt's upstream request: the client's bytes where they say what the adapter's body would,
 * else the adapter's (the one rawChatRequest built to compare, when it did: built once per attempt).
 */
export function chatUpstream(adapter: ProviderAdapter, req: ChatRequest, target: TargetInfo, bodyBytes: number, client: ClientBody | undefined): OutboundRequest | Promise<OutboundRequest> {
  if (client === undefined || adapter.rawChatRequest === undefined) return chatRequestInTurns(adapter, req, target, bodyBytes);
  const raw = adapter.rawChatRequest(client.value, req, target);
  if (raw.body !== undefined) return chatRequestInTurns(adapter, req, target, bodyBytes, raw);
  const body = upstreamBytes(client, target.model, raw.add);
  return body ? { ...raw.head, body } : chatRequestInTurns(adapter, req, target, bodyBytes);
}

/**
 * The client's bytes with `model` as the top-level "model" string (found only when it differs)
 * and the fields in `add` (absent from them) written right after the top-level '{': one copy.
 */
function upstreamBytes(client: ClientBody, model: string, add: Readonly<Record<string, unknown>> | null): Buffer | null {
  const bytes = client.bytes;
  const at = client.value.model === model ? null : topLevelModel(bytes);
  if (at === null && client.value.model !== model) return null;
  if (at === null && add === null) return bytes;
  // The pieces: [0, open) the fields [open, from) the model [to, end).
  let open = 0;
  const members: Buffer[] = [];
  let size = bytes.length;
  if (add !== null) {
    while (bytes[open] === 0x20 || bytes[open] === 0x0a || bytes[open] === 0x0d || bytes[open] === 0x09) open++;
    if (bytes[open++] !== 0x7b) return null;
    for (const k in add) {
      const m = member(k, add[k]);
      members.push(m);
      size += m.length + 1; // and a comma
    }
  }
  const named = at === null ? null : modelBytes(model);
  if (at !== null && named !== null) size += named.length - (at[1] - at[0]);
  const out = Buffer.allocUnsafe(size);
  let w = bytes.copy(out, 0, 0, open);
  for (const m of members) {
    w += m.copy(out, w);
    out[w++] = 0x2c; // ','
  }
  if (at === null || named === null) bytes.copy(out, w, open);
  else {
    w += bytes.copy(out, w, open, at[0]);
    w += named.copy(out, w);
    bytes.copy(out, w, at[1]);
  }
  return out;
}

/** A target model's JSON string as bytes, kept per model name (the names are the config's). */
const MODELS = new Map<string, Buffer>();
function modelBytes(model: string): Buffer {
  let b = MODELS.get(model);
  if (b === undefined) {
    b = Buffer.from(JSON.stringify(model));
    if (MODELS.size < 1024) MODELS.set(model, b);
  }
  return b;
}

/** Members of flat frozen values seen before (a stream's usage option is one constant), serialised once: they cannot change. */
const MEMBERS = new WeakMap<object, { key: string; bytes: Buffer }>();

/** The bytes of the member "k":v. */
function member(k: string, v: unknown): Buffer {
  const frozen = typeof v === 'object' && v !== null && Object.isFrozen(v) && flat(v) ? v : null;
  const known = frozen && MEMBERS.get(frozen);
  if (known && known.key === k) return known.bytes;
  const bytes = Buffer.from(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
  if (frozen) MEMBERS.set(frozen, { key: k, bytes });
  return bytes;
}

/** Only primitives in it: frozen, it cannot change at any depth. */
function flat(v: object): boolean {
  for (const x of Object.values(v)) if (typeof x === 'object' && x !== null) return false;
  return true;
}
