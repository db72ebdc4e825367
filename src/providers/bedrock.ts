// Amazon Bedrock Converse / ConverseStream wire, upstream side. One request shape for every model
// on Bedrock. Streams are AWS event-stream frames (bedrock-eventstream.ts turns them into
// records: `event` is the event type, `data` its JSON payload). Bedrock sends usage (`metadata`)
// after `messageStop`, so the finish is held until usage arrives or the stream ends, keeping the
// adapters' order contract (usage before finish). Signing (SigV4) is the credentials module's job.
import type {
  CacheControl, ChatMessage, ChatRequest, ChatResult, ContentPart, FinishReason, TextPart, ProviderAdapter, ProviderError,
  StreamEvent, StreamParser, ThinkingBlock, ToolCall, Usage, ResultBlock,
} from './types.ts';
import { interleavedOrder } from './types.ts';
import { UpstreamShapeError, argsObject, arr, localId, num, nowSeconds, obj, statusType, usageOf } from './util.ts';
import type { Obj } from './util.ts';
import { isObj, parseJson, str } from '../lib/json.ts';
import { claudeSigned, effortThinking, unsignedToolLoop } from './claude-effort.ts';

const STOP: Readonly<Record<string, FinishReason>> = {
  end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', model_context_window_exceeded: 'length',
  tool_use: 'tool_calls', guardrail_intervened: 'content_filter', content_filtered: 'content_filter',
};

const DATA_URL = /^data:image\/(png|jpeg|jpg|gif|webp);base64,(.*)$/s;

/** Default endpoint of a region (a Provider's baseUrl replaces it, e.g. a VPC endpoint). */
export function bedrockEndpoint(region: string): string {
  return `https://bedrock-runtime.${region}.amazonaws.com`;
}

function imageBlock(url: string): Obj {
  const m = DATA_URL.exec(url);
  if (m === null) throw new UpstreamShapeError('Bedrock takes images as base64 data URLs (data:image/png;base64,...), not links; inline the image');
  return { image: { format: m[1] === 'jpg' ? 'jpeg' : m[1], source: { bytes: m[2] } } };
}

/** Converse document formats by media type and by file extension. */
const DOC_FORMAT_BY_MIME: Readonly<Record<string, string>> = {
  'application/pdf': 'pdf', 'text/csv': 'csv', 'application/msword': 'doc', 'application/vnd.ms-excel': 'xls',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': 'docx',
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet': 'xlsx', 'text/html': 'html', 'text/plain': 'txt', 'text/markdown': 'md',
};
const DOC_FORMATS = new Set(Object.values(DOC_FORMAT_BY_MIME));
const DOC_DATA_URL = /^data:([^;,]+);base64,(.*)$/s;
const DOC_EXT = /\.([a-z0-9]+)$/i;

/**
 * An OpenAI file part ({file: {file_data, filename}}) as a Converse document block: the bytes
 * inline, the format from the data: URL's media type, else the filename's extension (pdf, csv,
 * doc, docx, xls, xlsx, html, txt, md). Its name is the filename without extension, reduced to the
 * characters Converse allows (letters, digits, spaces, hyphens, parentheses, brackets). Null when
 * Converse has no form for it (a file_url or OpenAI file_id, another type): params.ts refuses the
 * request for this target then.
 */
export function bedrockDocument(p: ContentPart): Obj | null {
  const f = (p as { file?: unknown }).file;
  if (!isObj(f) || typeof f.file_data !== 'string') return null;
  const filename = typeof f.filename === 'string' ? f.filename : '';
  const m = DOC_DATA_URL.exec(f.file_data);
  const ext = DOC_EXT.exec(filename)?.[1]?.toLowerCase() ?? '';
  const format = m !== null ? DOC_FORMAT_BY_MIME[m[1].toLowerCase()] : DOC_FORMATS.has(ext) ? ext : undefined;
  if (format === undefined) return null;
  const base = ext !== '' ? filename.slice(0, -(ext.length + 1)) : filename;
  const name = base.replace(/[^A-Za-z0-9\s\-()[\]]+/g, '-').replace(/\s+/g, ' ').trim() || 'document';
  return { document: { format, name, source: { bytes: m !== null ? m[2] : f.file_data } } };
}

/**
 * Converse's cachePoint block for an Anthropic cache breakpoint (`cache_control`), put after the
 * block it marks: the prompt up to there is cached. Its ttl ("5m" | "1h") goes along.
 */
