// OpenAI Responses API, client side: canonical result / events -> a Response object and the
// Responses SSE event sequence (response.created, response.in_progress, output items with their
// content parts and text deltas, function-call argument deltas, response.completed with usage).
// One codec per request: it knows the response's id and the request fields a Response echoes,
// and hands the finished Response to `onCompleted` (the gateway stores it). Pure: no I/O.
import type { ChatResult, ClientCodec, FinishReason, ProviderAdapter, StreamEvent, Usage } from './types.ts';
import { nowSeconds } from './util.ts';
import type { Obj } from './util.ts';

export interface ResponseMeta {
  /** resp_... (aam's own id: state lives in aam, not at a provider). */
  id: string;
  /** Unix seconds. */
  createdAt: number;
  instructions: string | null;
  previousResponseId: string | null;
  store: boolean;
  /** Request fields echoed back (see ResponsesRequest.echo). */
  echo: Obj;
  /** Clock for completed_at (unix seconds); tests fix it. */
  now?: () => number;
}

export function responsesUsageJson(u: Usage): Obj {
  return {
    input_tokens: u.inputTokens,
    input_tokens_details: { cached_tokens: u.cachedTokens ?? 0 },
    output_tokens: u.outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.inputTokens + u.outputTokens,
  };
}

/** Item ids derive from the response id (unique), so they need no randomness and read back to it. */
export function itemId(meta: ResponseMeta, kind: 'msg' | 'fc', outputIndex: number): string {
  return `${kind}_${meta.id.startsWith('resp_') ? meta.id.slice(5) : meta.id}_${outputIndex}`;
}

/** The Response object before any output (response.created / response.in_progress). */
function responseJson(meta: ResponseMeta, model: string, status: string): Obj {
  const e = meta.echo;
  return {
    id: meta.id, object: 'response', created_at: meta.createdAt, status, background: false, error: null, incomplete_details: null,
    instructions: meta.instructions, max_output_tokens: e.max_output_tokens ?? null, model, output: [],
    parallel_tool_calls: e.parallel_tool_calls ?? true, previous_response_id: meta.previousResponseId,
    reasoning: e.reasoning ?? { effort: null, summary: null }, store: meta.store, temperature: e.temperature ?? 1,
    text: e.text ?? { format: { type: 'text' } }, tool_choice: e.tool_choice ?? 'auto', tools: e.tools ?? [], top_p: e.top_p ?? 1,
    truncation: 'disabled', usage: null, user: e.user ?? null, metadata: e.metadata ?? {},
  };
}

const INCOMPLETE: Partial<Record<FinishReason, string>> = { length: 'max_output_tokens', content_filter: 'content_filter' };

function finished(meta: ResponseMeta, model: string, output: Obj[], reason: FinishReason, usage: Usage | undefined): Obj {
  const incomplete = INCOMPLETE[reason];
  const r = responseJson(meta, model, incomplete ? 'incomplete' : 'completed');
  if (incomplete) r.incomplete_details = { reason: incomplete };
  r.completed_at = meta.now ? meta.now() : nowSeconds();
  r.output = output;
  r.usage = usage ? responsesUsageJson(usage) : null;
  return r;
}

function messageItem(id: string, text: string, status: string): Obj {
  return { id, type: 'message', status, role: 'assistant', content: [{ type: 'output_text', annotations: [], logprobs: [], text }] };
}

function callItem(id: string, callId: string, name: string, args: string, status: string): Obj {
  return { id, type: 'function_call', status, arguments: args, call_id: callId, name };
}

/** Output items of a whole answer: its text as one message (also when empty and no call was made), then its calls. */
export function outputItems(meta: ResponseMeta, r: ChatResult): Obj[] {
  const out: Obj[] = [];
  const status = INCOMPLETE[r.finishReason] ? 'incomplete' : 'completed';
  if ((r.text !== null && r.text !== '') || r.toolCalls.length === 0) out.push(messageItem(itemId(meta, 'msg', 0), r.text ?? '', status));
  for (const tc of r.toolCalls) out.push(callItem(itemId(meta, 'fc', out.length), tc.id, tc.function.name, tc.function.arguments, 'completed'));
  return out;
}

/** A finished Response: its output items' ids and its JSON text (what is answered, and stored). */
export interface FinishedResponse { outputIds: readonly string[]; json: string }

/** `at`: the item's fixed delta fields, serialized once per item (deltas are the hot path). */
interface OpenText { index: number; id: string; text: string; at: string }
interface OpenCall { index: number; id: string; callId: string; name: string; args: string; at: string }

