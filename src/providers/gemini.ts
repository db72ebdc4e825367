// Google Gemini generateContent wire, upstream side. Function calls arrive whole (not streamed
// in fragments), so each becomes tool_start + one tool_args; Gemini has no call ids, so ids
// are synthesized (call_<n>) and tool results are matched back by function name.
import type {
  ChatMessage, ChatRequest, ChatResult, ContentPart, EmbeddingsRequest, EmbeddingsResult, FinishReason,
  ProviderAdapter, ProviderError, StreamEvent, StreamParser, ThinkingBlock, ToolCall, Usage,
} from './types.ts';
import { UpstreamShapeError, arr, localId, num, nowSeconds, obj, statusType, usageOf } from './util.ts';
import type { Obj } from './util.ts';
import { StreamTemplate } from './chunk-template.ts';
import { isObj, parseJson, str } from '../lib/json.ts';

const FINISH: Readonly<Record<string, FinishReason>> = {
  STOP: 'stop', MAX_TOKENS: 'length', SAFETY: 'content_filter', RECITATION: 'content_filter',
  BLOCKLIST: 'content_filter', PROHIBITED_CONTENT: 'content_filter', SPII: 'content_filter', IMAGE_SAFETY: 'content_filter',
};

const DATA_URL = /^data:([^;,]+);base64,(.*)$/s;