function cachePoint(cc: CacheControl): Obj {
  const p: Obj = { type: 'default' };
  if (cc.ttl === '5m' || cc.ttl === '1h') p.ttl = cc.ttl;
  return { cachePoint: p };
}

/** A cache point after the last block when `cc` is a breakpoint and caching is on (something to mark). */
function markEnd(out: Obj[], from: number, cc: CacheControl | undefined, caching: boolean): void {
  if (caching && isObj(cc) && out.length > from) out.push(cachePoint(cc));
}

function blocksOf(content: string | ContentPart[] | null, out: Obj[], caching = false): void {
  if (content === null) return;
  if (typeof content === 'string') { if (content.length > 0) out.push({ text: content }); return; }
  for (const p of content) {
    const n = out.length;
    if (p.type === 'text') { const t = (p as { text: string }).text; if (t.length > 0) out.push({ text: t }); }
    else if (p.type === 'image_url') out.push(imageBlock((p as { image_url: { url: string } }).image_url.url));
    else if (p.type === 'file') { const d = bedrockDocument(p); if (d !== null) out.push(d); }
    markEnd(out, n, (p as TextPart).cache_control, caching);
  }
}

function textOf(content: string | ContentPart[] | null): string {
  if (typeof content === 'string') return content;
  let s = '';
  if (content !== null) for (const p of content) if (p.type === 'text') s += (s.length > 0 ? '\n' : '') + (p as { text: string }).text;
  return s;
}

/** A tool result: JSON objects go as `json` blocks (models read them structured), anything else as text. */
function toolResult(m: ChatMessage): Obj {
  const text = textOf(m.content);
  const v = parseJson(text);
  return { toolResult: { toolUseId: m.tool_call_id ?? '', content: [isObj(v) ? { json: v } : { text: text.length > 0 ? text : '(empty)' }] } };
}

interface BMsg { role: 'user' | 'assistant'; content: Obj[] }

/**
 * An Anthropic client's thinking blocks sent back (Claude on Bedrock requires them before a turn's
 * toolUse, as Anthropic does) as Converse reasoningContent, signature and redacted bytes as received.
 */
function reasoningBlocks(thinking: ReadonlyArray<Record<string, unknown>>, out: Obj[]): void {
  for (const t of thinking) {
    if (!claudeSigned(t)) continue; // another model's thought (a Gemini one): Claude refuses it
    if (t.type === 'thinking' && typeof t.thinking === 'string') {
      const rt: Obj = { text: t.thinking };
      if (typeof t.signature === 'string') rt.signature = t.signature;
      out.push({ reasoningContent: { reasoningText: rt } });
    } else if (t.type === 'redacted_thinking' && typeof t.data === 'string') out.push({ reasoningContent: { redactedContent: t.data } });
  }
}

function toolUseBlock(tc: ToolCall, out: Obj[], caching: boolean): void {
  out.push({ toolUse: { toolUseId: tc.id, name: tc.function.name, input: argsObject(tc.function.arguments) } });
  markEnd(out, 0, tc.cache_control, caching);
}

/** A Claude assistant turn with interleaved thinking: reasoningContent, text and toolUse in the client's order. */
function inOrder(m: ChatMessage, out: Obj[], caching: boolean): void {
  const th = m.thinking ?? [];
  const parts = m.content as ContentPart[];
  const calls = m.tool_calls ?? [];
  let t = 0, p = 0, c = 0;
  for (const k of m.order!) {
    if (k === 'thinking') { if (t < th.length) reasoningBlocks([th[t++]], out); }
    else if (k === 'text') { if (p < parts.length) blocksOf([parts[p++]], out, caching); }
    else if (c < calls.length) toolUseBlock(calls[c++], out, caching);
  }
  if (t < th.length) reasoningBlocks(th.slice(t), out);
  if (p < parts.length) blocksOf(parts.slice(p), out, caching);
  for (; c < calls.length; c++) toolUseBlock(calls[c], out, caching);
}

/** Converse reasoningContent -> a canonical thinking block (redactedContent: its base64, as sent back above). */
function thinkingOf(rc: Obj): ThinkingBlock | undefined {
  const rt = obj(rc.reasoningText);
  if (rt !== undefined) return { type: 'thinking', thinking: str(rt.text) ?? '', signature: str(rt.signature) ?? '' };
  const red = str(rc.redactedContent);
  return red !== undefined ? { type: 'redacted_thinking', data: red } : undefined;
}

/** Claude on Bedrock (a model id, an inference profile or an ARN naming one): the signatures are Claude's, no other model takes them. */
export const isClaude = (model: string): boolean => /claude/i.test(model);

