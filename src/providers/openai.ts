// OpenAI chat-completions wire (also OpenAI-compatible servers: vLLM, Ollama, Groq, OpenRouter...).
// Upstream side: canonical request -> OpenAI body; OpenAI response / SSE chunks -> canonical.
import type {
  ChatRequest, ChatResult, EmbeddingsRequest, Json, EmbeddingsResult, ProviderAdapter, ProviderError,
  RawChatHead, StreamEvent, StreamParser, TargetInfo, ToolCall, Usage, UpstreamRequest,
} from './types.ts';
import { OPENAI_FINISH, UpstreamShapeError, arr, localId, num, nowSeconds, obj, rawChatHead, statusType, usageOf, withoutAnthropicMarks } from './util.ts';
import type { Obj } from './util.ts';
import { StreamTemplate } from './chunk-template.ts';
import { isObj, parseJson, sameEntries, str } from '../lib/json.ts';

export { openaiCodec } from './openai-codec.ts';
export { parseOpenAIChatRequest, parseEmbeddingsRequest } from './openai-parse.ts';

/** Shared by every request (frozen: read, merged and never changed on the way out; gateway/upstream.ts reuses its merge while it is the same object). */
const JSON_HEADERS: Readonly<Record<string, string>> = Object.freeze({ 'content-type': 'application/json' });

/** A stream's stream_options when the client wrote none: one frozen object (raw-body.ts writes its bytes once). */
const USAGE_ON: Readonly<Obj> = Object.freeze({ include_usage: true });

/** Build the OpenAI body. Known fields are written after `extra` so they cannot be overridden. */
export function openaiChatBody(req: ChatRequest, target: TargetInfo): Obj {
  const body: Obj = req.extra !== undefined ? { ...req.extra } : {};
  body.model = target.model;
  const plain = req.anthropicMarks === true ? withoutAnthropicMarks(req.messages, req.tools) : req;
  body.messages = plain.messages;
  if (req.max_tokens !== undefined) body.max_tokens = req.max_tokens;
  if (req.max_completion_tokens !== undefined) body.max_completion_tokens = req.max_completion_tokens;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.top_p !== undefined) body.top_p = req.top_p;
  if (req.stop !== undefined) body.stop = req.stop;
  if (plain.tools !== undefined) body.tools = plain.tools;
  if (req.tool_choice !== undefined) body.tool_choice = req.tool_choice;
  if (req.parallel_tool_calls !== undefined) body.parallel_tool_calls = req.parallel_tool_calls;
  if (req.user !== undefined) body.user = req.user;
  if (req.response_format !== undefined) body.response_format = req.response_format;
  if (target.stream) {
    body.stream = true;
    // aam meters streams like non-streams, so usage is always requested (and hidden again later).
    body.stream_options = req.stream_options === undefined ? USAGE_ON : { ...req.stream_options, include_usage: true };
  } else {
    delete body.stream;
    delete body.stream_options;
  }
  return body;
}

export function openaiUsage(u: unknown): Usage | undefined {
  if (!isObj(u)) return undefined;
  const input = num(u.prompt_tokens);
  const output = num(u.completion_tokens);
  if (input === undefined && output === undefined) return undefined;
  return usageOf(input ?? 0, output ?? 0, num(obj(u.prompt_tokens_details)?.cached_tokens));
}

function toolCallsOf(v: unknown): ToolCall[] {
  const list = arr(v);
  if (list === undefined) return [];
  const out: ToolCall[] = [];
  for (const tc of list) {
    if (!isObj(tc)) continue;
    const fn = obj(tc.function);
    out.push({
      id: str(tc.id) ?? `call_${out.length}`,
      type: 'function',
      function: { name: str(fn?.name) ?? '', arguments: str(fn?.arguments) ?? '' },
    });
  }
  return out;
}

export function openaiChatResponse(body: unknown): ChatResult {
  if (!isObj(body)) throw new UpstreamShapeError('upstream returned a non-object chat response');
  const choice = obj(arr(body.choices)?.[0]);
  if (choice === undefined) throw new UpstreamShapeError('upstream chat response has no choices[0]');
  const msg = obj(choice.message) ?? {};
  const content = msg.content;
  const toolCalls = toolCallsOf(msg.tool_calls);
  const fr = str(choice.finish_reason);
  const result: ChatResult = {
    id: str(body.id) ?? localId('chatcmpl-'),
    model: str(body.model) ?? '',
    created: num(body.created) ?? nowSeconds(),
    text: typeof content === 'string' ? content : null,
    toolCalls,
    finishReason: (fr !== undefined ? OPENAI_FINISH[fr] : undefined) ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop'),
  };
  const usage = openaiUsage(body.usage);
  if (usage !== undefined) result.usage = usage;
  const logprobs = arr(obj(choice.logprobs)?.content);
  if (logprobs !== undefined) result.logprobs = logprobs as Json[];
  return result;
}