const EXT = /\.([a-z0-9]+)(?:[?#]|$)/i;
const MIME_BY_EXT: Readonly<Record<string, string>> = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif', heic: 'image/heic', pdf: 'application/pdf',
  txt: 'text/plain', md: 'text/markdown', mp3: 'audio/mp3', wav: 'audio/wav',
};

/**
 * An OpenAI file part ({file: {file_data, filename, file_url}}) as a Gemini part: file_data inline
 * (its media type from the data: URL, else the filename), file_url by URI. Null when Gemini has no
 * form for it (an OpenAI file_id, a type unknown): params.ts refuses the request for this target then.
 */
export function geminiFile(p: ContentPart): Obj | null {
  const f = (p as { file?: unknown }).file;
  if (!isObj(f)) return null;
  if (typeof f.file_data === 'string') {
    const m = DATA_URL.exec(f.file_data);
    const mime = m !== null ? m[1] : typeof f.filename === 'string' ? MIME_BY_EXT[EXT.exec(f.filename)?.[1]?.toLowerCase() ?? ''] : undefined;
    return mime !== undefined ? { inlineData: { mimeType: mime, data: m !== null ? m[2] : f.file_data } } : null;
  }
  if (typeof f.file_url !== 'string') return null;
  const mime = MIME_BY_EXT[EXT.exec(f.file_url)?.[1]?.toLowerCase() ?? ''];
  return { fileData: mime !== undefined ? { mimeType: mime, fileUri: f.file_url } : { fileUri: f.file_url } };
}

/** An OpenAI input_audio part ({input_audio: {data, format}}) as inline Gemini audio; null without data and format. */
export function geminiAudio(p: ContentPart): Obj | null {
  const a = (p as { input_audio?: unknown }).input_audio;
  return isObj(a) && typeof a.data === 'string' && typeof a.format === 'string' ? { inlineData: { mimeType: `audio/${a.format}`, data: a.data } } : null;
}

// Gemini 3 rejects a replayed functionCall without its thoughtSignature. Canonical tool calls have
// no field for it, so it rides in the tool-call id (base64url, valid for Anthropic ids too).
const SIG_MARK = '__ts_';
/** Documented stand-in when the real signature is unknown (history from another model). */
export const GEMINI_DUMMY_SIGNATURE = 'skip_thought_signature_validator';

function toolId(base: string, sig: unknown): string {
  if (typeof sig !== 'string' || sig === '') return base;
  return base + SIG_MARK + sig.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function signatureOf(id: string): string | undefined {
  const at = id.indexOf(SIG_MARK);
  if (at === -1) return undefined;
  const b = id.slice(at + SIG_MARK.length).replace(/-/g, '+').replace(/_/g, '/');
  return b + '='.repeat((4 - (b.length % 4)) % 4);
}

function partsOf(content: string | ContentPart[] | null, out: Obj[]): void {
  if (content === null) return;
  if (typeof content === 'string') { if (content.length > 0) out.push({ text: content }); return; }
  for (const p of content) {
    if (p.type === 'text') out.push({ text: (p as { text: string }).text });
    else if (p.type === 'image_url') {
      const url = (p as { image_url: { url: string } }).image_url.url;
      const m = DATA_URL.exec(url);
      if (m !== null) out.push({ inlineData: { mimeType: m[1], data: m[2] } });
      else {
        const mime = MIME_BY_EXT[EXT.exec(url)?.[1]?.toLowerCase() ?? ''];
        out.push({ fileData: mime !== undefined ? { mimeType: mime, fileUri: url } : { fileUri: url } });
      }
    } else {
      // params.ts served this target only if every such part has a form here.
      const g = p.type === 'file' ? geminiFile(p) : p.type === 'input_audio' ? geminiAudio(p) : null;
      if (g !== null) out.push(g);
    }
  }
}

function textOf(content: string | ContentPart[] | null): string {
  if (typeof content === 'string') return content;
  let s = '';
  if (content !== null) for (const p of content) if (p.type === 'text') s += (p as { text: string }).text;
  return s;
}

/** functionResponse.response must be an object: JSON objects pass as-is, anything else is wrapped. */
function responseObject(content: string | ContentPart[] | null): Obj {
  const text = textOf(content);
  const v = parseJson(text);
  return isObj(v) ? v : { result: v !== undefined ? v : text };
}

export function geminiContents(messages: ChatMessage[]): { system: string | undefined; contents: Obj[] } {
  let system: string | undefined;
  const contents: Obj[] = [];
  const nameById = new Map<string, string>();
  let last: { role: string; parts: Obj[] } | undefined;
  for (const m of messages) {
    if (m.role === 'system' || m.role === 'developer') {
      const t = textOf(m.content);
      system = system === undefined ? t : `${system}\n\n${t}`;
      continue;
    }
    const role = m.role === 'assistant' ? 'model' : 'user';
    if (last === undefined || last.role !== role) {
      last = { role, parts: [] };
      contents.push(last);
    }
    if (m.role === 'tool') {
      const name = nameById.get(m.tool_call_id ?? '') ?? m.name ?? 'unknown';
      last.parts.push({ functionResponse: { name, response: responseObject(m.content) } });
      continue;
    }
    partsOf(m.content, last.parts);
    if (m.tool_calls !== undefined) {
      for (let i = 0; i < m.tool_calls.length; i++) {
        const tc = m.tool_calls[i];
        nameById.set(tc.id, tc.function.name);
        const args = parseJson(tc.function.arguments);
        const part: Obj = { functionCall: { name: tc.function.name, args: isObj(args) ? args : {} } };
        const sig = signatureOf(tc.id) ?? (i === 0 ? GEMINI_DUMMY_SIGNATURE : undefined);
        if (sig !== undefined) part.thoughtSignature = sig;
        last.parts.push(part);
      }
    }
  }
  return { system, contents };
}

export function geminiBody(req: ChatRequest): Obj {
  const { system, contents } = geminiContents(req.messages);
  const body: Obj = { contents };
  if (system !== undefined) body.systemInstruction = { parts: [{ text: system }] };
  if (req.tools !== undefined && req.tools.length > 0) {
    body.tools = [{
      functionDeclarations: req.tools.map((t) => {
        const d: Obj = { name: t.function.name };
        if (t.function.description !== undefined) d.description = t.function.description;
        if (t.function.parameters !== undefined) d.parametersJsonSchema = t.function.parameters;
        return d;
      }),
    }];
  }
  const tc = req.tool_choice;
  if (tc !== undefined) {
    const cfg: Obj = tc === 'required' ? { mode: 'ANY' } : tc === 'none' ? { mode: 'NONE' } : tc === 'auto' ? { mode: 'AUTO' }
      : { mode: 'ANY', allowedFunctionNames: [tc.function.name] };
    body.toolConfig = { functionCallingConfig: cfg };
  }
  const gen: Obj = {};
  if (req.temperature !== undefined) gen.temperature = req.temperature;
  if (req.top_p !== undefined) gen.topP = req.top_p;
  const max = req.max_completion_tokens ?? req.max_tokens;
  if (max !== undefined) gen.maxOutputTokens = max;
  if (req.stop !== undefined) gen.stopSequences = typeof req.stop === 'string' ? [req.stop] : req.stop;
  // OpenAI's sampling fields Gemini has too (params.ts lists them as carried here).
  const x = req.extra;
  if (typeof x?.seed === 'number') gen.seed = x.seed;
  if (typeof x?.presence_penalty === 'number') gen.presencePenalty = x.presence_penalty;
  if (typeof x?.frequency_penalty === 'number') gen.frequencyPenalty = x.frequency_penalty;
  const rf = req.response_format;
  if (rf !== undefined && (rf.type === 'json_object' || rf.type === 'json_schema')) {
    gen.responseMimeType = 'application/json';
    const schema = obj(rf.json_schema)?.schema;
    if (isObj(schema)) gen.responseJsonSchema = schema;
  }
  if (wantsThoughts(req)) gen.thinkingConfig = { includeThoughts: true };
  for (const _ in gen) { body.generationConfig = gen; break; }
  return body;
}

/**
 * Reasoning asked for: a Responses client's include of reasoning.encrypted_content, or an Anthropic
 * client's thinking. Gemini then answers its thought summaries (includeThoughts), which reach the
 * client as thinking blocks, scrubbed and guarded as any thinking text.
 */
function wantsThoughts(req: ChatRequest): boolean {
  if (req.reasoningItems === true) return true;
  const t = req.anthropicExtra?.thinking;
  return isObj(t) && t.type !== 'disabled';
}

/** A thought part's text (Gemini's thought summary: `thought: true`), or undefined for any other part. */
function thoughtText(p: Obj): string | undefined {
  return p.thought === true && typeof p.text === 'string' ? p.text : undefined;
}

export function geminiUsage(u: unknown): Usage | undefined {
  if (!isObj(u)) return undefined;
  const input = num(u.promptTokenCount) ?? 0;
  // Thinking tokens are billed as output.
  const output = (num(u.candidatesTokenCount) ?? 0) + (num(u.thoughtsTokenCount) ?? 0);
  return usageOf(input, output, num(u.cachedContentTokenCount));
}

function candidateOf(body: Obj): Obj | undefined {
  return obj(arr(body.candidates)?.[0]);
}

export function geminiChatResponse(body: unknown): ChatResult {
  if (!isObj(body)) throw new UpstreamShapeError('upstream returned a non-object generateContent response');
  const cand = candidateOf(body);
  if (cand === undefined) {
    const block = str(obj(body.promptFeedback)?.blockReason);
    if (block === undefined) throw new UpstreamShapeError('upstream generateContent response has no candidates');
  }
  let text: string | null = null;
  const toolCalls: ToolCall[] = [];
  let thinking: ThinkingBlock[] | undefined;
  let thought: { type: 'thinking'; thinking: string; signature: '' } | null = null; // the run of thought parts open
  for (const p of arr(obj(cand?.content)?.parts) ?? []) {
    if (!isObj(p)) continue;
    const tt = thoughtText(p);
    if (tt !== undefined) {
      // No signature, Gemini's thoughtSignature included: it is no signature Claude takes (a thought
      // sent back goes to no Gemini model; Claude leaves an unsigned block out: claudeSigned).
      if (thought === null) { thought = { type: 'thinking', thinking: '', signature: '' }; (thinking ??= []).push(thought); }
      thought.thinking += tt;
      continue;
    }
    thought = null;
    if (p.thought === true) continue;
    if (typeof p.text === 'string') text = (text ?? '') + p.text;
    const fc = obj(p.functionCall);
    if (fc !== undefined) {
      toolCalls.push({ id: toolId(str(fc.id) ?? `call_${toolCalls.length}`, p.thoughtSignature), type: 'function', function: { name: str(fc.name) ?? '', arguments: JSON.stringify(fc.args ?? {}) } });
    }
  }
  const fr = str(cand?.finishReason);
  let finishReason: FinishReason = cand === undefined ? 'content_filter' : (fr !== undefined ? FINISH[fr] : undefined) ?? 'stop';
  if (toolCalls.length > 0 && finishReason === 'stop') finishReason = 'tool_calls';
  const result: ChatResult = {
    id: str(body.responseId) ?? localId('gen-'),
    model: str(body.modelVersion) ?? '',
    created: nowSeconds(),
    text,
    toolCalls,
    finishReason,
  };
  const usage = geminiUsage(body.usageMetadata);
  if (usage !== undefined) result.usage = usage;
  if (thinking !== undefined) result.thinking = thinking;
  return result;
}

class GeminiStreamParser implements StreamParser {
  private started = false;
  private tools = 0;
  private finished = false;
  /** A run of thought parts is open (its thinking_start sent). */
  private thinking = false;
  private usage: Usage | undefined;
  /**
   * The frame of the last chunk parsed whole whose only effect was one text part (chunk-template.ts).
   * A chunk in that frame repeats its usage and has no finish reason, so only its text is new.
   */
  private tpl = new StreamTemplate('text');
  /** The usage the template's chunk carried: a chunk in its frame carries the same (a chunk parsed whole since may have changed this.usage). */
  private tplUsage: Usage | undefined;

  push(data: string, event?: string, parsed?: { value: unknown }): StreamEvent[] {
    if (parsed === undefined) {
      const text = this.tpl.match(data, event);
      if (text !== null) {
        this.thinking = false;
        if (this.tplUsage !== undefined) this.usage = this.tplUsage;
        return text.length > 0 ? [{ type: 'text', text }] : [];
      }
    }
    const chunk = parsed ? parsed.value : parseJson(data);
    if (!isObj(chunk)) return [{ type: 'error', message: 'upstream sent a stream chunk that is not JSON', errorType: 'upstream_invalid_response' }];
    if (isObj(chunk.error)) {
      const e = chunk.error;
      return [{ type: 'error', message: str(e.message) ?? 'upstream stream error', errorType: str(e.status) ?? 'api_error' }];
    }
    const out: StreamEvent[] = [];
    if (!this.started) {
      this.started = true;
      out.push({ type: 'start', id: str(chunk.responseId) ?? localId('gen-'), model: str(chunk.modelVersion) ?? '' });
    }
    const cand = candidateOf(chunk);
    const parts = arr(obj(cand?.content)?.parts);
    for (const p of parts ?? []) {
      if (!isObj(p)) continue;
      // Thought summaries (asked for with includeThoughts) are thinking: a run of them is one block.
      const tt = thoughtText(p);
      if (tt !== undefined) {
        if (!this.thinking) { this.thinking = true; out.push({ type: 'thinking_start' }); }
        if (tt.length > 0) out.push({ type: 'thinking', text: tt });
        continue;
      }
      if (p.thought === true) continue;
      this.thinking = false;
      if (typeof p.text === 'string' && p.text.length > 0) out.push({ type: 'text', text: p.text });
      const fc = obj(p.functionCall);
      if (fc !== undefined) {
        const index = this.tools++;
        out.push({ type: 'tool_start', index, id: toolId(str(fc.id) ?? `call_${index}`, p.thoughtSignature), name: str(fc.name) ?? '' });
        out.push({ type: 'tool_args', index, delta: JSON.stringify(fc.args ?? {}) });
      }
    }
    const u = geminiUsage(chunk.usageMetadata);
    if (u !== undefined) this.usage = u;
    const fr = str(cand?.finishReason);
    if (parsed === undefined && fr === undefined && this.tpl.open) this.learnFrom(data, event, parts, u);
    if (fr !== undefined && !this.finished) {
      this.finished = true;
      if (this.usage !== undefined) out.push({ type: 'usage', usage: this.usage });
      let reason = FINISH[fr] ?? 'stop';
      if (reason === 'stop' && this.tools > 0) reason = 'tool_calls';
      out.push({ type: 'finish', reason });
    }
    return out;
  }

  /** A chunk whose one part is plain text (no thought, no function call) teaches its frame. */
  private learnFrom(data: string, event: string | undefined, parts: unknown[] | undefined, usage: Usage | undefined): void {
    const p = parts?.length === 1 ? obj(parts[0]) : undefined;
    if (p === undefined || p.thought === true || p.functionCall !== undefined || typeof p.text !== 'string') return;
    if (this.tpl.learn(data, event, p.text)) this.tplUsage = usage;
  }

  end(): StreamEvent[] {
    return this.finished ? [] : [{ type: 'error', message: 'upstream stream ended before the response was complete', errorType: 'upstream_incomplete' }];
  }
}

export function embedTexts(input: EmbeddingsRequest['input']): string[] {
  if (typeof input === 'string') return [input];
  if (input.every((x): x is string => typeof x === 'string')) return input as string[];
  throw new UpstreamShapeError('Gemini embeddings take text input only; send strings, not token arrays');
}

export function geminiErrorMessage(status: number, body: unknown): ProviderError {
  const e = isObj(body) ? obj(body.error) : undefined;
  if (e !== undefined) return { message: str(e.message) ?? `upstream error ${status}`, type: str(e.status) ?? statusType(status) };
  if (typeof body === 'string' && body.length > 0) return { message: body, type: statusType(status) };
  return { message: `upstream returned HTTP ${status}`, type: statusType(status) };
}

export const modelPath = (model: string): string => `/models/${encodeURIComponent(model)}`;

export const geminiAdapter: ProviderAdapter = {
  wire: 'gemini',
  streamFraming: 'sse',
  chatRequest: (req, target) => ({
    method: 'POST',
    path: modelPath(target.model) + (target.stream ? ':streamGenerateContent?alt=sse' : ':generateContent'),
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(geminiBody(req)),
  }),
  chatResponse: geminiChatResponse,
  streamParser: () => new GeminiStreamParser(),
  embeddingsRequest: (req, target) => ({
    method: 'POST',
    path: `${modelPath(target.model)}:batchEmbedContents`,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      requests: embedTexts(req.input).map((text) => {
        const r: Obj = { model: `models/${target.model}`, content: { parts: [{ text }] } };
        if (req.dimensions !== undefined) r.outputDimensionality = req.dimensions;
        return r;
      }),
    }),
  }),
  embeddingsResponse: (body: unknown): EmbeddingsResult => {
    const list = isObj(body) ? arr(body.embeddings) : undefined;
    if (list === undefined) throw new UpstreamShapeError('upstream batchEmbedContents response has no embeddings array');
    return {
      model: '',
      data: list.map((e, index) => ({ index, embedding: (arr(obj(e)?.values) ?? []) as number[] })),
    };
  },
  errorMessage: geminiErrorMessage,
};