/** Models that take Converse cache points (Claude, Nova); others would refuse the request. */
const cachesPrompts = (model: string): boolean => /claude|nova/i.test(model);

/**
 * Canonical messages -> Bedrock system blocks + alternating user/assistant messages. With
 * `caching`, each cache breakpoint (part, tool call, tool result, message) becomes a cachePoint
 * block after what it marks.
 */
export function bedrockMessages(messages: ChatMessage[], claude = false, caching = false): { system: Obj[]; messages: BMsg[] } {
  const system: Obj[] = [];
  const out: BMsg[] = [];
  let last: BMsg | undefined;
  for (const m of messages) {
    if (m.role === 'system' || m.role === 'developer') {
      const n = system.length;
      if (caching && Array.isArray(m.content) && m.content.some((p) => isObj((p as TextPart).cache_control))) {
        for (const p of m.content) if (p.type === 'text') blocksOf([p], system, true); // each part its own block, its breakpoint after it
      } else {
        const t = textOf(m.content);
        if (t.length > 0) system.push({ text: t });
      }
      markEnd(system, n, m.cache_control, caching);
      continue;
    }
    const role = m.role === 'assistant' ? 'assistant' : 'user';
    if (last === undefined || last.role !== role) {
      last = { role, content: [] };
      out.push(last);
    }
    const n = last.content.length;
    if (m.role === 'tool') {
      last.content.push(toolResult(m));
      // A breakpoint inside the result's content (Converse has no cache point there): after the block.
      if (caching && m.cache_control === undefined && Array.isArray(m.content)) {
        const cc = m.content.find((p) => isObj((p as TextPart).cache_control)) as TextPart | undefined;
        markEnd(last.content, n, cc?.cache_control, true);
      }
    }
    else if (claude && m.role === 'assistant' && m.order !== undefined && Array.isArray(m.content)) inOrder(m, last.content, caching);
    else {
      if (claude && m.role === 'assistant' && m.thinking !== undefined) reasoningBlocks(m.thinking, last.content);
      blocksOf(m.content, last.content, caching);
      for (const tc of m.tool_calls ?? []) toolUseBlock(tc, last.content, caching);
    }
    markEnd(last.content, n, m.cache_control, caching);
  }
  return { system, messages: out };
}

function hasToolHistory(messages: BMsg[]): boolean {
  return messages.some((m) => m.content.some((b) => b.toolUse !== undefined || b.toolResult !== undefined));
}

export function bedrockBody(req: ChatRequest, model = '', options?: Readonly<Record<string, string>>): Obj {
  const caching = req.anthropicMarks === true && cachesPrompts(model);
  const { system, messages } = bedrockMessages(req.messages, isClaude(model), caching);
  const body: Obj = { messages };
  if (system.length > 0) body.system = system;
  const inf: Obj = {};
  const max = req.max_completion_tokens ?? req.max_tokens;
  if (max !== undefined) inf.maxTokens = max;
  if (req.temperature !== undefined) inf.temperature = req.temperature;
  if (req.top_p !== undefined) inf.topP = req.top_p;
  if (req.stop !== undefined) inf.stopSequences = typeof req.stop === 'string' ? [req.stop] : req.stop;
  for (const _ in inf) { body.inferenceConfig = inf; break; }
  const tc = req.tool_choice;
  // Converse has no "none": without tool history the tools are left out; with it they must stay
  // (Bedrock rejects toolUse blocks without a toolConfig).
  const tools = req.tools !== undefined && req.tools.length > 0 && (tc !== 'none' || hasToolHistory(messages)) ? req.tools : undefined;
  if (tools !== undefined) {
    const list: Obj[] = [];
    for (const t of tools) {
      const spec: Obj = { name: t.function.name };
      if (t.function.description !== undefined) spec.description = t.function.description;
      spec.inputSchema = { json: t.function.parameters ?? { type: 'object', properties: {} } };
      list.push({ toolSpec: spec });
      markEnd(list, 0, t.cache_control, caching);
    }
    const cfg: Obj = { tools: list };
    if (tc === 'auto') cfg.toolChoice = { auto: {} };
    else if (tc === 'required') cfg.toolChoice = { any: {} };
    else if (tc !== undefined && tc !== 'none') cfg.toolChoice = { tool: { name: tc.function.name } };
    body.toolConfig = cfg;
  }
  // Model-specific fields an Anthropic client sent (top_k, thinking...) go where Bedrock takes them.
  const extra: Obj = {};
  if (req.anthropicExtra !== undefined) for (const [k, v] of Object.entries(req.anthropicExtra)) if (k !== 'metadata') extra[k] = v;
  // An OpenAI client's reasoning effort is Claude's thinking, there too (an Anthropic client's own thinking wins).
  if (isClaude(model)) {
    const t = effortThinking(req, model, options);
    if (t !== null) {
      extra.thinking = t.thinking;
      if (t.effort !== undefined) extra.output_config = { ...(isObj(extra.output_config) ? extra.output_config : undefined), effort: t.effort };
      inf.maxTokens = t.maxTokens;
      body.inferenceConfig = inf;
    }
  }
  if (isObj(extra.thinking) && extra.thinking.type !== 'disabled' && unsignedToolLoop(req.messages)) delete extra.thinking;
  for (const _ in extra) { body.additionalModelRequestFields = extra; break; }
  return body;
}

