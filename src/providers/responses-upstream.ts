// OpenAI Responses API, upstream side: canonical request -> a /responses body; a Response and
// its SSE events -> canonical. Used for OpenAI providers when the agent speaks the Responses API,
// so OpenAI is called on its own Responses API (models offered only there work). aam keeps the
// conversation state itself: every request carries the whole conversation and `store: false`,
// so OpenAI holds nothing and no provider id reaches the agent.
import type { ChatMessage, ChatRequest, ChatResult, ContentPart, FinishReason, Json, ProviderAdapter, ReasoningBlock, StreamEvent, StreamParser, TargetInfo, ThinkingBlock, Usage } from './types.ts';
import { UpstreamShapeError, arr, localId, num, nowSeconds, obj, usageOf } from './util.ts';
import type { Obj } from './util.ts';
import { jsonRequest, openaiErrorMessage } from './openai.ts';
import { isObj, parseJson, str } from '../lib/json.ts';

function inputPart(p: ContentPart): Obj {
  if (p.type === 'text') return { type: 'input_text', text: (p as { text: string }).text };
  if (p.type === 'image_url') {
    const u = (p as { image_url: { url: string; detail?: string } }).image_url;
    return u.detail !== undefined ? { type: 'input_image', image_url: u.url, detail: u.detail } : { type: 'input_image', image_url: u.url };
  }
  const file = (p as { file?: unknown }).file;
  if (p.type === 'file' && isObj(file)) return { type: 'input_file', ...file };
  return p as Obj; // input_audio and others as they came
}

function textOf(c: string | ContentPart[] | null): string {
  if (c === null) return '';
  if (typeof c === 'string') return c;
  return c.map((p) => (p.type === 'text' ? (p as { text: string }).text : '')).join('');
}

/** Canonical messages -> Responses input items (system and developer stay messages of their role). */
export function responsesInput(messages: readonly ChatMessage[]): Obj[] {
  const out: Obj[] = [];
  for (const m of messages) {
    if (m.role === 'tool') {
      out.push({ type: 'function_call_output', call_id: m.tool_call_id ?? '', output: typeof m.content === 'string' ? m.content : (m.content ?? []).map(inputPart) });
    } else if (m.role === 'assistant') {
      if (m.reasoning !== undefined) for (const r of m.reasoning) out.push(r as Obj);
      const text = textOf(m.content);
      if (text !== '') out.push({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] });
      for (const tc of m.tool_calls ?? []) out.push({ type: 'function_call', call_id: tc.id, name: tc.function.name, arguments: tc.function.arguments });
    } else {
      out.push({ type: 'message', role: m.role, content: typeof m.content === 'string' ? m.content : (m.content ?? []).map(inputPart) });
    }
  }
  return out;
}

export function responsesBody(req: ChatRequest, target: TargetInfo): Obj {
  const body: Obj = { model: target.model, input: responsesInput(req.messages), store: false };
  if (req.max_completion_tokens !== undefined || req.max_tokens !== undefined) body.max_output_tokens = req.max_completion_tokens ?? req.max_tokens;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.top_p !== undefined) body.top_p = req.top_p;
  if (req.tools !== undefined && req.tools.length > 0) {
    body.tools = req.tools.map((t) => {
      const def: Obj = { type: 'function', name: t.function.name, parameters: t.function.parameters ?? { type: 'object', properties: {} } };
      if (t.function.description !== undefined) def.description = t.function.description;
      def.strict = t.function.strict ?? false;
      return def;
    });
  }
  const tc = req.tool_choice;
  if (tc !== undefined) body.tool_choice = typeof tc === 'string' ? tc : { type: 'function', name: tc.function.name };
  if (req.parallel_tool_calls !== undefined) body.parallel_tool_calls = req.parallel_tool_calls;
  if (req.user !== undefined) body.user = req.user;
  const rf = req.response_format;
  if (rf?.type === 'json_object') body.text = { format: { type: 'json_object' } };
  else if (rf?.type === 'json_schema' && isObj(rf.json_schema)) body.text = { format: { type: 'json_schema', ...rf.json_schema } };
  const x = req.extra ?? {};
  if (typeof x.reasoning_effort === 'string') body.reasoning = { effort: x.reasoning_effort };
  // Chat's logprobs are the Responses API's include of the output text's logprobs.
  const include: string[] = [];
  if (x.logprobs === true) {
    include.push('message.output_text.logprobs');
    if (typeof x.top_logprobs === 'number') body.top_logprobs = x.top_logprobs;
  }
  if (req.reasoningItems === true) include.push('reasoning.encrypted_content');
  if (include.length > 0) body.include = include;
  for (const k of ['service_tier', 'safety_identifier', 'prompt_cache_key']) if (x[k] !== undefined) body[k] = x[k];
  if (target.stream) body.stream = true;
  return body;
}