/** A message item's JSON and its one part's, from its text already JSON-encoded (in messageItem's field order). */
const partJson = (textJson: string): string => `{"type":"output_text","annotations":[],"logprobs":[],"text":${textJson}}`;
const messageJson = (id: string, status: string, part: string): string => `{"id":${JSON.stringify(id)},"type":"message","status":"${status}","role":"assistant","content":[${part}]}`;
const callJson = (c: OpenCall, argsJson: string): string =>
  `{"id":${JSON.stringify(c.id)},"type":"function_call","status":"completed","arguments":${argsJson},"call_id":${JSON.stringify(c.callId)},"name":${JSON.stringify(c.name)}}`;

/** What the gateway adds to a Responses codec: the native upstream per provider type, and the store write to wait for. */
export interface ResponsesCodecHooks {
  native?(providerType: string): ProviderAdapter | undefined;
  settle?(): Promise<void> | undefined;
}

/**
 * The Responses API over the chat path for one request. `onCompleted` gets the finished Response
 * (whole or streamed) synchronously, before its bytes are returned for writing. A stream's
 * terminator is its response.completed (or .incomplete) event: `streamDone`, once finished.
 * A stream's two opening events are built by `prepareStream`, while the upstream works (or else when
 * first needed). The Response is serialized once: what is answered is what is stored.
 * A class, made once per request: its methods live on the prototype. As an object literal with a
 * getter and eight closures (plus the gateway's two, merged in with Object.assign), making it cost
 * 1-2.5 us per request (bench/tmp micro-benchmark, load ~9), more than encoding the answer.
 */
export class ResponsesCodec implements ClientCodec {
  readonly wire = 'responses' as const;
  private seq = 0;
  private terminator = '';
  /** response.created + response.in_progress (sequence numbers 0 and 1) for `preparedFor`, built ahead by prepareStream. */
  private opening: string | null = null;
  private preparedFor = '';

  private readonly meta: ResponseMeta;
  private readonly onCompleted: ((response: FinishedResponse) => void) | undefined;
  private readonly hooks: ResponsesCodecHooks | undefined;

  constructor(meta: ResponseMeta, onCompleted?: (response: FinishedResponse) => void, hooks?: ResponsesCodecHooks) {
    this.meta = meta;
    this.onCompleted = onCompleted;
    this.hooks = hooks;
  }

  get streamDone(): string { return this.terminator; }

  native(providerType: string): ProviderAdapter | undefined { return this.hooks?.native?.(providerType); }

  settle(): Promise<void> | undefined { return this.hooks?.settle?.(); }

  private frame(type: string, body: string): string {
    return `event: ${type}\ndata: {"type":"${type}","sequence_number":${this.seq++},${body}}\n\n`;
  }

  /** Opening frames prepared but not sent (an error came first, or another model): their sequence numbers are given again. */
  private unprepare(): void {
    if (this.opening !== null) { this.opening = null; this.seq = 0; }
  }

  private openingFrames(model: string): string {
    const r = JSON.stringify(responseJson(this.meta, model, 'in_progress'));
    return this.frame('response.created', `"response":${r}`) + this.frame('response.in_progress', `"response":${r}`);
  }

  prepareStream(routeName: string): void {
    // Sequence numbers 0 and 1: nothing else is framed before a stream's opening events.
    if (this.seq === 0) { this.opening = this.openingFrames(routeName); this.preparedFor = routeName; }
  }

