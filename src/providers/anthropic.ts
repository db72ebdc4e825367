// Anthropic Messages API wire, upstream side: canonical request -> /messages body; responses and
// SSE events -> canonical. Tool calls get a per-response index in order of appearance.
import type {
  CacheControl, ChatMessage, ChatRequest, ChatResult, ContentPart, ImagePart, TextPart, FinishReason, ProviderAdapter, ProviderError,
  StreamEvent, StreamParser, TargetInfo, ThinkingBlock, ToolCall, Usage, ResultBlock,
} from './types.ts';
import { interleavedOrder } from './types.ts';
import { UpstreamShapeError, argsObject, arr, localId, num, nowSeconds, obj, rawChatHead, statusType, usageOf } from './util.ts';
import type { Obj } from './util.ts';
import { StreamTemplate } from './chunk-template.ts';
import { claudeSigned, effortThinking, unsignedToolLoop, DEFAULT_MAX_TOKENS } from './claude-effort.ts';
import { isObj, parseJson, sameEntries, str } from '../lib/json.ts';

export { anthropicCodec, anthropicErrorBody } from './anthropic-codec.ts';
export { parseAnthropicRequest } from './anthropic-parse.ts';

export const ANTHROPIC_VERSION = '2023-06-01';
export { DEFAULT_MAX_TOKENS };

const STOP: Readonly<Record<string, FinishReason>> = {
  end_turn: 'stop', stop_sequence: 'stop', pause_turn: 'stop', max_tokens: 'length',
  model_context_window_exceeded: 'length', tool_use: 'tool_calls', refusal: 'content_filter',
};

const DATA_URL = /^data:([^;,]+);base64,(.*)$/s;

function imageBlock(url: string): Obj {
  const m = DATA_URL.exec(url);
  return m !== null
    ? { type: 'image', source: { type: 'base64', media_type: m[1], data: m[2] } }
    : { type: 'image', source: { type: 'url', url } };
}

const FILE_EXT = /\.([a-z0-9]+)$/i;

/**
 * An OpenAI file part ({file: {file_data, filename, file_url}}) as an Anthropic document block: a
 * PDF as base64, text as a text source, a file_url as a URL (Anthropic fetches PDFs); the media
 * type from the data: URL, else the filename. Null when Anthropic has no form for it (an OpenAI
 * file_id, another type): params.ts refuses the request for this target then.
 */
export function anthropicDocument(p: ContentPart): Obj | null {
  const f = (p as { file?: unknown }).file;
  if (!isObj(f)) return null;
  const title = typeof f.filename === 'string' ? f.filename : undefined;
  let source: Obj | null = null;
  if (typeof f.file_data === 'string') {
    const m = DATA_URL.exec(f.file_data);
    const ext = FILE_EXT.exec(title ?? '')?.[1]?.toLowerCase();
    const media = m !== null ? m[1] : ext === 'pdf' ? 'application/pdf' : ext === 'txt' || ext === 'md' ? 'text/plain' : '';
    const data = m !== null ? m[2] : f.file_data;
    if (media === 'application/pdf') source = { type: 'base64', media_type: media, data };
    else if (media.startsWith('text/')) source = { type: 'text', media_type: 'text/plain', data: Buffer.from(data, 'base64').toString('utf8') };
  } else if (typeof f.file_url === 'string') {
    source = { type: 'url', url: f.file_url };
  }
  if (source === null) return null;
  return title !== undefined ? { type: 'document', source, title } : { type: 'document', source };
}

/** A block with the canonical part's cache breakpoint, if it has one, after its own fields. */
function cached(block: Obj, cc: CacheControl | undefined): Obj {
  if (isObj(cc)) block.cache_control = cc;
  return block;
}

/** An assistant turn's thinking blocks as the Anthropic client sent them, those Claude signed (anything else under the name is not Claude's). */
const isThinking = claudeSigned;

function partsToBlocks(content: string | ContentPart[] | null, out: unknown[]): void {
  if (content === null) return;
  if (typeof content === 'string') {
    if (content.length > 0) out.push({ type: 'text', text: content });
    return;
  }
  for (const p of content) {
    if (p.type === 'text') out.push(cached({ type: 'text', text: (p as TextPart).text }, (p as TextPart).cache_control));
    else if (p.type === 'image_url') out.push(cached(imageBlock((p as ImagePart).image_url.url), (p as ImagePart).cache_control));
    else if (p.type === 'file') out.push(cached(anthropicDocument(p) ?? p, p.cache_control as CacheControl | undefined));
    else out.push(p); // Anthropic-native blocks (document, ...) pass through untouched.
  }
}

