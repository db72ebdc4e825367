// Canonical model shared by every provider translator.
//
// Requests are canonicalised to the OpenAI chat-completions shape (the lingua franca most SDKs
// speak); responses and streams go through a provider-neutral result / event model so any client
// format can be produced from any upstream. Tool calls are always tracked by index, because
// several can stream interleaved. Everything in src/providers is pure: no I/O, no policy.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/**
 * Anthropic's prompt-cache breakpoint ({type:"ephemeral", ttl?}), as a client wrote it. Carried on
 * parts, messages, tool calls and tool definitions; sent to Anthropic upstreams only (other wires
 * reject it), see ChatRequest.anthropicMarks.
 */
export type CacheControl = Readonly<Record<string, unknown>>;

export interface TextPart { type: 'text'; text: string; cache_control?: CacheControl }
export interface ImagePart { type: 'image_url'; image_url: { url: string; detail?: string }; cache_control?: CacheControl }
/** Other part types (input_audio, file, ...) are passed through untouched where the wire allows. */
export interface OtherPart { type: string; [k: string]: unknown }
export type ContentPart = TextPart | ImagePart | OtherPart;

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
  /** An Anthropic client's cache breakpoint on its tool_use block. */
  cache_control?: CacheControl;
}

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  /**
   * A cache breakpoint on the whole message (LiteLLM's form for OpenAI clients): Anthropic upstreams
   * get it on the message's last block; on a tool message, on its tool_result block.
   */
  cache_control?: CacheControl;
  /** A tool message's tool_result is_error (Anthropic wire). */
  is_error?: boolean;
  /**
   * An assistant turn's thinking / redacted_thinking blocks as the Anthropic client sent them back
   * (their signature is Anthropic's): written before the turn's text and tool_use, to Anthropic only.
   */
  thinking?: Array<Record<string, unknown>>;
  /**
   * Set only when the turn's thinking blocks were interleaved with its text and tool_use (Anthropic's
   * interleaved thinking): the blocks in the client's order, each entry taking the next thinking
   * block, text part (content is then parts) or tool call. Anthropic and Bedrock get them in it.
   */
  order?: BlockKind[];
  /**
   * An assistant turn's OpenAI Responses reasoning items (encrypted_content: OpenAI's, opaque), as
   * the client sent them back, before the turn's text and calls: to OpenAI's Responses API only.
   */
  reasoning?: Json[];
}

/** One content block of an assistant turn, by kind (see ChatMessage.order). */
export type BlockKind = 'thinking' | 'text' | 'tool';

export interface ToolDef {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
  /** A cache breakpoint on the tool definition (Anthropic's tools[].cache_control; LiteLLM puts it beside `function`). */
  cache_control?: CacheControl;
}

export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

/** Canonical chat request (OpenAI chat-completions shape). Unknown fields ride along in `extra`. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string | string[];
  tools?: ToolDef[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  user?: string;
  response_format?: Record<string, unknown>;
  /** Any other OpenAI fields (seed, logprobs, ...) forwarded verbatim to OpenAI-wire upstreams. */
  extra?: Record<string, unknown>;
  /** Anthropic-only fields from an Anthropic client (top_k, thinking, metadata...), forwarded verbatim to Anthropic upstreams only. */
  anthropicExtra?: Record<string, unknown>;
  /**
   * Set by the parsers when a message, part, tool call or tool carries a field only the Anthropic
   * wire has (cache_control, thinking, is_error): other wires leave those out (OpenAI answers 400
   * to an unknown cache_control). Unset, they send the messages as they are.
   */
  anthropicMarks?: true;
  /**
   * Set by the parsers when a message holds a content part other than text and image_url (file,
   * input_audio, an Anthropic client's document, ...): the gateway then serves the request only
   * from targets whose wire has a form for each such part (params.ts), none is dropped silently.
   */
  otherParts?: true;
  /** A Responses client's include of reasoning.encrypted_content: OpenAI's Responses API is asked for its reasoning items. */
  reasoningItems?: true;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  /** Prompt tokens served from the provider's prompt cache (subset of inputTokens). */
  cachedTokens?: number;
  /** Prompt tokens written to the provider's prompt cache (Anthropic's cache_creation_input_tokens; subset of inputTokens). */
  cacheWriteTokens?: number;
  /**
   * Of cacheWriteTokens, those written for one hour (priced higher); the rest were written for five
   * minutes. Set, 0 included, only when the upstream split its writes by lifetime (Anthropic's
   * usage.cache_creation, Bedrock's cacheDetails): Anthropic clients then get the split as well.
   */
  cacheWrite1hTokens?: number;
}