export function responsesUsage(u: unknown): Usage | undefined {
  if (!isObj(u)) return undefined;
  return usageOf(num(u.input_tokens) ?? 0, num(u.output_tokens) ?? 0, num(obj(u.input_tokens_details)?.cached_tokens));
}

function finishOf(r: Obj, calls: number): FinishReason {
  if (r.status === 'incomplete') return str(obj(r.incomplete_details)?.reason) === 'content_filter' ? 'content_filter' : 'length';
  return calls > 0 ? 'tool_calls' : 'stop';
}

/** A reasoning item's summary texts (summary_text parts, in order). */
function summaryTexts(it: Obj): string[] {
  const out: string[] = [];
  for (const p of arr(it.summary) ?? []) if (isObj(p) && typeof p.text === 'string') out.push(p.text);
  return out;
}

/** A reasoning item's raw reasoning texts (its content's reasoning_text parts), or undefined when it has none. */
function contentTexts(it: Obj): string[] | undefined {
  const c = arr(it.content);
  if (c === undefined || c.length === 0) return undefined;
  const out: string[] = [];
  for (const p of c) if (isObj(p) && typeof p.text === 'string') out.push(p.text);
  return out;
}

/** A reasoning item as a canonical block: its summary and reasoning texts apart (model output, read as thinking text), the rest as sent. */
function reasoningBlock(it: Obj): ReasoningBlock {
  const content = contentTexts(it);
  if (content === undefined) return { type: 'reasoning', summary: summaryTexts(it), item: { ...it, summary: [] } as Json };
  return { type: 'reasoning', summary: summaryTexts(it), content, item: { ...it, summary: [], content: [] } as Json };
}

export function responsesChatResponse(body: unknown): ChatResult {
  if (!isObj(body)) throw new UpstreamShapeError('upstream returned a non-object response');
  const output = arr(body.output);
  if (output === undefined) throw new UpstreamShapeError('upstream response has no output array');
  let text: string | null = null;
  let logprobs: Json[] | undefined;
  let thinking: ThinkingBlock[] | undefined;
  const toolCalls: ChatResult['toolCalls'] = [];
  for (const it of output) {
    if (!isObj(it)) continue;
    if (it.type === 'message') {
      for (const c of arr(it.content) ?? []) {
        if (!isObj(c) || c.type !== 'output_text' || typeof c.text !== 'string') continue;
        text = (text ?? '') + c.text;
        const lp = arr(c.logprobs);
        if (lp !== undefined && lp.length > 0) (logprobs ??= []).push(...lp as Json[]);
      }
    } else if (it.type === 'reasoning') {
      (thinking ??= []).push(reasoningBlock(it));
    } else if (it.type === 'function_call') {
      toolCalls.push({ id: str(it.call_id) ?? `call_${toolCalls.length}`, type: 'function', function: { name: str(it.name) ?? '', arguments: str(it.arguments) ?? '' } });
    }
  }
  const result: ChatResult = {
    id: str(body.id) ?? localId('resp_'), model: str(body.model) ?? '', created: num(body.created_at) ?? nowSeconds(),
    text, toolCalls, finishReason: finishOf(body, toolCalls.length),
  };
  const usage = responsesUsage(body.usage);
  if (usage !== undefined) result.usage = usage;
  if (logprobs !== undefined) result.logprobs = logprobs;
  if (thinking !== undefined) result.thinking = thinking;
  return result;
}

/** Responses SSE -> canonical events; function calls are indexed in order of appearance. */
class ResponsesStreamParser implements StreamParser {
  private started = false;
  private finished = false;
  private readonly callIndex = new Map<string, number>(); // item id -> canonical tool index
  /** Reasoning items whose summary parts streamed (their text came as deltas, not again at .done). */
  private readonly summarized = new Set<string>();
  /** Reasoning items whose reasoning_text parts streamed. */
  private readonly reasoned = new Set<string>();