function systemText(content: string | ContentPart[] | null): string {
  if (typeof content === 'string') return content;
  if (content === null) return '';
  let s = '';
  for (const p of content) if (p.type === 'text') s += (s.length > 0 ? '\n' : '') + (p as { text: string }).text;
  return s;
}

function toolResultContent(content: string | ContentPart[] | null): string | unknown[] {
  if (content === null || typeof content === 'string') return content ?? '';
  const blocks: unknown[] = [];
  partsToBlocks(content, blocks);
  return blocks;
}

interface AMsg { role: 'user' | 'assistant'; content: unknown[] }

/**
 * The system prompt: one string (several system messages joined), or text blocks when one of
 * them carries a cache breakpoint (a string message then is one text block).
 */
function systemOf(messages: ChatMessage[]): string | Obj[] | undefined {
  let blocks = false;
  for (const m of messages) {
    if ((m.role === 'system' || m.role === 'developer') && (isObj(m.cache_control) || (Array.isArray(m.content) && m.content.some((p) => isObj((p as TextPart).cache_control))))) { blocks = true; break; }
  }
  let system: string | undefined;
  const out: Obj[] = [];
  for (const m of messages) {
    if (m.role !== 'system' && m.role !== 'developer') continue;
    if (!blocks) {
      const t = systemText(m.content);
      system = system === undefined ? t : `${system}\n\n${t}`;
      continue;
    }
    const n = out.length;
    if (typeof m.content === 'string') { if (m.content.length > 0) out.push({ type: 'text', text: m.content }); }
    else if (m.content !== null) for (const p of m.content) if (p.type === 'text') out.push(cached({ type: 'text', text: (p as TextPart).text }, (p as TextPart).cache_control));
    if (isObj(m.cache_control) && out.length > n) out[out.length - 1].cache_control = m.cache_control;
  }
  return blocks ? out : system;
}

function toolUseBlock(tc: ToolCall): Obj {
  return cached({ type: 'tool_use', id: tc.id, name: tc.function.name, input: argsObject(tc.function.arguments) }, tc.cache_control);
}

/** An assistant turn with interleaved thinking, its blocks in the client's order (Anthropic checks it against the signatures). */
function inOrder(m: ChatMessage, out: unknown[]): void {
  const th = m.thinking ?? [];
  const parts = m.content as ContentPart[];
  const calls = m.tool_calls ?? [];
  let t = 0, p = 0, c = 0;
  for (const k of m.order!) {
    if (k === 'thinking') { if (t < th.length) { const b = th[t++]; if (isThinking(b)) out.push(b); } }
    else if (k === 'text') { if (p < parts.length) partsToBlocks([parts[p++]], out); }
    else if (c < calls.length) out.push(toolUseBlock(calls[c++]));
  }
  for (; t < th.length; t++) if (isThinking(th[t])) out.push(th[t]);
  if (p < parts.length) partsToBlocks(parts.slice(p), out);
  for (; c < calls.length; c++) out.push(toolUseBlock(calls[c]));
}

/** Canonical messages -> Anthropic system + alternating messages (same-role turns merged). */
export function anthropicMessages(messages: ChatMessage[]): { system: string | Obj[] | undefined; messages: AMsg[] } {
  const out: AMsg[] = [];
  let last: AMsg | undefined;
  for (const m of messages) {
    if (m.role === 'system' || m.role === 'developer') continue;
    const role = m.role === 'assistant' ? 'assistant' : 'user';
    if (last === undefined || last.role !== role) {
      last = { role, content: [] };
      out.push(last);
    }
    if (m.role === 'tool') {
      const r: Obj = { type: 'tool_result', tool_use_id: m.tool_call_id ?? '', content: toolResultContent(m.content) };
      if (typeof m.is_error === 'boolean') r.is_error = m.is_error;
      last.content.push(cached(r, m.cache_control));
      continue;
    }
    const n = last.content.length;
    if (m.role === 'assistant' && m.order !== undefined && Array.isArray(m.content)) inOrder(m, last.content);
    else {
      if (m.role === 'assistant' && Array.isArray(m.thinking)) for (const t of m.thinking) if (isThinking(t)) last.content.push(t);
      partsToBlocks(m.content, last.content);
      if (m.tool_calls !== undefined) for (const tc of m.tool_calls) last.content.push(toolUseBlock(tc));
    }
    // A message's own breakpoint (LiteLLM's form) goes on its last block.
    if (isObj(m.cache_control) && last.content.length > n) {
      const b = last.content[last.content.length - 1];
      if (isObj(b)) last.content[last.content.length - 1] = { ...b, cache_control: m.cache_control };
    }
  }
  return { system: systemOf(messages), messages: out };
}

