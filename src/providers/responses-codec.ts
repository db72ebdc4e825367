// OpenAI Responses API, client side: canonical result / events -> a Response object and the
// Responses SSE event sequence (response.created, response.in_progress, output items with their
// content parts and text deltas, function-call argument deltas, response.completed with usage).
// One codec per request: it knows the response's id and the request fields a Response echoes,
// and hands the finished Response to `onCompleted` (the gateway stores it). Pure: no I/O.
import type { ChatResult, ClientCodec, FinishReason, Json, ProviderAdapter, ReasoningBlock, StreamEvent, ThinkingBlock, ToolCall, Usage } from './types.ts';
import { reasoningItemId, resultBlocks } from './types.ts';
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
  /**
   * include reasoning.encrypted_content: an Anthropic thinking block's reasoning item carries its
   * signature (a redacted one its data) as encrypted_content, so it can come back (thinkingOf).
   */
  encrypted?: boolean;
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
export function itemId(meta: ResponseMeta, kind: 'msg' | 'fc' | 'rs', outputIndex: number): string {
  return `${kind}_${meta.id.startsWith('resp_') ? meta.id.slice(5) : meta.id}_${outputIndex}`;
}

/**
 * The Response object before any output (response.created / response.in_progress): what
 * responseText writes, as an object (tests compare the two; the codec writes the text).
 */