  push(data: string, _event?: string, parsed?: { value: unknown }): StreamEvent[] {
    const ev = parsed ? parsed.value : parseJson(data);
    if (!isObj(ev)) return [{ type: 'error', message: 'upstream sent a stream event that is not JSON', errorType: 'upstream_invalid_response' }];
    const out: StreamEvent[] = [];
    const r = obj(ev.response);
    if (!this.started && (ev.type === 'response.created' || r !== undefined)) {
      this.started = true;
      out.push({ type: 'start', id: str(r?.id) ?? localId('resp_'), model: str(r?.model) ?? '' });
    }
    switch (ev.type) {
      case 'response.output_text.delta':
        if (typeof ev.delta === 'string' && ev.delta.length > 0) {
          const lp = arr(ev.logprobs);
          out.push(lp !== undefined && lp.length > 0 ? { type: 'text', text: ev.delta, logprobs: lp as Json[] } : { type: 'text', text: ev.delta });
        }
        break;
      case 'response.output_item.added': {
        const it = obj(ev.item);
        if (it?.type !== 'function_call') break;
        const index = this.callIndex.size;
        this.callIndex.set(str(it.id) ?? `item_${index}`, index);
        out.push({ type: 'tool_start', index, id: str(it.call_id) ?? `call_${index}`, name: str(it.name) ?? '' });
        if (typeof it.arguments === 'string' && it.arguments.length > 0) out.push({ type: 'tool_args', index, delta: it.arguments });
        break;
      }
      // A reasoning item's summary: each part opens under the item's id, its text as thinking deltas
      // (scrubbed and guarded as thinking text); the item's .done ends it, its summary taken out.
      case 'response.reasoning_summary_part.added': {
        const id = str(ev.item_id) ?? '';
        this.summarized.add(id);
        out.push({ type: 'thinking_start', id });
        break;
      }
      case 'response.reasoning_summary_text.delta':
      case 'response.reasoning_text.delta':
        if (typeof ev.delta === 'string' && ev.delta.length > 0) out.push({ type: 'thinking', text: ev.delta });
        break;
      // A reasoning item's raw reasoning text (gpt-oss): each reasoning_text part opens like a summary part.
      case 'response.content_part.added': {
        if (obj(ev.part)?.type !== 'reasoning_text') break;
        const id = str(ev.item_id) ?? '';
        this.reasoned.add(id);
        out.push({ type: 'thinking_start', id, content: true });
        break;
      }
      case 'response.output_item.done': {
        const it = obj(ev.item);
        if (it?.type !== 'reasoning') break;
        const b = reasoningBlock(it);
        const id = str(it.id) ?? '';
        // A summary that did not stream (an upstream that sends only the finished item): its parts now.
        if (!this.summarized.has(id)) {
          for (const text of b.summary) { out.push({ type: 'thinking_start', id }); if (text.length > 0) out.push({ type: 'thinking', text }); }
        }
        if (!this.reasoned.has(id)) {
          for (const text of b.content ?? []) { out.push({ type: 'thinking_start', id, content: true }); if (text.length > 0) out.push({ type: 'thinking', text }); }
        }
        out.push({ type: 'reasoning_item', item: b.item });
        break;
      }
      case 'response.function_call_arguments.delta': {
        const index = this.callIndex.get(str(ev.item_id) ?? '');
        if (index !== undefined && typeof ev.delta === 'string' && ev.delta.length > 0) out.push({ type: 'tool_args', index, delta: ev.delta });
        break;
      }
      case 'response.completed':
      case 'response.incomplete': {
        const usage = responsesUsage(r?.usage);
        if (usage !== undefined) out.push({ type: 'usage', usage });
        out.push({ type: 'finish', reason: finishOf(r ?? {}, this.callIndex.size) });
        this.finished = true;
        break;
      }
      case 'response.failed': {
        const e = obj(r?.error);
        out.push({ type: 'error', message: str(e?.message) ?? 'upstream response failed', errorType: str(e?.code) ?? 'api_error' });
        break;
      }
      case 'error': {
        const e = obj(ev.error);
        out.push({ type: 'error', message: str(e?.message) ?? str(ev.message) ?? 'upstream stream error', errorType: str(e?.type) ?? str(ev.code) ?? 'api_error' });
        break;
      }
      default:
        break; // in_progress, content parts, done events: their content came as deltas
    }
    return out;
  }

  end(): StreamEvent[] {
    return this.finished ? [] : [{ type: 'error', message: 'upstream stream ended before the response was complete', errorType: 'upstream_incomplete' }];
  }
}

export const responsesUpstreamAdapter: ProviderAdapter = {
  wire: 'openai-responses',
  streamFraming: 'sse',
  chatRequest: (req, target) => jsonRequest('/responses', responsesBody(req, target)),
  chatResponse: responsesChatResponse,
  streamParser: () => new ResponsesStreamParser(),
  errorMessage: openaiErrorMessage,
};