/** Does Anthropic take this response_format as its structured output (json_schema with a schema it can hold)? */
export function anthropicTakesFormat(rf: ChatRequest['response_format']): boolean {
  return jsonSchemaFormat(rf) !== undefined;
}

/**
 * OpenAI's response_format json_schema as Anthropic's output_config.format, with the schema in the
 * form Anthropic takes (else undefined; params.ts refuses such a request for an Anthropic target).
 */
function jsonSchemaFormat(rf: ChatRequest['response_format']): Obj | undefined {
  const js = rf?.type === 'json_schema' && isObj(rf.json_schema) ? rf.json_schema : undefined;
  const schema = js !== undefined && isObj(js.schema) ? anthropicSchema(js.schema, 0) : undefined;
  return schema !== undefined ? { type: 'json_schema', schema } : undefined;
}

/** Keywords whose values are data (or names), not schemas: kept as written. */
const DATA_KEYWORDS = new Set(['enum', 'const', 'default', 'examples', 'required', 'description', 'title']);
/** Keywords Anthropic's structured outputs refuse (its SDKs move them into the description and check client-side). */
const UNSUPPORTED_KEYWORDS = new Set(['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'minLength', 'maxLength', 'maxItems', 'minProperties', 'maxProperties']);

/**
 * A schema as Anthropic takes it, the way its own SDKs rewrite one: every object closed
 * (`additionalProperties: false`: an answer to the closed schema fits the open one), bounds it
 * refuses (and `minItems` above 1) moved into the description as a hint, since the client (zod,
 * the Agents SDK) still checks them. Undefined when it cannot be held: an object whose
 * `additionalProperties` is itself a schema (a map), or nesting deeper than 64.
 */
function anthropicSchema(node: unknown, depth: number): unknown {
  if (depth > 64) return undefined;
  if (Array.isArray(node)) {
    const out: unknown[] = [];
    for (const n of node) { const m = anthropicSchema(n, depth + 1); if (m === undefined) return undefined; out.push(m); }
    return out;
  }
  if (!isObj(node)) return node;
  const out: Obj = {};
  const moved: string[] = [];
  for (const k in node) {
    const v = node[k];
    if (UNSUPPORTED_KEYWORDS.has(k) || (k === 'minItems' && typeof v === 'number' && v > 1)) { moved.push(`${k}: ${JSON.stringify(v)}`); continue; }
    if (k === 'additionalProperties' && v !== false && v !== true) return undefined; // a map: no closed form
    if (DATA_KEYWORDS.has(k)) { out[k] = v; continue; } // values, not schemas
    // properties / $defs hold schemas by name: a property called "minimum" is not the keyword.
    if ((k === 'properties' || k === '$defs' || k === 'definitions') && isObj(v)) {
      const named: Obj = {};
      for (const n in v) { const m = anthropicSchema(v[n], depth + 1); if (m === undefined) return undefined; named[n] = m; }
      out[k] = named;
    } else {
      const m = anthropicSchema(v, depth + 1);
      if (m === undefined) return undefined;
      out[k] = m;
    }
  }
  if (node.type === 'object' || isObj(node.properties)) out.additionalProperties = false;
  if (moved.length > 0) out.description = `${typeof node.description === 'string' ? `${node.description} ` : ''}{${moved.join(', ')}}`;
  return out;
}

export function anthropicBody(req: ChatRequest, target: TargetInfo): Obj {
  const { system, messages } = anthropicMessages(req.messages);
  const body: Obj = req.anthropicExtra !== undefined ? { ...req.anthropicExtra } : {};
  body.model = target.model;
  body.messages = messages;
  if (system !== undefined) body.system = system;
  body.max_tokens = req.max_completion_tokens ?? req.max_tokens ?? DEFAULT_MAX_TOKENS;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.top_p !== undefined) body.top_p = req.top_p;
  if (req.stop !== undefined) body.stop_sequences = typeof req.stop === 'string' ? [req.stop] : req.stop;
  if (req.tools !== undefined && req.tools.length > 0) {
    body.tools = req.tools.map((t) => {
      const def: Obj = { name: t.function.name };
      if (t.function.description !== undefined) def.description = t.function.description;
      def.input_schema = t.function.parameters ?? { type: 'object', properties: {} };
      return cached(def, t.cache_control);
    });
  }
  let choice: Obj | undefined;
  const tc = req.tool_choice;
  if (tc === 'auto') choice = { type: 'auto' };
  else if (tc === 'required') choice = { type: 'any' };
  else if (tc === 'none') choice = { type: 'none' };
  else if (tc !== undefined) choice = { type: 'tool', name: tc.function.name };
  if (req.parallel_tool_calls === false && req.tools !== undefined) {
    choice ??= { type: 'auto' };
    if (choice.type !== 'none') choice.disable_parallel_tool_use = true;
  }
  if (choice !== undefined) body.tool_choice = choice;
  // An OpenAI client's json_schema is Anthropic's structured output (the client's own output_config wins).
  const format = jsonSchemaFormat(req.response_format);
  const oc = isObj(body.output_config) ? body.output_config : undefined;
  if (format !== undefined && oc?.format === undefined) body.output_config = { ...oc, format };
  // An OpenAI client's reasoning effort is Claude's thinking (an Anthropic client's own thinking wins).
  const t = effortThinking(req, target.model, target.options);
  if (t !== null) {
    body.thinking = t.thinking;
    body.max_tokens = t.maxTokens;
    if (t.effort !== undefined) body.output_config = { ...(isObj(body.output_config) ? body.output_config : undefined), effort: t.effort };
  }
  // A tool loop begun on another model (its thinking left out): Claude takes the turn only without thinking.
  if (isObj(body.thinking) && body.thinking.type !== 'disabled' && unsignedToolLoop(req.messages)) delete body.thinking;
  if (req.user !== undefined && !isObj(body.metadata)) body.metadata = { user_id: req.user };
  if (target.stream) body.stream = true;
  else delete body.stream;
  return body;
}

/** Anthropic counts cache reads/writes apart from input_tokens; canonical input includes them. */
export function anthropicUsage(u: Obj): Usage {
  const cached = num(u.cache_read_input_tokens) ?? 0;
  const written = num(u.cache_creation_input_tokens) ?? 0;
  const input = (num(u.input_tokens) ?? 0) + cached + written;
  const usage = usageOf(input, num(u.output_tokens) ?? 0, cached, written);
  // cache_creation splits the writes by lifetime (5m / 1h): kept, 0 included, when there were writes.
  const split = obj(u.cache_creation);
  if (split !== undefined && written > 0) usage.cacheWrite1hTokens = Math.min(written, num(split.ephemeral_1h_input_tokens) ?? 0);
  return usage;
}

export function anthropicChatResponse(body: unknown): ChatResult {
  if (!isObj(body)) throw new UpstreamShapeError('upstream returned a non-object message');
  const content = arr(body.content);
  if (content === undefined) throw new UpstreamShapeError('upstream message has no content array');
  let text: string | null = null;
  const toolCalls: ToolCall[] = [];
  let thinking: ThinkingBlock[] | undefined;
  for (const b of content) {
    if (!isObj(b)) continue;
    if (b.type === 'text' && typeof b.text === 'string') text = text === null ? b.text : text + b.text;
    else if (b.type === 'thinking') (thinking ??= []).push({ type: 'thinking', thinking: str(b.thinking) ?? '', signature: str(b.signature) ?? '' });
    else if (b.type === 'redacted_thinking') (thinking ??= []).push({ type: 'redacted_thinking', data: str(b.data) ?? '' });
    else if (b.type === 'tool_use') {
      toolCalls.push({ id: str(b.id) ?? `toolu_${toolCalls.length}`, type: 'function', function: { name: str(b.name) ?? '', arguments: JSON.stringify(b.input ?? {}) } });
    }
  }
  const sr = str(body.stop_reason);
  const result: ChatResult = {
    id: str(body.id) ?? localId('msg_'),
    model: str(body.model) ?? '',
    created: nowSeconds(),
    text,
    toolCalls,
    finishReason: (sr !== undefined ? STOP[sr] : undefined) ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop'),
  };
  const u = obj(body.usage);
  if (u !== undefined) result.usage = anthropicUsage(u);
  if (thinking !== undefined) {
    result.thinking = thinking;
    // The blocks' order, kept when thinking is interleaved (answers without thinking skip this pass).
    const seq: ResultBlock[] = [];
    for (const b of content) {
      if (!isObj(b)) continue;
      if (b.type === 'text' && typeof b.text === 'string') seq.push(b.text.length);
      else if (b.type === 'thinking' || b.type === 'redacted_thinking') seq.push('thinking');
      else if (b.type === 'tool_use') seq.push('tool');
    }
    const order = interleavedOrder(seq);
    if (order !== undefined) result.order = order;
  }
  return result;
}

class AnthropicStreamParser implements StreamParser {
  /** Anthropic content-block index -> canonical tool index (only tool_use blocks). */
  private toolOf = new Map<number, number>();
  private tools = 0;
  private usage: Obj = {};
  private finished = false;
  /** The frame of the last text_delta parsed whole (chunk-template.ts): the next ones only add their text. */
  private tpl = new StreamTemplate('text');

  push(data: string, event?: string, parsed?: { value: unknown }): StreamEvent[] {
    if (parsed === undefined) {
      const text = this.tpl.match(data, event);
      if (text !== null) return text.length > 0 ? [{ type: 'text', text }] : [];
    }
    const ev = parsed ? parsed.value : parseJson(data);
    if (!isObj(ev)) return [{ type: 'error', message: 'upstream sent a stream event that is not JSON', errorType: 'upstream_invalid_response' }];
    switch (str(ev.type) ?? event) {
      case 'message_start': {
        const m = obj(ev.message) ?? {};
        const u = obj(m.usage);
        const start: StreamEvent = { type: 'start', id: str(m.id) ?? localId('msg_'), model: str(m.model) ?? '' };
        if (u !== undefined) { Object.assign(this.usage, u); start.usage = anthropicUsage(u); }
        return [start];
      }
      case 'content_block_start': {
        const b = obj(ev.content_block);
        const idx = num(ev.index) ?? 0;
        if (b?.type === 'tool_use') {
          const index = this.tools++;
          this.toolOf.set(idx, index);
          return [{ type: 'tool_start', index, id: str(b.id) ?? `toolu_${index}`, name: str(b.name) ?? '' }];
        }
        if (b?.type === 'text' && typeof b.text === 'string' && b.text.length > 0) return [{ type: 'text', text: b.text }];
        if (b?.type === 'thinking') {
          // Opens empty (the API's `{"thinking":"","signature":""}`): text and signature come as deltas.
          const out: StreamEvent[] = [{ type: 'thinking_start' }];
          if (typeof b.thinking === 'string' && b.thinking.length > 0) out.push({ type: 'thinking', text: b.thinking });
          if (typeof b.signature === 'string' && b.signature.length > 0) out.push({ type: 'thinking_signature', signature: b.signature });
          return out;
        }
        if (b?.type === 'redacted_thinking') return [{ type: 'redacted_thinking', data: str(b.data) ?? '' }];
        return [];
      }
      case 'content_block_delta': {
        const d = obj(ev.delta);
        if (d === undefined) return [];
        if (d.type === 'text_delta') {
          if (typeof d.text !== 'string') return [];
          // Its text is this event's only effect: the frame around it can read the next ones.
          if (parsed === undefined && this.tpl.open) this.tpl.learn(data, event, d.text);
          return d.text.length > 0 ? [{ type: 'text', text: d.text }] : [];
        }
        if (d.type === 'input_json_delta') {
          const index = this.toolOf.get(num(ev.index) ?? 0);
          const pj = d.partial_json;
          return index !== undefined && typeof pj === 'string' && pj.length > 0 ? [{ type: 'tool_args', index, delta: pj }] : [];
        }
        if (d.type === 'thinking_delta') return typeof d.thinking === 'string' && d.thinking.length > 0 ? [{ type: 'thinking', text: d.thinking }] : [];
        if (d.type === 'signature_delta') return typeof d.signature === 'string' ? [{ type: 'thinking_signature', signature: d.signature }] : [];
        return []; // citations_delta and others have no canonical form
      }
      case 'message_delta': {
        const u = obj(ev.usage);
        if (u !== undefined) for (const k in u) if (u[k] !== null) this.usage[k] = u[k];
        const sr = str(obj(ev.delta)?.stop_reason);
        if (sr === undefined) return [];
        this.finished = true;
        return [{ type: 'usage', usage: anthropicUsage(this.usage) }, { type: 'finish', reason: STOP[sr] ?? 'stop' }];
      }
      case 'error': {
        const e = obj(ev.error);
        return [{ type: 'error', message: str(e?.message) ?? 'upstream stream error', errorType: str(e?.type) ?? 'api_error' }];
      }
      default:
        return []; // ping, content_block_stop, message_stop
    }
  }

  end(): StreamEvent[] {
    return this.finished ? [] : [{ type: 'error', message: 'upstream stream ended before the response was complete', errorType: 'upstream_incomplete' }];
  }
}

export function anthropicErrorMessage(status: number, body: unknown): ProviderError {
  const e = isObj(body) ? obj(body.error) : undefined;
  if (e !== undefined) return { message: str(e.message) ?? `upstream error ${status}`, type: str(e.type) ?? statusType(status) };
  if (typeof body === 'string' && body.length > 0) return { message: body, type: statusType(status) };
  return { message: `upstream returned HTTP ${status}`, type: statusType(status) };
}

/**
 * One top-level field of anthropicBody's body and of an Anthropic client's body say the same: the
 * same JSON (key order aside), where a content or system string and a list of just one text block
 * holding it are the same (the API's shorthand; the request parser folds one into the other).
 * cache_control, thinking blocks and a tool_result's is_error are carried through the canonical
 * request (issue 16: a re-serialised body without cache_control lost the client its cache hits).
 * Anything aam's translation still drops (an empty text, a message's or block's other fields,
 * citations) or merges (same-role turns, several system blocks without a breakpoint) is a
 * difference: such a body is re-serialised as before.
 */
function sameAnthropicJson(built: unknown, client: unknown, key: string): boolean {
  if (built === client) return true;
  if (typeof built === 'string' || typeof client === 'string') {
    if (key !== 'content' && key !== 'system') return false;
    return typeof client === 'string' ? oneTextBlock(built) === client : oneTextBlock(client) === built;
  }
  if (typeof built !== 'object' || typeof client !== 'object' || built === null || client === null) return false;
  if (Array.isArray(built)) {
    if (!Array.isArray(client) || built.length !== client.length) return false;
    for (let i = 0; i < built.length; i++) if (!sameAnthropicJson(built[i], client[i], '')) return false;
    return true;
  }
  if (Array.isArray(client)) return false;
  return sameEntries(built as Obj, client as Obj, sameAnthropicJson);
}

/** The text of [{"type":"text","text":...}] (nothing else in it), else undefined. */
function oneTextBlock(v: unknown): string | undefined {
  if (!Array.isArray(v) || v.length !== 1) return undefined;
  const b: unknown = v[0];
  if (!isObj(b) || b.type !== 'text' || typeof b.text !== 'string') return undefined;
  let n = 0;
  for (const _ in b) n++;
  return n === 2 ? b.text : undefined;
}

const ANTHROPIC_HEADERS: Readonly<Record<string, string>> = Object.freeze({ 'content-type': 'application/json', 'anthropic-version': ANTHROPIC_VERSION });
const anthropicHead = () => ({ method: 'POST' as const, path: '/messages', headers: ANTHROPIC_HEADERS }); // shared and frozen, as openai.ts's JSON_HEADERS

export const anthropicAdapter: ProviderAdapter = {
  wire: 'anthropic',
  streamFraming: 'sse',
  chatRequest: (req, target) => ({ ...anthropicHead(), body: JSON.stringify(anthropicBody(req, target)) }),
  rawChatRequest: (client, req, target) => rawChatHead(anthropicBody(req, target), client, (k, built, c) => sameAnthropicJson(built, c, k), anthropicHead),
  chatResponse: anthropicChatResponse,
  streamParser: () => new AnthropicStreamParser(),
  errorMessage: anthropicErrorMessage,
};