/**
 * An Anthropic extended-thinking block of an answer, as the upstream sent it: the client must send
 * it back, signature unchanged, before the turn's tool_use (Anthropic checks the signature).
 */
export type ThinkingBlock =
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'redacted_thinking'; data: string }
  | ReasoningBlock;

/**
 * An OpenAI Responses reasoning item of an answer (asked for with include reasoning.encrypted_content):
 * its summary texts, model output read like thinking text (credential scrubbing, output guardrails),
 * and the rest of the item as OpenAI sent it (`summary` empty; id and encrypted_content opaque, for
 * the client to send back). Only the Responses codec writes it.
 */
export interface ReasoningBlock {
  type: 'reasoning';
  summary: string[];
  /**
   * Its raw reasoning text (`content`'s reasoning_text parts: gpt-oss and other open-weight models
   * answer their chain of thought so), read like the summary; the item then has `content: []`.
   */
  content?: string[];
  item: Json;
}

/** Provider-neutral, non-streamed chat result. */
export interface ChatResult {
  id: string;
  model: string;
  created: number;
  text: string | null;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  usage?: Usage;
  /** The answer's thinking blocks (OpenAI's reasoning items too), in order (they come before its text and tool calls). */
  thinking?: ThinkingBlock[];
  /**
   * Set only when thinking blocks came interleaved with text / tool_use (Anthropic's interleaved
   * thinking): the upstream's blocks in order, 'thinking' and 'tool' taking the next of `thinking`
   * and `toolCalls`, a number a text block of that many characters of `text`. Without it the
   * order is thinking, text, tool calls. resultBlocks (util.ts) walks it.
   */
  order?: ResultBlock[];
  /**
   * The answer's token log probabilities, when the request asked for them (logprobs): OpenAI chat's
   * choices[0].logprobs.content, whose entries a Responses output_text's logprobs share. Kept in
   * the cache with the answer, so a hit replays them.
   */
  logprobs?: Json[];
}

/** An OpenAI reasoning item's id (what its summary parts' thinking_start name), if it has one. */
export function reasoningItemId(item: Json): string | undefined {
  const id = (item as { id?: unknown } | null)?.id;
  return typeof id === 'string' ? id : undefined;
}

/** An answer's block in upstream order (see ChatResult.order): a text block is its length. */
export type ResultBlock = 'thinking' | 'tool' | number;