export function responseJson(meta: ResponseMeta, model: string, status: string): Obj {
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

/** A finished Response as an object (what finishedText writes; tests compare the two). */
export function finished(meta: ResponseMeta, model: string, output: Obj[], reason: FinishReason, usage: Usage | undefined, completedAt: number): Obj {
  const incomplete = INCOMPLETE[reason];
  const r = responseJson(meta, model, incomplete ? 'incomplete' : 'completed');
  if (incomplete) r.incomplete_details = { reason: incomplete };
  r.completed_at = completedAt;
  r.output = output;
  r.usage = usage ? responsesUsageJson(usage) : null;
  return r;
}

// ---- The Response as text: JSON.stringify of the objects above, written as a template ----
// Building the ~25-field object and serializing it cost more than the rest of encoding an answer
// (bench/tmp micro-benchmark); only the values a request sets are serialized here. The text is
// the same, byte for byte, as JSON.stringify of responseJson / finished (responses-translate
// compares them over requests that set every echoed field).

/** A number as JSON.stringify writes it (a value that is not a finite number: as it would, via JSON.stringify). */
const num = (n: number): string => (Number.isFinite(n) ? `${n}` : JSON.stringify(n));
/** JSON of a value that may be absent: its default's (already JSON) when it is. */
const or = (v: unknown, dflt: string): string => (v === undefined || v === null ? dflt : JSON.stringify(v));

/** The fields of a Response that only the request sets, as text: what follows its output items, and what follows its usage. */
interface Echoed { afterOutput: string; afterUsage: string }

function echoed(meta: ResponseMeta): Echoed {
  const e = meta.echo;
  return {
    afterOutput: `],"parallel_tool_calls":${or(e.parallel_tool_calls, 'true')},"previous_response_id":${or(meta.previousResponseId, 'null')}`
      + `,"reasoning":${or(e.reasoning, '{"effort":null,"summary":null}')},"store":${meta.store ? 'true' : 'false'},"temperature":${or(e.temperature, '1')}`
      + `,"text":${or(e.text, '{"format":{"type":"text"}}')},"tool_choice":${or(e.tool_choice, '"auto"')},"tools":${or(e.tools, '[]')},"top_p":${or(e.top_p, '1')}`
      + ',"truncation":"disabled","usage":',
    afterUsage: `,"user":${or(e.user, 'null')},"metadata":${or(e.metadata, '{}')}`,
  };
}

/** The Response's JSON up to its output items (`incomplete`: incomplete_details.reason, or null). */
function head(meta: ResponseMeta, model: string, status: string, incomplete: string | undefined, error = 'null'): string {
  return `{"id":${JSON.stringify(meta.id)},"object":"response","created_at":${num(meta.createdAt)},"status":"${status}","background":false,"error":${error}`
    + `,"incomplete_details":${incomplete === undefined ? 'null' : `{"reason":"${incomplete}"}`},"instructions":${or(meta.instructions, 'null')}`
    + `,"max_output_tokens":${or(meta.echo.max_output_tokens, 'null')},"model":${JSON.stringify(model)},"output":[`;
}

/** responsesUsageJson(u) as text. */
function usageText(u: Usage): string {
  const cached = u.cachedTokens ?? 0;
  const total = u.inputTokens + u.outputTokens;
  if (!(Number.isFinite(total) && Number.isFinite(cached))) return JSON.stringify(responsesUsageJson(u));
  return `{"input_tokens":${u.inputTokens},"input_tokens_details":{"cached_tokens":${cached}},"output_tokens":${u.outputTokens},"output_tokens_details":{"reasoning_tokens":0},"total_tokens":${total}}`;
}

/** JSON.stringify(responseJson(meta, model, status)). */
export function responseText(meta: ResponseMeta, model: string, status: string, e: Echoed = echoed(meta)): string {
  return `${head(meta, model, status, undefined)}${e.afterOutput}null${e.afterUsage}}`;
}

/** JSON.stringify(finished(...)), from its output items' JSON texts. */
export function finishedText(meta: ResponseMeta, model: string, items: readonly string[], reason: FinishReason, usage: Usage | undefined, completedAt: number, e: Echoed = echoed(meta)): string {
  const incomplete = INCOMPLETE[reason];
  return `${head(meta, model, incomplete ? 'incomplete' : 'completed', incomplete)}${items.join(',')}${e.afterOutput}${usage ? usageText(usage) : 'null'}`
    + `${e.afterUsage},"completed_at":${num(completedAt)}}`;
}

/**
 * A stream's Response cut before its finish, from its finished items' JSON texts: `failed` with the
 * upstream's error (OpenAI's error object: code server_error), or `incomplete` (the client went away).
 */
export function cutText(meta: ResponseMeta, model: string, items: readonly string[], status: 'failed' | 'incomplete', error: string | null, usage: Usage | undefined, e: Echoed = echoed(meta)): string {
  const err = error === null ? 'null' : `{"code":"server_error","message":${JSON.stringify(error)}}`;
  return `${head(meta, model, status, undefined, err)}${items.join(',')}${e.afterOutput}${usage ? usageText(usage) : 'null'}${e.afterUsage}}`;
}

function messageItem(id: string, text: string, status: string, logprobs: readonly unknown[] = []): Obj {
  return { id, type: 'message', status, role: 'assistant', content: [{ type: 'output_text', annotations: [], logprobs, text }] };
}

function callItem(id: string, callId: string, name: string, args: string, status: string): Obj {
  return { id, type: 'function_call', status, arguments: args, call_id: callId, name };
}

// ---- Reasoning items: OpenAI's, and Anthropic thinking blocks as reasoning items ----

/** What marks an encrypted_content as aam's own: an Anthropic thinking block's signature, or a redacted block's data. */
const SIGNED = 'aam:thinking:';
const REDACTED = 'aam:redacted_thinking:';

/**
 * A reasoning item sent back in input, as the Anthropic thinking block it was made from (its
 * summary text the thinking, its encrypted_content the signature), or null when it is OpenAI's.
 */
export function thinkingOf(encrypted: string, summary: readonly string[]): Exclude<ThinkingBlock, ReasoningBlock> | null {
  if (encrypted.startsWith(SIGNED)) return { type: 'thinking', thinking: summary.join(''), signature: encrypted.slice(SIGNED.length) };
  if (encrypted.startsWith(REDACTED)) return { type: 'redacted_thinking', data: encrypted.slice(REDACTED.length) };
  return null;
}

const summaryOf = (texts: readonly string[]): Obj[] => texts.map((text) => ({ type: 'summary_text', text }));
const reasoningTextOf = (texts: readonly string[]): Obj[] => texts.map((text) => ({ type: 'reasoning_text', text }));

/** A thinking block as its reasoning item: OpenAI's with its summary back in; an Anthropic block with its text as the summary. */
function reasoningItem(meta: ResponseMeta, b: ThinkingBlock, at: number): Obj {
  if (b.type === 'reasoning') {
    const it: Obj = { ...(b.item as Obj), summary: summaryOf(b.summary) };
    if (b.content !== undefined) it.content = reasoningTextOf(b.content);
    return it;
  }
  const item: Obj = { id: itemId(meta, 'rs', at), type: 'reasoning', summary: summaryOf(b.type === 'thinking' ? [b.thinking] : []) };
  if (meta.encrypted === true) item.encrypted_content = b.type === 'thinking' ? SIGNED + b.signature : REDACTED + b.data;
  return item;
}

/** One output item of a whole answer (see answerItems). */
type AnswerItem =
  | { kind: 'reasoning'; block: ThinkingBlock }
  | { kind: 'message'; text: string; status: string; logprobs?: Json[] }
  | { kind: 'call'; call: ToolCall };

/**
 * A whole answer's output items in the order the model produced its blocks (resultBlocks: Claude's
 * interleaved thinking between text and calls stays where it was, so the turn sent back is the one
 * Anthropic signed): a reasoning item per thinking block, a message per run of text (the last one
 * the answer's status, as a stream closes it), an item per call; an answer with no text nor call
 * is still one (empty) message, after its reasoning.
 */
function answerItems(r: ChatResult): AnswerItem[] {
  const status = INCOMPLETE[r.finishReason] ? 'incomplete' : 'completed';
  const out: AnswerItem[] = [];
  if (r.order === undefined) { // the canonical order (no interleaving): thinking, the text, the calls, without resultBlocks' copies
    if (r.thinking !== undefined) for (const block of r.thinking) out.push({ kind: 'reasoning', block });
    if ((r.text !== null && r.text !== '') || r.toolCalls.length === 0) out.push({ kind: 'message', text: r.text ?? '', status, logprobs: r.logprobs });
    for (const call of r.toolCalls) out.push({ kind: 'call', call });
    return out;
  }
  let msg: { kind: 'message'; text: string; status: string; logprobs?: Json[] } | null = null;
  let messages = 0;
  for (const b of resultBlocks(r)) {
    if (b.kind === 'text') {
      if (msg === null) { msg = { kind: 'message', text: '', status: 'completed' }; out.push(msg); messages++; }
      msg.text += b.text;
      continue;
    }
    msg = null;
    out.push(b.kind === 'thinking' ? { kind: 'reasoning', block: b.block } : { kind: 'call', call: b.call });
  }
  if (messages === 0 && r.toolCalls.length === 0) out.push({ kind: 'message', text: '', status: 'completed' });
  let last: AnswerItem | undefined;
  for (const it of out) if (it.kind === 'message') { if (last === undefined && r.logprobs !== undefined) it.logprobs = r.logprobs; last = it; }
  if (last !== undefined && last.kind === 'message') last.status = status;
  return out;
}

/** Output items of a whole answer (answerItems), as objects (the codec writes outputTexts). */
export function outputItems(meta: ResponseMeta, r: ChatResult): Obj[] {
  const out: Obj[] = [];
  for (const it of answerItems(r)) {
    if (it.kind === 'reasoning') out.push(reasoningItem(meta, it.block, out.length));
    else if (it.kind === 'message') out.push(messageItem(itemId(meta, 'msg', out.length), it.text, it.status, it.logprobs));
    else out.push(callItem(itemId(meta, 'fc', out.length), it.call.id, it.call.function.name, it.call.function.arguments, 'completed'));
  }
  return out;
}

/** outputItems as their ids and JSON texts (the same items, in the same order). */
function outputTexts(meta: ResponseMeta, r: ChatResult): { ids: string[]; texts: string[] } {
  const ids: string[] = [];
  const texts: string[] = [];
  for (const it of answerItems(r)) {
    if (it.kind === 'reasoning') {
      // OpenAI's id and encrypted_content as sent, for the client to send back.
      const ri = reasoningItem(meta, it.block, ids.length);
      ids.push(reasoningId(ri as Json, ids.length));
      texts.push(JSON.stringify(ri));
    } else if (it.kind === 'message') {
      const id = itemId(meta, 'msg', ids.length);
      ids.push(id);
      texts.push(messageJson(id, it.status, partJson(JSON.stringify(it.text), it.logprobs === undefined ? undefined : JSON.stringify(it.logprobs))));
    } else {
      const id = itemId(meta, 'fc', ids.length);
      ids.push(id);
      texts.push(callJson(id, it.call.id, it.call.function.name, JSON.stringify(it.call.function.arguments)));
    }
  }
  return { ids, texts };
}

/** A reasoning item's id (OpenAI's), or one by its place when it has none. */
const reasoningId = (it: Json, at: number): string => reasoningItemId(it) ?? `rs_${at}`;

/** A finished Response: its output items' ids and its JSON text (what is answered, and stored). */
export interface FinishedResponse { outputIds: readonly string[]; json: string }

/** `at`: the item's fixed delta fields, serialized once per item (deltas are the hot path). */
interface OpenText { index: number; id: string; text: string; at: string; logprobs?: Json[] }
interface OpenCall { index: number; id: string; callId: string; name: string; args: string; at: string; done: boolean }
/** A reasoning item being streamed: OpenAI's (`openai`: its id, ended by reasoning_item) or an Anthropic thinking block's. */
interface OpenReasoning {
  index: number; id: string; openai: boolean; signature: string; at: string;
  /** Summary parts' texts, and (OpenAI's) reasoning_text parts' texts, as streamed so far. */
  parts: string[]; content: string[] | undefined;
  /** The part being streamed: a summary part, a reasoning_text part, or none. */
  open: 'summary' | 'content' | null;
}

/** A message item's JSON and its one part's, from its text already JSON-encoded (in messageItem's field order). */
const partJson = (textJson: string, logprobsJson = '[]'): string => `{"type":"output_text","annotations":[],"logprobs":${logprobsJson},"text":${textJson}}`;
const messageJson = (id: string, status: string, part: string): string => `{"id":${JSON.stringify(id)},"type":"message","status":"${status}","role":"assistant","content":[${part}]}`;
const callJson = (id: string, callId: string, name: string, argsJson: string): string =>
  `{"id":${JSON.stringify(id)},"type":"function_call","status":"completed","arguments":${argsJson},"call_id":${JSON.stringify(callId)},"name":${JSON.stringify(name)}}`;

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

  /** The Response's fields that only the request sets, as text: written once per request. */
  private echoedText: Echoed | null = null;
  private get echoed(): Echoed { return (this.echoedText ??= echoed(this.meta)); }

  private completedAt(): number { return this.meta.now ? this.meta.now() : nowSeconds(); }

  private openingFrames(model: string): string {
    const r = responseText(this.meta, model, 'in_progress', this.echoed);
    return this.frame('response.created', `"response":${r}`) + this.frame('response.in_progress', `"response":${r}`);
  }

  prepareStream(model: string): void {
    // Sequence numbers 0 and 1: nothing else is framed before a stream's opening events.
    if (this.seq === 0) { this.opening = this.openingFrames(model); this.preparedFor = model; }
  }

  /** Ends a stream cut before its finish (see streamError, streamAborted): set by the stream's encoder. */
  private cut: ((status: 'failed' | 'incomplete', error: string | null) => void) | null = null;

  streamEncoder(opts: { includeUsage: boolean; model: string }): (ev: StreamEvent) => string {
    const meta = this.meta;
    const frame = (type: string, body: string): string => this.frame(type, body);
    let model = opts.model;
    let started = false;
    let done = false;
    let usage: Usage | undefined;
    let text: OpenText | null = null;
    // One item is open at a time, as OpenAI streams them: each item's .done comes before the next
    // one's .added, output_index counting up. A call that starts while another is open is held
    // (OpenAI-compatible upstreams may interleave parallel calls' arguments, so the open one may
    // not be over) and written whole once the open one must end: at text, or at finish.
    const calls = new Map<number, OpenCall>(); // canonical tool index -> its function_call
    let call: OpenCall | null = null; // the open one
    const held: OpenCall[] = [];
    let late = false; // a call got arguments after its item was done (see tool_args)
    const slots: string[] = []; // finished items' JSON by output_index
    const ids: string[] = []; // and their ids
    let next = 0;
    let reasoned = 0; // of them, reasoning items
    let rs: OpenReasoning | null = null; // the reasoning item open

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
      const tj = JSON.stringify(t.text); // once for the three events that carry it (and the Response)
      const lj = t.logprobs === undefined ? '[]' : JSON.stringify(t.logprobs);
      const part = partJson(tj, lj);
      const item = messageJson(t.id, status, part);
      slots[t.index] = item;
      ids[t.index] = t.id;
      return frame('response.output_text.done', `${t.at},"text":${tj},"logprobs":${lj}`)
        + frame('response.content_part.done', `${t.at},"part":${part}`)
        + frame('response.output_item.done', `"output_index":${t.index},"item":${item}`);
    };
    /** A call's output_index and item id, given when its item is added. */
    const place = (c: OpenCall): void => {
      c.index = next++;
      c.id = itemId(meta, 'fc', c.index);
      c.at = `"item_id":${JSON.stringify(c.id)},"output_index":${c.index}`;
    };
    const addCall = (c: OpenCall): string =>
      frame('response.output_item.added', `"output_index":${c.index},"item":${JSON.stringify(callItem(c.id, c.callId, c.name, '', 'in_progress'))}`);
    const callDone = (c: OpenCall): string => {
      const aj = JSON.stringify(c.args);
      const item = callJson(c.id, c.callId, c.name, aj);
      slots[c.index] = item;
      ids[c.index] = c.id;
      c.done = true;
      return frame('response.function_call_arguments.done', `${c.at},"name":${JSON.stringify(c.name)},"arguments":${aj}`)
        + frame('response.output_item.done', `"output_index":${c.index},"item":${item}`);
    };
    /** The open call ends, then the held ones are written whole, each ended before the next. */
    const closeCalls = (): string => {
      let s = '';
      if (call !== null) { s += callDone(call); call = null; }
      for (const c of held) {
        place(c);
        s += addCall(c);
        if (c.args !== '') s += frame('response.function_call_arguments.delta', `${c.at},"delta":${JSON.stringify(c.args)}`);
        s += callDone(c);
      }
      held.length = 0;
      return s;
    };
    // A reasoning item streams as OpenAI streams one: added, then each summary part added, its text
    // deltas, its text and part done, then the item done (OpenAI's with its id and encrypted_content
    // as sent; an Anthropic thinking block's with its text as the summary, signature kept: reasoningItem).
    const openReasoning = (id?: string): string => {
      const s = closeText('completed') + closeCalls() + closeReasoning();
      const index = next++;
      reasoned++;
      const rid = id ?? itemId(meta, 'rs', index);
      rs = { index, id: rid, openai: id !== undefined, parts: [], content: undefined, open: null, signature: '', at: `"item_id":${JSON.stringify(rid)},"output_index":${index}` };
      return s + frame('response.output_item.added', `"output_index":${index},"item":{"id":${JSON.stringify(rid)},"type":"reasoning","summary":[]}`);
    };
    const openPart = (r: OpenReasoning): string => {
      r.parts.push('');
      r.open = 'summary';
      return frame('response.reasoning_summary_part.added', `${r.at},"summary_index":${r.parts.length - 1},"part":{"type":"summary_text","text":""}`);
    };
    // A reasoning_text part (OpenAI's raw reasoning, gpt-oss) streams as OpenAI streams one: a content part of the item.
    const openContent = (r: OpenReasoning): string => {
      (r.content ??= []).push('');
      r.open = 'content';
      return frame('response.content_part.added', `${r.at},"content_index":${r.content.length - 1},"part":{"type":"reasoning_text","text":""}`);
    };
    const closePart = (r: OpenReasoning): string => {
      if (r.open === null) return '';
      const kind = r.open;
      r.open = null;
      if (kind === 'content') {
        const c = r.content as string[];
        const k = c.length - 1;
        const tj = JSON.stringify(c[k]);
        return frame('response.reasoning_text.done', `${r.at},"content_index":${k},"text":${tj}`)
          + frame('response.content_part.done', `${r.at},"content_index":${k},"part":{"type":"reasoning_text","text":${tj}}`);
      }
      const k = r.parts.length - 1;
      const tj = JSON.stringify(r.parts[k]);
      return frame('response.reasoning_summary_text.done', `${r.at},"summary_index":${k},"text":${tj}`)
        + frame('response.reasoning_summary_part.done', `${r.at},"summary_index":${k},"part":{"type":"summary_text","text":${tj}}`);
    };
    /** The item as it stands (OpenAI's rest of it when it came). */
    const reasoningNow = (r: OpenReasoning, item?: Json): string => JSON.stringify(reasoningItem(meta, r.openai
      ? { type: 'reasoning', summary: r.parts, ...(r.content !== undefined ? { content: r.content } : {}), item: item ?? { id: r.id, type: 'reasoning', summary: [] } }
      : { type: 'thinking', thinking: r.parts.join(''), signature: r.signature }, r.index));
    const closeReasoning = (item?: Json): string => {
      const r = rs;
      if (r === null) return '';
      rs = null;
      const ij = reasoningNow(r, item);
      slots[r.index] = ij;
      ids[r.index] = r.id;
      return closePart(r) + frame('response.output_item.done', `"output_index":${r.index},"item":${ij}`);
    };
    /** A reasoning item that comes whole (a redacted thinking block; OpenAI's without a summary). */
    const wholeReasoning = (b: ThinkingBlock): string => {
      const s = closeText('completed') + closeCalls() + closeReasoning();
      const index = next++;
      reasoned++;
      const it = reasoningItem(meta, b, index);
      const ij = JSON.stringify(it);
      slots[index] = ij;
      ids[index] = reasoningId(it as Json, index);
      return s + frame('response.output_item.added', `"output_index":${index},"item":${ij}`)
        + frame('response.output_item.done', `"output_index":${index},"item":${ij}`);
    };
    /** The Response as it stands (finished items, the open text as incomplete), ending the stream without a finish. */
    this.cut = (status, error) => {
      this.cut = null;
      if (!started || done) return;
      done = true;
      const r = rs;
      if (r !== null) { slots[r.index] = reasoningNow(r); ids[r.index] = r.id; }
      const t = text;
      if (t !== null) { // no events: the stream is over
        slots[t.index] = messageJson(t.id, 'incomplete', partJson(JSON.stringify(t.text), t.logprobs === undefined ? '[]' : JSON.stringify(t.logprobs)));
        ids[t.index] = t.id;
      }
      // A call not yet ended has arguments that may be cut mid-JSON: left out, as nothing can run it.
      this.onCompleted?.({ outputIds: ids.filter((x) => x !== undefined), json: cutText(meta, model, slots.filter((x) => x !== undefined), status, error, usage, this.echoed) });
    };

    return (ev: StreamEvent): string => {
      if (done) return '';
      if (ev.type === 'error') return this.streamError(ev.message, ev.errorType);
      if (!started && ev.type === 'start' && ev.model) model = ev.model;
      let s = started ? '' : start();
      switch (ev.type) {
        case 'start':
          return s;
        case 'text': {
          if (ev.text.length === 0) return s;
          if (text === null) s += closeReasoning() + closeCalls() + openText();
          const t = text as unknown as OpenText;
          t.text += ev.text;
          if (ev.logprobs === undefined) return s + frame('response.output_text.delta', `${t.at},"delta":${JSON.stringify(ev.text)},"logprobs":[]`);
          (t.logprobs ??= []).push(...ev.logprobs);
          return s + frame('response.output_text.delta', `${t.at},"delta":${JSON.stringify(ev.text)},"logprobs":${JSON.stringify(ev.logprobs)}`);
        }
        case 'tool_start': {
          const c: OpenCall = { index: -1, id: '', callId: ev.id, name: ev.name, args: '', at: '', done: false };
          calls.set(ev.index, c);
          if (call !== null || held.length > 0) { held.push(c); return s; }
          // Text before a call is its own message item.
          s += closeText('completed') + closeReasoning();
          place(c);
          call = c;
          return s + addCall(c);
        }
        case 'tool_args': {
          const c = calls.get(ev.index);
          if (c === undefined || ev.delta.length === 0) return s;
          c.args += ev.delta;
          if (c === call) return s + frame('response.function_call_arguments.delta', `${c.at},"delta":${JSON.stringify(ev.delta)}`);
          // Held: written whole later. Already done (text came between its arguments): in the Response only.
          if (c.done) late = true;
          return s;
        }
        case 'thinking_start': {
          const r = rs as OpenReasoning | null;
          // OpenAI's next summary (or reasoning_text) part of the open item; else a new item.
          if (r !== null && ev.id !== undefined && r.openai && r.id === ev.id) return s + closePart(r) + (ev.content ? openContent(r) : openPart(r));
          s += openReasoning(ev.id);
          return s + (ev.content ? openContent(rs as unknown as OpenReasoning) : openPart(rs as unknown as OpenReasoning));
        }
        case 'thinking': {
          if (ev.text.length === 0) return s;
          if (rs === null) s += openReasoning();
          const r = rs as unknown as OpenReasoning;
          if (r.open === 'content') {
            const c = r.content as string[];
            c[c.length - 1] += ev.text;
            return s + frame('response.reasoning_text.delta', `${r.at},"content_index":${c.length - 1},"delta":${JSON.stringify(ev.text)}`);
          }
          if (r.open === null) s += openPart(r);
          r.parts[r.parts.length - 1] += ev.text;
          return s + frame('response.reasoning_summary_text.delta', `${r.at},"summary_index":${r.parts.length - 1},"delta":${JSON.stringify(ev.text)}`);
        }
        case 'thinking_signature': {
          const r = rs as OpenReasoning | null;
          if (r !== null && !r.openai) r.signature += ev.signature;
          return s;
        }
        case 'redacted_thinking':
          return s + wholeReasoning({ type: 'redacted_thinking', data: ev.data });
        case 'reasoning_item': {
          // The end of OpenAI's item whose summary streamed; else one without a summary, whole.
          const r = rs as OpenReasoning | null;
          if (r !== null && r.openai && r.id === reasoningItemId(ev.item)) return s + closeReasoning(ev.item);
          return s + wholeReasoning({ type: 'reasoning', summary: [], item: ev.item });
        }
        case 'usage':
          usage = ev.usage;
          return s;
        case 'finish': {
          done = true;
          this.cut = null;
          const status = INCOMPLETE[ev.reason] ? 'incomplete' : 'completed';
          s += closeReasoning();
          if (next === reasoned) s += openText(); // an answer with no text nor call is still one (empty) message
          s += closeText(status) + closeCalls();
          if (late) for (const c of calls.values()) slots[c.index] = callJson(c.id, c.callId, c.name, JSON.stringify(c.args));
          const json = finishedText(meta, model, slots, ev.reason, usage, this.completedAt(), this.echoed);
          this.onCompleted?.({ outputIds: ids, json });
          this.terminator = frame(status === 'completed' ? 'response.completed' : 'response.incomplete', `"response":${json}`);
          return s;
        }
        default:
          return s;
      }
    };
  }

  /** The client went away mid-stream: the Response is kept as it stands, status incomplete (stored with store: true). */
  streamAborted(): void { this.cut?.('incomplete', null); }

  /** The error event (top-level and nested fields: the older and newer shapes SDKs read). */
  streamError(message: string, type: string, code = type): string {
    // A stream the upstream broke: its Response is kept as it stands, status failed, with the error.
    this.cut?.('failed', message);
    this.unprepare();
    const m = JSON.stringify(message);
    const t = JSON.stringify(type);
    const c = JSON.stringify(code);
    return this.frame('error', `"code":${c},"message":${m},"param":null,"error":{"type":${t},"code":${c},"message":${m},"param":null}`);
  }

  encodeResultText(result: ChatResult, model: string): string {
    const items = outputTexts(this.meta, result);
    const json = finishedText(this.meta, model, items.texts, result.finishReason, result.usage, this.completedAt(), this.echoed);
    this.onCompleted?.({ outputIds: items.ids, json });
    return json;
  }

  encodeResult(result: ChatResult, model: string): Obj {
    return JSON.parse(this.encodeResultText(result, model)) as Obj;
  }
}

/** The codec for one request (see ResponsesCodec). */
export function responsesCodec(meta: ResponseMeta, onCompleted?: (response: FinishedResponse) => void, hooks?: ResponsesCodecHooks): ResponsesCodec {
  return new ResponsesCodec(meta, onCompleted, hooks);
}
