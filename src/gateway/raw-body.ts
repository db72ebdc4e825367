// The client's own request bytes as the upstream body, when nothing in them must change. A chat
// request is still parsed whole (policy, budget and guardrails read it), but re-serialising it for
// a provider of the same wire only spent CPU and bytes on the loop: the adapter's body object, its
// JSON.stringify and the socket's UTF-8 encoding of that string. The bytes go as they are when:
// - no object in them repeats a key (readJsonBody refuses those: JSON.parse keeps the last value,
//   an upstream may keep the first, so aam and the upstream could read different requests);
// - they are valid UTF-8 (aam read U+FFFD for a bad byte; an upstream may read something else);
// - the adapter's body would hold exactly the parsed request's fields and values, "model" aside
//   (ProviderAdapter.rawChatRequest): a guardrail's redaction, a Responses conversation or a
//   forced stream option is a new value, so such a request is re-serialised as before;
// and the route's target model is put in place of the client's "model" string.
import { isUtf8 } from 'node:buffer';
import type { JsonBody } from '../access/request.ts';
import { scanJsonKeys } from '../access/json-keys.ts';
import type { ChatRequest, ProviderAdapter, TargetInfo } from '../providers/types.ts';
import { chatRequestInTurns } from './long-body.ts';
import type { OutboundRequest } from './upstream.ts';

/** A client body that may go upstream as it is (see clientBody). */
export interface ClientBody { readonly value: Readonly<Record<string, unknown>>; readonly bytes: Buffer }

/** The body read by readJsonBody, when its bytes may stand for it upstream (an object, valid UTF-8). */
export function clientBody(body: JsonBody): ClientBody | undefined {
  const { value, bytes } = body;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !isUtf8(bytes)) return undefined;
  return { value: value as Record<string, unknown>, bytes };
}

/** One attempt's upstream request: the client's bytes where they say what the adapter's body would, else the adapter's. */
export function chatUpstream(adapter: ProviderAdapter, req: ChatRequest, target: TargetInfo, bodyBytes: number, client: ClientBody | undefined): OutboundRequest | Promise<OutboundRequest> {
  const head = client && adapter.rawChatRequest?.(client.value, req, target);
  const body = head && withModel(client, target.model);
  return body ? { ...head, body } : chatRequestInTurns(adapter, req, target, bodyBytes);
}

/** The client's bytes with `model` as the top-level "model" string (found only when it differs). */
function withModel(client: ClientBody, model: string): Buffer | null {
  if (client.value.model === model) return client.bytes;
  const at = scanJsonKeys(client.bytes).model;
  if (at === null) return null;
  return Buffer.concat([client.bytes.subarray(0, at[0]), Buffer.from(JSON.stringify(model)), client.bytes.subarray(at[1])]);
}