/** Converse counts cached prompt tokens apart from inputTokens; canonical input includes them. */
export function bedrockUsage(u: unknown): Usage | undefined {
  if (!isObj(u)) return undefined;
  const cached = num(u.cacheReadInputTokens) ?? 0;
  const written = num(u.cacheWriteInputTokens) ?? 0;
  const input = (num(u.inputTokens) ?? 0) + cached + written;
  const usage = usageOf(input, num(u.outputTokens) ?? 0, cached, written);
  // cacheDetails splits the writes by lifetime (5m / 1h; empty without writes): one-hour writes are
  // priced higher, and an Anthropic client gets the split.
  const details = arr(u.cacheDetails);
  if (details !== undefined && details.length > 0 && written > 0) {
    let hour = 0;
    for (const d of details) if (isObj(d) && d.ttl === '1h') hour += num(d.inputTokens) ?? 0;
    usage.cacheWrite1hTokens = Math.min(hour, written);
  }
  return usage;
}

export function bedrockChatResponse(body: unknown): ChatResult {
  if (!isObj(body)) throw new UpstreamShapeError('upstream returned a non-object Converse response');
  const content = arr(obj(obj(body.output)?.message)?.content);
  if (content === undefined) throw new UpstreamShapeError('upstream Converse response has no output.message.content');
  let text: string | null = null;
  const toolCalls: ToolCall[] = [];
  let thinking: ThinkingBlock[] | undefined;
  for (const b of content) {
    if (!isObj(b)) continue;
    if (typeof b.text === 'string') text = (text ?? '') + b.text;
    const rc = obj(b.reasoningContent);
    const th = rc !== undefined ? thinkingOf(rc) : undefined;
    if (th !== undefined) (thinking ??= []).push(th);
    const tu = obj(b.toolUse);
    if (tu !== undefined) toolCalls.push({ id: str(tu.toolUseId) ?? `call_${toolCalls.length}`, type: 'function', function: { name: str(tu.name) ?? '', arguments: JSON.stringify(tu.input ?? {}) } });
  }
  const sr = str(body.stopReason);
  let finishReason: FinishReason = (sr !== undefined ? STOP[sr] : undefined) ?? 'stop';
  if (toolCalls.length > 0 && finishReason === 'stop') finishReason = 'tool_calls';
  const result: ChatResult = { id: localId('bedrock-'), model: '', created: nowSeconds(), text, toolCalls, finishReason };
  const usage = bedrockUsage(body.usage);
  if (usage !== undefined) result.usage = usage;
  if (thinking !== undefined) {
    result.thinking = thinking;
    // The blocks' order, kept when reasoning is interleaved (answers without it skip this pass).
    const seq: ResultBlock[] = [];
    for (const b of content) {
      if (!isObj(b)) continue;
      if (typeof b.text === 'string') seq.push(b.text.length);
      else if (b.reasoningContent !== undefined) seq.push('thinking');
      else if (b.toolUse !== undefined) seq.push('tool');
    }
    const order = interleavedOrder(seq);
    if (order !== undefined) result.order = order;
  }
  return result;
}

class BedrockStreamParser implements StreamParser {
  private started = false;
  private tools = 0;
  /** contentBlockIndex -> tool-call index. */
  private readonly toolAt = new Map<number, number>();
  /** contentBlockIndex of the reasoning block being streamed, -1 when none. */
  private thinkingAt = -1;
  private stop: FinishReason | undefined;
  private done = false;