/**
 * Stateful chunk parser. Event order contract (all parsers): start, content..., usage?, finish.
 * OpenAI sends finish_reason before the usage chunk, so finish is held until usage or [DONE].
 */
class OpenAIStreamParser implements StreamParser {
  private started = false;
  private finish: StreamEvent | undefined = undefined;
  private finished = false;
  private usage: Usage | undefined = undefined;
  /** Tool indexes whose tool_start was emitted; some servers repeat id/name on every delta. */
  private tools: boolean[] = [];
  /** The frame of the last text-only chunk parsed whole (chunk-template.ts). */
  private tpl = new StreamTemplate('content');

  push(data: string, event?: string, parsed?: { value: unknown }): StreamEvent[] {
    if (parsed === undefined) {
      const text = this.tpl.match(data, event);
      // An array literal: a push into [] would allocate room for 17 events per chunk.
      if (text !== null) return text.length > 0 ? [{ type: 'text', text }] : [];
    }
    const out: StreamEvent[] = [];
    if (data === '[DONE]') { this.flush(out); return out; }
    const chunk = parsed ? parsed.value : parseJson(data);
    if (!isObj(chunk)) {
      out.push({ type: 'error', message: 'upstream sent a stream chunk that is not JSON', errorType: 'upstream_invalid_response' });
      return out;
    }
    const err = chunk.error;
    if (err !== undefined && err !== null) {
      const e = obj(err);
      out.push({ type: 'error', message: str(e?.message) ?? String(err), errorType: str(e?.type) ?? str(e?.code) ?? 'upstream_error' });
      return out;
    }
    if (!this.started) {
      this.started = true;
      out.push({ type: 'start', id: str(chunk.id) || localId('chatcmpl-'), model: str(chunk.model) ?? '' });
    }
    const choices = chunk.choices;
    if (Array.isArray(choices) && choices.length > 0) this.choice(choices[0], out);
    if (chunk.usage !== undefined && chunk.usage !== null) {
      const u = openaiUsage(chunk.usage);
      if (u !== undefined) this.usage = u;
      if (this.finish !== undefined) this.flush(out);
    } else if (parsed === undefined && this.tpl.open) this.learn(data, event, choices);
    return out;
  }

  /**
   * A chunk whose only effect is its text (no tool calls, finish reason or usage; error and usage
   * checked by the caller) becomes the template: the next chunks in the same frame only add their text.
   */
  private learn(data: string, event: string | undefined, choices: unknown): void {
    const c = Array.isArray(choices) ? obj(choices[0]) : undefined;
    const delta = obj(c?.delta);
    if (!c || !delta || typeof delta.content !== 'string' || delta.tool_calls !== undefined || typeof c.finish_reason === 'string') return;
    if (c.logprobs !== undefined && c.logprobs !== null) return; // its text's tokens: parsed with every chunk
    this.tpl.learn(data, event, delta.content);
  }

  private choice(c: unknown, out: StreamEvent[]): void {
    if (!isObj(c)) return;
    const delta = c.delta;
    if (isObj(delta)) {
      const text = delta.content;
      if (typeof text === 'string' && text.length > 0) {
        const lp = c.logprobs === undefined || c.logprobs === null ? undefined : arr(obj(c.logprobs)?.content);
        out.push(lp !== undefined && lp.length > 0 ? { type: 'text', text, logprobs: lp as Json[] } : { type: 'text', text });
      }
      const tcs = delta.tool_calls;
      if (Array.isArray(tcs)) for (let i = 0; i < tcs.length; i++) this.toolDelta(tcs[i], i, out);
    }
    const fr = c.finish_reason;
    if (typeof fr === 'string' && this.finish === undefined && !this.finished) {
      this.finish = { type: 'finish', reason: OPENAI_FINISH[fr] ?? 'stop' };
    }
  }

  private toolDelta(tc: unknown, pos: number, out: StreamEvent[]): void {
    if (!isObj(tc)) return;
    const index = num(tc.index) ?? pos;
    const fn = obj(tc.function);
    if (this.tools[index] !== true) {
      this.tools[index] = true;
      out.push({ type: 'tool_start', index, id: str(tc.id) || `call_${index}`, name: str(fn?.name) ?? '' });
    }
    const args = fn?.arguments;
    if (typeof args === 'string' && args.length > 0) out.push({ type: 'tool_args', index, delta: args });
  }

  private flush(out: StreamEvent[]): void {
    if (this.usage !== undefined) { out.push({ type: 'usage', usage: this.usage }); this.usage = undefined; }
    if (this.finish !== undefined) { out.push(this.finish); this.finish = undefined; this.finished = true; }
  }

  end(): StreamEvent[] {
    const out: StreamEvent[] = [];
    this.flush(out);
    if (!this.finished) {
      out.push({ type: 'error', message: 'upstream stream ended before the response was complete', errorType: 'upstream_incomplete' });
    }
    return out;
  }
}