/** Provider-neutral stream events. Tool calls are keyed by `index` (0-based, per response). */
export type StreamEvent =
  /**
   * `usage`: what the upstream counted when the stream opened (Anthropic's message_start: the prompt
   * side, cache writes split by lifetime), written in an Anthropic client's message_start (the SDKs
   * take cache_creation from there only). The closing `usage` event still comes and is the one counted.
   */
  | { type: 'start'; id: string; model: string; usage?: Usage }
  /** `logprobs`: this text's tokens (OpenAI chat's logprobs.content entries), when the request asked and the upstream sent them. */
  | { type: 'text'; text: string; logprobs?: Json[] }
  | { type: 'tool_start'; index: number; id: string; name: string }
  | { type: 'tool_args'; index: number; delta: string }
  /**
   * Anthropic extended thinking: a thinking block opens, its text arrives in `thinking` deltas, its
   * signature last; a redacted block comes whole. An OpenAI Responses reasoning item the same way:
   * each summary part opens with a `thinking_start` naming the item (`id`), its text in `thinking`
   * deltas (scrubbed and guarded as any thinking text), and `reasoning_item` ends the item; a
   * reasoning_text part of its `content` the same way, its thinking_start marked `content`.
   */
  | { type: 'thinking_start'; id?: string; content?: true }
  | { type: 'thinking'; text: string }
  | { type: 'thinking_signature'; signature: string }
  | { type: 'redacted_thinking'; data: string }
  /** The end of an OpenAI reasoning item: the rest of it as OpenAI finished it (ReasoningBlock.item: summary empty, encrypted_content opaque). */
  | { type: 'reasoning_item'; item: Json }
  | { type: 'finish'; reason: FinishReason }
  | { type: 'usage'; usage: Usage }
  /** Error reported inside an already-open upstream stream. */
  | { type: 'error'; message: string; errorType: string };

/**
 * Events that carry content: the commit point for fallback is the first one sent to a client.
 * Thinking counts: it reaches an Anthropic client as it comes (extended thinking can run minutes).
 */
export function isContentEvent(ev: StreamEvent): boolean {
  switch (ev.type) {
    case 'text': return ev.text.length > 0;
    case 'tool_start': case 'tool_args': case 'thinking_start': case 'thinking': case 'redacted_thinking': case 'reasoning_item': return true;
    default: return false;
  }
}

export interface EmbeddingsRequest {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
  user?: string;
}

export interface EmbeddingsResult {
  model: string;
  data: Array<{ index: number; embedding: number[] | string }>;
  usage?: Usage;
}