  push(data: string, event?: string, parsed?: { value: unknown }): StreamEvent[] {
    const ev = event ?? '';
    if (ev.startsWith('error:')) return [{ type: 'error', message: data, errorType: ev === 'error:eventstream' ? 'upstream_invalid_response' : ev.slice(6) }];
    const payload = parsed ? parsed.value : parseJson(data);
    if (ev.startsWith('exception:')) {
      return [{ type: 'error', message: str(obj(payload)?.message) ?? str(obj(payload)?.Message) ?? ev.slice(10), errorType: ev.slice(10) }];
    }
    if (!isObj(payload)) return [{ type: 'error', message: `upstream sent a ${ev || 'stream'} event that is not JSON`, errorType: 'upstream_invalid_response' }];
    const out: StreamEvent[] = [];
    if (!this.started) {
      this.started = true;
      out.push({ type: 'start', id: localId('bedrock-'), model: '' });
    }
    if (ev === 'contentBlockStart') {
      const tu = obj(obj(payload.start)?.toolUse);
      if (tu !== undefined) {
        const index = this.tools++;
        this.toolAt.set(num(payload.contentBlockIndex) ?? -1, index);
        out.push({ type: 'tool_start', index, id: str(tu.toolUseId) ?? `call_${index}`, name: str(tu.name) ?? '' });
      }
    } else if (ev === 'contentBlockDelta') {
      const d = obj(payload.delta);
      if (typeof d?.text === 'string' && d.text.length > 0) out.push({ type: 'text', text: d.text });
      const rc = obj(d?.reasoningContent);
      if (rc !== undefined) this.reasoning(rc, num(payload.contentBlockIndex) ?? -1, out);
      const input = str(obj(d?.toolUse)?.input);
      const index = this.toolAt.get(num(payload.contentBlockIndex) ?? -1);
      if (input !== undefined && input.length > 0 && index !== undefined) out.push({ type: 'tool_args', index, delta: input });
    } else if (ev === 'messageStop') {
      const sr = str(payload.stopReason);
      this.stop = (sr !== undefined ? STOP[sr] : undefined) ?? 'stop';
      if (this.stop === 'stop' && this.tools > 0) this.stop = 'tool_calls';
    } else if (ev === 'metadata') {
      const usage = bedrockUsage(payload.usage);
      if (usage !== undefined) out.push({ type: 'usage', usage });
      if (this.stop !== undefined) out.push(...this.finish());
    }
    return out;
  }

  /** A reasoningContent delta: a block's text and signature (a new block index opens a thinking block), or redacted bytes whole. */
  private reasoning(rc: Obj, at: number, out: StreamEvent[]): void {
    const red = str(rc.redactedContent);
    if (red !== undefined) { this.thinkingAt = -1; out.push({ type: 'redacted_thinking', data: red }); return; }
    const text = str(rc.text);
    const sig = str(rc.signature);
    if (text === undefined && sig === undefined) return;
    if (this.thinkingAt !== at) { this.thinkingAt = at; out.push({ type: 'thinking_start' }); }
    if (text !== undefined && text.length > 0) out.push({ type: 'thinking', text });
    if (sig !== undefined) out.push({ type: 'thinking_signature', signature: sig });
  }

  private finish(): StreamEvent[] {
    if (this.done || this.stop === undefined) return [];
    this.done = true;
    return [{ type: 'finish', reason: this.stop }];
  }

  end(): StreamEvent[] {
    if (this.done) return [];
    if (this.stop !== undefined) return this.finish();
    return [{ type: 'error', message: 'upstream stream ended before the response was complete', errorType: 'upstream_incomplete' }];
  }
}

export function bedrockErrorMessage(status: number, body: unknown): ProviderError {
  const b = obj(body);
  let message = str(b?.message) ?? str(b?.Message) ?? (typeof body === 'string' && body.length > 0 ? body : `upstream returned HTTP ${status}`);
  // A signature or key problem is ours to fix, not the agent's: say where to look.
  if (status === 401 || status === 403) message += ' (check the AWS access key id and secret of the Provider\'s credential and its bedrock.region)';
  return { message, type: status === 403 ? 'authentication_error' : statusType(status) };
}

const modelPath = (model: string): string => `/model/${encodeURIComponent(model)}`;

export const bedrockAdapter: ProviderAdapter = {
  wire: 'bedrock',
  streamFraming: 'aws-eventstream',
  chatRequest: (req, target) => ({
    method: 'POST',
    path: modelPath(target.model) + (target.stream ? '/converse-stream' : '/converse'),
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(bedrockBody(req, target.model, target.options)),
  }),
  chatResponse: bedrockChatResponse,
  streamParser: () => new BedrockStreamParser(),
  errorMessage: bedrockErrorMessage,
};