export function openaiEmbeddingsBody(req: EmbeddingsRequest, target: TargetInfo): Obj {
  const body: Obj = { model: target.model, input: req.input };
  if (req.encoding_format !== undefined) body.encoding_format = req.encoding_format;
  if (req.dimensions !== undefined) body.dimensions = req.dimensions;
  if (req.user !== undefined) body.user = req.user;
  return body;
}

/**
 * One embedding in the encoding the client asked for: OpenAI's `base64` is the little-endian
 * float32 bytes (the OpenAI SDK asks for it by default and decodes it, so a provider that answers
 * floats must be encoded, or the SDK decodes numbers as base64), `float` the numbers.
 */
export function embeddingAs(e: number[] | string, format: 'float' | 'base64' | undefined): number[] | string {
  if (format === 'base64') return typeof e === 'string' ? e : Buffer.from(new Float32Array(e).buffer).toString('base64');
  if (typeof e === 'string') {
    const b = Buffer.from(e, 'base64');
    return Array.from(new Float32Array(b.buffer, b.byteOffset, Math.floor(b.length / 4)));
  }
  return e;
}

/**
 * Are an upstream's embeddings already in the encoding the client asked for (then its answer can
 * go back as it is)? An OpenAI-compatible server may ignore `encoding_format` and answer numbers
 * to `base64` (the OpenAI SDK, asking base64 by default, then decodes numbers as base64: []).
 */
export function embeddingsEncodedAs(r: EmbeddingsResult, format: 'float' | 'base64' | undefined): boolean {
  const base64 = format === 'base64';
  return r.data.every((d) => (typeof d.embedding === 'string') === base64);
}

export function openaiEmbeddingsResponse(body: unknown): EmbeddingsResult {
  if (!isObj(body)) throw new UpstreamShapeError('upstream returned a non-object embeddings response');
  const list = arr(body.data);
  if (list === undefined) throw new UpstreamShapeError('upstream embeddings response has no data array');
  const data: EmbeddingsResult['data'] = [];
  for (let i = 0; i < list.length; i++) {
    const d = obj(list[i]);
    const e = d?.embedding;
    if (typeof e === 'string' || Array.isArray(e)) data.push({ index: num(d?.index) ?? i, embedding: e as number[] | string });
  }
  const result: EmbeddingsResult = { model: str(body.model) ?? '', data };
  const u = obj(body.usage);
  if (u !== undefined) result.usage = { inputTokens: num(u.prompt_tokens) ?? num(u.total_tokens) ?? 0, outputTokens: 0 };
  return result;
}

/** OpenAI-shaped error bodies: {error:{message,type,code}}; also plain strings / text. */
export function openaiErrorMessage(status: number, body: unknown): ProviderError {
  if (isObj(body)) {
    const e = body.error;
    if (isObj(e)) return { message: str(e.message) ?? `upstream error ${status}`, type: str(e.type) ?? str(e.code) ?? statusType(status) };
    if (typeof e === 'string') return { message: e, type: statusType(status) };
    const m = str(body.message) ?? str(body.detail);
    if (m !== undefined) return { message: m, type: statusType(status) };
  }
  if (typeof body === 'string' && body.length > 0) return { message: body, type: statusType(status) };
  return { message: `upstream returned HTTP ${status}`, type: statusType(status) };
}

export function jsonRequest(path: string, body: Obj): UpstreamRequest {
  return { method: 'POST', path, headers: JSON_HEADERS, body: JSON.stringify(body) };
}

/**
 * rawChatRequest for a body built by openaiChatBody (rawChatHead's rule): each field the very
 * value the built body holds (the parsed request's own objects: a guardrail's redaction is a new
 * one); stream_options, which a stream always rebuilds, may instead hold the same fields, and a
 * stream whose client did not write it gets the one openaiChatBody forces.
 */
export function openaiRawRequest(path: (target: TargetInfo) => string) {
  return (client: Readonly<Obj>, req: ChatRequest, target: TargetInfo): RawChatHead =>
    rawChatHead(openaiChatBody(req, target), client, sameOpenAIField, () => ({ method: 'POST', path: path(target), headers: JSON_HEADERS }));
}

const sameOpenAIField = (k: string, built: unknown, client: unknown): boolean => built === client || (k === 'stream_options' && sameFields(built, client));

/** Two flat objects with the same keys holding the same values. */
const sameFields = (a: unknown, b: unknown): boolean => isObj(a) && isObj(b) && sameEntries(a, b, identical);
const identical = (a: unknown, b: unknown): boolean => a === b;

export const openaiAdapter: ProviderAdapter = {
  wire: 'openai',
  streamFraming: 'sse',
  chatRequest: (req, target) => jsonRequest('/chat/completions', openaiChatBody(req, target)),
  rawChatRequest: openaiRawRequest(() => '/chat/completions'),
  chatResponse: openaiChatResponse,
  streamParser: () => new OpenAIStreamParser(),
  embeddingsRequest: (req, target) => jsonRequest('/embeddings', openaiEmbeddingsBody(req, target)),
  embeddingsResponse: openaiEmbeddingsResponse,
  errorMessage: openaiErrorMessage,
};