/** What a translator produces for the transport to send. Auth headers are added by credentials. */
export interface UpstreamRequest {
  method: 'POST' | 'GET';
  /** Path relative to the provider baseUrl, e.g. "/chat/completions". May include a query. */
  path: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * rawChatRequest's answer: the upstream request but its body, and either `add`, the top-level fields
 * to put into the client's bytes (null: none), when those may go; or `body`, the adapter's own body,
 * built once to compare, when they may not: the upstream body is then JSON.stringify(body), what
 * chatRequest would send, without building it again.
 */
export type RawChatHead =
  | { readonly head: Omit<UpstreamRequest, 'body'>; readonly add: Readonly<Record<string, unknown>> | null; readonly body?: undefined }
  | { readonly head: Omit<UpstreamRequest, 'body'>; readonly body: Record<string, unknown>; readonly add?: undefined };

/** Where and how to call: resolved from a Model route target + Provider at config load. */
export interface TargetInfo {
  /** Upstream model name (e.g. "gpt-4o"). */
  model: string;
  stream: boolean;
  /** Provider-specific options (azure apiVersion/deployment, etc). */
  options: Record<string, string>;
}

export interface ProviderError { message: string; type: string }

/**
 * A stateful parser for one upstream stream: feed it each SSE event (or JSON line), get events.
 * Order contract (every adapter): start, content events..., usage (if known), finish. `end()`
 * returns an `error` event (errorType 'upstream_incomplete') when the stream ended before finish.
 */
export interface StreamParser {
  /**
   * `event` is the SSE `event:` field if any, `data` the joined data lines; `parsed`, when given,
   * is `data` already parsed (a long event is parsed across loop turns), value undefined if not JSON.
   */
  push(data: string, event?: string, parsed?: { value: unknown }): StreamEvent[];
  /** Called at upstream end of stream; returns trailing events (e.g. a final finish). */
  end(): StreamEvent[];
}

/** Pure translator for one upstream wire format. */
export interface ProviderAdapter {
  /** Wire family: requests from a client of the same family may use the raw pass-through path. */
  wire: 'openai' | 'anthropic' | 'gemini' | 'bedrock' | 'openai-responses';
  chatRequest(req: ChatRequest, target: TargetInfo): UpstreamRequest;
  /**
   * chatRequest's method, path and headers, with `add` when its body would say exactly what
   * `client` (the client's own body of this wire, parsed) says, "model" aside, or that plus
   * top-level fields it adds (a stream's usage option): the client's bytes may then be sent instead,
   * with the target's model in place and those fields put in (gateway/raw-body.ts). With `body`
   * (the body chatRequest would serialise) when anything else differs.
   * Decided by rawChatHead (util.ts), the one rule every adapter applies with its own comparison.
   */
  rawChatRequest?(client: Readonly<Record<string, unknown>>, req: ChatRequest, target: TargetInfo): RawChatHead;
  chatResponse(body: unknown): ChatResult;
  streamParser(): StreamParser;
  /** How the upstream frames streams: SSE (most) or AWS event-stream binary frames (Bedrock). */
  streamFraming: 'sse' | 'aws-eventstream';
  embeddingsRequest?(req: EmbeddingsRequest, target: TargetInfo): UpstreamRequest;
  embeddingsResponse?(body: unknown): EmbeddingsResult;
  /** Extract a human message from an upstream error body (already parsed JSON or raw text). */
  errorMessage(status: number, body: unknown): ProviderError;
}

/** A client-facing wire format (what the agent speaks): OpenAI chat, Anthropic or OpenAI Responses. */
export interface ClientCodec {
  wire: 'openai' | 'anthropic' | 'responses';
  /** Encode a non-streamed result as the client's JSON body; `model` is the name its `model` field carries. */
  encodeResult(result: ChatResult, model: string): unknown;
  /** The same body as JSON text, when the codec writes it itself (no object to serialize again). */
  encodeResultText?(result: ChatResult, model: string): string;
  /**
   * Called once a stream's upstream request is under way (before its answer is awaited), with the
   * model name the stream will likely carry: what needs no answer (a Responses stream's opening events)
   * is built while the upstream works (built again if the stream names another). Optional; otherwise built when first needed.
   */
  prepareStream?(model: string): void;
  /**
   * Make a stateful stream encoder; returns SSE text for each event ('' when nothing to send). The
   * stream carries the `start` event's model when it names one, else `model`.
   */
  streamEncoder(opts: { includeUsage: boolean; model: string }): (ev: StreamEvent) => string;
  /** Text of the stream terminator (e.g. "data: [DONE]\n\n"), if any. */
  streamDone: string;
  /** SSE error event to end a stream that failed after commit; `code` (default: the type) is aam's error code, e.g. store_unavailable. */
  streamError(message: string, type: string, code?: string): string;
  /** The client went away mid-stream (nothing more is written): what the stream made so far is handed on (a Responses codec stores it, incomplete). */
  streamAborted?(): void;
  /**
   * The upstream translator to use instead of the provider's own for a provider type, when this
   * client wire has a native API there (Responses clients -> OpenAI's Responses API).
   */
  native?(providerType: string): ProviderAdapter | undefined;
  /**
   * Resolves once what this answer handed on (a stored Response) is durable: the answer is
   * acknowledged after it. undefined when nothing was handed on (no promise, no loop turn to wait).
   */
  settle?(): Promise<void> | undefined;
}

/** One block of an answer, in the order resultBlocks gives. */
export type AnswerBlock =
  | { kind: 'thinking'; block: ThinkingBlock }
  | { kind: 'text'; text: string }
  | { kind: 'tool'; call: ToolCall; index: number };

/**
 * `seq` (an answer's or a turn's blocks as they came) when a thinking block follows text or a tool
 * call (interleaved thinking), else undefined: the canonical order (thinking first) says it already.
 */
export function interleavedOrder<T extends ResultBlock | BlockKind>(seq: T[]): T[] | undefined {
  let other = false;
  for (const k of seq) {
    if (k !== 'thinking') other = true;
    else if (other) return seq;
  }
  return undefined;
}

/** An answer's text blocks by its order's lengths; undefined unless there are several and they add up to the text. */
export function textBlocks(order: readonly ResultBlock[], text: string): string[] | undefined {
  const out: string[] = [];
  let at = 0;
  for (const k of order) if (typeof k === 'number') { out.push(text.slice(at, at + k)); at += k; }
  return out.length > 1 && at === text.length ? out : undefined;
}

/**
 * `r` with its text blocks (textBlocks of its order) replaced by `texts`, one each, in order: every
 * block keeps its place, the order's lengths become the new texts'.
 */
export function withTextBlocks(r: ChatResult, texts: readonly string[]): ChatResult {
  let i = 0;
  const order = r.order?.map((k) => (typeof k === 'number' ? texts[i++].length : k));
  return { ...r, text: texts.join(''), order };
}

/** What a thinking block shows the client: its text, a reasoning item's summary texts then its reasoning texts, nothing of a redacted block. */
export function thinkingText(b: ThinkingBlock): string | string[] {
  if (b.type !== 'reasoning') return b.type === 'thinking' ? b.thinking : '';
  return b.content === undefined ? b.summary : [...b.summary, ...b.content];
}

/** A thinking block with what the guardrails (or the scrub) left of thinkingText(b) (the same block when unchanged). */
export function withThinkingText(b: ThinkingBlock, t: string | string[] | undefined): ThinkingBlock {
  if (b.type === 'thinking' && typeof t === 'string' && t !== b.thinking) return { ...b, thinking: t };
  if (b.type !== 'reasoning' || !Array.isArray(t) || t === b.summary) return b;
  if (b.content === undefined) return { ...b, summary: t };
  const n = b.summary.length;
  return { ...b, summary: t.slice(0, n), content: t.slice(n) };
}

/** An answer's thinking texts as a reader joins them: each block's text, each summary then reasoning part (scrubbed as one across their boundaries). */
export function thinkingTexts(th: readonly ThinkingBlock[]): string[] {
  const texts: string[] = [];
  for (const b of th) { const t = thinkingText(b); if (typeof t === 'string') texts.push(t); else texts.push(...t); }
  return texts;
}

/** `th` with thinkingTexts(th) replaced by `texts`, one each, in order (blocks whose texts are unchanged stay the same objects). */
export function withThinkingTexts(th: readonly ThinkingBlock[], texts: readonly string[]): ThinkingBlock[] {
  let k = 0;
  return th.map((b) => { const t = thinkingText(b); return withThinkingText(b, typeof t === 'string' ? texts[k++] : t.map(() => texts[k++])); });
}

/**
 * An answer's blocks in the upstream's order: its `order` when set, else thinking, text, tool calls.
 * Text blocks whose lengths no longer add up to `text` (rewritten by something that saw the text
 * whole, not block by block) become one, where the first was; blocks the order does not name come last.
 */
export function resultBlocks(r: ChatResult): AnswerBlock[] {
  const out: AnswerBlock[] = [];
  const text = r.text ?? '';
  const th = r.thinking ?? [];
  let t = 0, c = 0, at = 0;
  if (r.order !== undefined) {
    let sum = 0;
    for (const k of r.order) if (typeof k === 'number') sum += k;
    const whole = sum !== text.length;
    for (const k of r.order) {
      if (k === 'thinking') { if (t < th.length) out.push({ kind: 'thinking', block: th[t++] }); }
      else if (k === 'tool') { if (c < r.toolCalls.length) { out.push({ kind: 'tool', call: r.toolCalls[c], index: c }); c++; } }
      else if (whole) { if (at === 0 && text.length > 0) out.push({ kind: 'text', text }); at = text.length; }
      else { if (k > 0) out.push({ kind: 'text', text: text.slice(at, at + k) }); at += k; }
    }
  }
  while (t < th.length) out.push({ kind: 'thinking', block: th[t++] });
  if (at < text.length) out.push({ kind: 'text', text: text.slice(at) });
  for (; c < r.toolCalls.length; c++) out.push({ kind: 'tool', call: r.toolCalls[c], index: c });
  return out;
}