  streamEncoder(opts: { includeUsage: boolean; routeName: string }): (ev: StreamEvent) => string {
    const meta = this.meta;
    const frame = (type: string, body: string): string => this.frame(type, body);
    const model = opts.routeName;
    let started = false;
    let done = false;
    let usage: Usage | undefined;
    let text: OpenText | null = null;
    const calls = new Map<number, OpenCall>(); // canonical tool index -> open function_call item
    const slots: Obj[] = []; // finished items by output_index
    let next = 0;

    const start = (): string => {
      started = true;
      if (this.opening !== null && this.preparedFor === model) {
        const s = this.opening;
        this.opening = null;
        return s;
      }
      this.unprepare();
      return this.openingFrames(model);
    };

    const openText = (): string => {
      const id = itemId(meta, 'msg', next);
      text = { index: next, id, text: '', at: `"item_id":${JSON.stringify(id)},"output_index":${next},"content_index":0` };
      next++;
      return frame('response.output_item.added', `"output_index":${text.index},"item":${messageJson(id, 'in_progress', '')}`)
        + frame('response.content_part.added', `${text.at},"part":${partJson('""')}`);
    };
    const closeText = (status: string): string => {
      const t = text;
      if (t === null) return '';
      text = null;
      slots[t.index] = messageItem(t.id, t.text, status);
      const tj = JSON.stringify(t.text); // once for the three events that carry it
      const part = partJson(tj);
      return frame('response.output_text.done', `${t.at},"text":${tj},"logprobs":[]`)
        + frame('response.content_part.done', `${t.at},"part":${part}`)
        + frame('response.output_item.done', `"output_index":${t.index},"item":${messageJson(t.id, status, part)}`);
    };
    const closeCalls = (): string => {
      let s = '';
      for (const c of calls.values()) {
        slots[c.index] = callItem(c.id, c.callId, c.name, c.args, 'completed');
        const aj = JSON.stringify(c.args);
        s += frame('response.function_call_arguments.done', `${c.at},"name":${JSON.stringify(c.name)},"arguments":${aj}`)
          + frame('response.output_item.done', `"output_index":${c.index},"item":${callJson(c, aj)}`);
      }
      calls.clear();
      return s;
    };

    return (ev: StreamEvent): string => {
      if (done) return '';
      if (ev.type === 'error') { done = true; return this.streamError(ev.message, ev.errorType); }
      let s = started ? '' : start();
      switch (ev.type) {
        case 'start':
          return s;
        case 'text': {
          if (ev.text.length === 0) return s;
          if (text === null) s += openText();
          const t = text as unknown as OpenText;
          t.text += ev.text;
          return s + frame('response.output_text.delta', `${t.at},"delta":${JSON.stringify(ev.text)},"logprobs":[]`);
        }
        case 'tool_start': {
          // Text before a call is its own message item; calls stay open (their arguments may interleave) until finish.
          s += closeText('completed');
          const id = itemId(meta, 'fc', next);
          const c: OpenCall = { index: next, id, callId: ev.id, name: ev.name, args: '', at: `"item_id":${JSON.stringify(id)},"output_index":${next}` };
          next++;
          calls.set(ev.index, c);
          return s + frame('response.output_item.added', `"output_index":${c.index},"item":${JSON.stringify(callItem(c.id, c.callId, c.name, '', 'in_progress'))}`);
        }
        case 'tool_args': {
          const c = calls.get(ev.index);
          if (c === undefined || ev.delta.length === 0) return s;
          c.args += ev.delta;
          return s + frame('response.function_call_arguments.delta', `${c.at},"delta":${JSON.stringify(ev.delta)}`);
        }
        case 'usage':
          usage = ev.usage;
          return s;
        case 'finish': {
          done = true;
          const status = INCOMPLETE[ev.reason] ? 'incomplete' : 'completed';
          if (next === 0) s += openText(); // an empty answer is still one (empty) message
          s += closeText(status) + closeCalls();
          const json = JSON.stringify(finished(meta, model, slots, ev.reason, usage));
          this.onCompleted?.({ outputIds: slots.map((it) => it.id as string), json });
          this.terminator = frame(status === 'completed' ? 'response.completed' : 'response.incomplete', `"response":${json}`);
          return s;
        }
        default:
          return s; // Anthropic thinking: not a Responses reasoning item (its signature is Anthropic's)
      }
    };
  }

  /** The error event (top-level and nested fields: the older and newer shapes SDKs read). */
  streamError(message: string, type: string): string {
    this.unprepare();
    const m = JSON.stringify(message);
    const t = JSON.stringify(type);
    return this.frame('error', `"code":${t},"message":${m},"param":null,"error":{"type":${t},"code":${t},"message":${m},"param":null}`);
  }

  encodeResultText(result: ChatResult, routeName: string): string {
    const items = outputItems(this.meta, result);
    const json = JSON.stringify(finished(this.meta, routeName, items, result.finishReason, result.usage));
    this.onCompleted?.({ outputIds: items.map((it) => it.id as string), json });
    return json;
  }

  encodeResult(result: ChatResult, routeName: string): Obj {
    return JSON.parse(this.encodeResultText(result, routeName)) as Obj;
  }
}

/** The codec for one request (see ResponsesCodec). */
export function responsesCodec(meta: ResponseMeta, onCompleted?: (response: FinishedResponse) => void, hooks?: ResponsesCodecHooks): ResponsesCodec {
  return new ResponsesCodec(meta, onCompleted, hooks);
}
