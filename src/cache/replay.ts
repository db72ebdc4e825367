// Cached answers are stored as one ChatResult and replayed in whichever form the client asks for:
// a streaming client gets canonical events (start, text chunks, per-tool start/args, usage,
// finish: the order every adapter and encoder uses), which its own codec then encodes. A streamed
// answer is stored only when it completed: a finish event and no error.
import type { ChatResult, FinishReason, Json, ReasoningBlock, ResultBlock, StreamEvent, ThinkingBlock, ToolCall, Usage } from '../providers/types.ts';
import { interleavedOrder, reasoningItemId, resultBlocks } from '../providers/types.ts';

/** Size of replayed text and tool-argument chunks (characters). */
const CHUNK = 256;

export function resultToEvents(result: ChatResult, chunkChars = CHUNK): StreamEvent[] {
  // The usage opens the stream too (an Anthropic client's message_start; its SDK takes the cache
  // writes' split from there only), as it did when the answer was relayed from Anthropic.
  const events: StreamEvent[] = [result.usage ? { type: 'start', id: result.id, model: result.model, usage: result.usage } : { type: 'start', id: result.id, model: result.model }];
  if (result.order !== undefined) { // interleaved thinking: the upstream's block order
    for (const b of resultBlocks(result)) {
      if (b.kind === 'thinking') thinkingEvents(b.block, events, chunkChars);
      else if (b.kind === 'text') for (const text of chunks(b.text, chunkChars)) events.push({ type: 'text', text });
      else toolEvents(b.call, b.index, events, chunkChars);
    }
    if (result.usage) events.push({ type: 'usage', usage: result.usage });
    events.push({ type: 'finish', reason: result.finishReason });
    return events;
  }
  if (result.thinking) {
    for (const b of result.thinking) thinkingEvents(b, events, chunkChars);
  }
  // Text with its tokens' logprobs is one event: the tokens are not split with it.
  if (result.text && result.logprobs !== undefined) events.push({ type: 'text', text: result.text, logprobs: result.logprobs });
  else if (result.text) for (const text of chunks(result.text, chunkChars)) events.push({ type: 'text', text });
  result.toolCalls.forEach((tc, index) => toolEvents(tc, index, events, chunkChars));
  if (result.usage) events.push({ type: 'usage', usage: result.usage });
  events.push({ type: 'finish', reason: result.finishReason });
  return events;
}

function thinkingEvents(b: ThinkingBlock, events: StreamEvent[], chunkChars: number): void {
  if (b.type === 'redacted_thinking') { events.push({ type: 'redacted_thinking', data: b.data }); return; }
  if (b.type === 'reasoning') { // each summary part opens under the item's id; the item ends it
    const id = reasoningItemId(b.item);
    for (const part of b.summary) {
      events.push(id === undefined ? { type: 'thinking_start' } : { type: 'thinking_start', id });
      for (const text of chunks(part, chunkChars)) events.push({ type: 'thinking', text });
    }
    for (const part of b.content ?? []) { // its reasoning_text parts the same way
      events.push(id === undefined ? { type: 'thinking_start', content: true } : { type: 'thinking_start', id, content: true });
      for (const text of chunks(part, chunkChars)) events.push({ type: 'thinking', text });
    }
    events.push({ type: 'reasoning_item', item: b.item });
    return;
  }
  events.push({ type: 'thinking_start' });
  for (const text of chunks(b.thinking, chunkChars)) events.push({ type: 'thinking', text });
  events.push({ type: 'thinking_signature', signature: b.signature });
}

function toolEvents(tc: ToolCall, index: number, events: StreamEvent[], chunkChars: number): void {
  events.push({ type: 'tool_start', index, id: tc.id, name: tc.function.name });
  for (const delta of chunks(tc.function.arguments, chunkChars)) events.push({ type: 'tool_args', index, delta });
}

/** Split at whitespace near the size limit when possible; never inside a surrogate pair. */
function chunks(s: string, size: number): string[] {
  if (s.length <= size) return s ? [s] : [];
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    let end = Math.min(s.length, i + size);
    if (end < s.length) {
      const ws = s.lastIndexOf(' ', end);
      if (ws > i + size / 2) end = ws + 1;
      else if (isHighSurrogate(s.charCodeAt(end - 1))) end = end - 1 > i ? end - 1 : end + 1;
    }
    out.push(s.slice(i, end));
    i = end;
  }
  return out;
}

function isHighSurrogate(c: number): boolean { return c >= 0xd800 && c <= 0xdbff; }

/**
 * Collects a stream as it is relayed and yields the complete ChatResult at the end, or null when
 * the stream must not be cached (no finish, an error event, or larger than maxChars). Push every
 * event you send to the client; call result() after the upstream stream ended cleanly.
 */
export class StreamRecorder {
  private id = '';
  private model = '';
  private text = '';
  private hasText = false;
  private readonly tools: ToolCall[] = [];
  private thinking: ThinkingBlock[] | undefined;
  private seq: ResultBlock[] | undefined;
  private reason: FinishReason | null = null;
  private usage: Usage | undefined;
  private logprobs: Json[] | undefined;
  /** The OpenAI reasoning item whose summary parts are coming (its id), until reasoning_item ends it. */
  private reasoningOpen: string | null = null;
  /** Its part open is a reasoning_text part (else a summary part). */
  private inContent = false;
  private failed = false;
  private size = 0;
  private readonly maxChars: number;
  private readonly created: number;

  constructor(maxChars = 1024 * 1024, now = Date.now()) {
    this.maxChars = maxChars;
    this.created = Math.floor(now / 1000);
  }

  push(ev: StreamEvent): void {
    if (this.failed) return;
    switch (ev.type) {
      case 'start': this.id = ev.id; this.model = ev.model; break;
      case 'text':
        this.text += ev.text; this.hasText ||= ev.text.length > 0; this.grow(ev.text.length);
        if (ev.logprobs !== undefined) (this.logprobs ??= []).push(...ev.logprobs);
        if (this.seq !== undefined && ev.text.length > 0) {
          const n = this.seq.length;
          if (n > 0 && typeof this.seq[n - 1] === 'number') this.seq[n - 1] = (this.seq[n - 1] as number) + ev.text.length;
          else this.seq.push(ev.text.length);
        }
        break;
      case 'tool_start':
        this.tools[ev.index] = { id: ev.id, type: 'function', function: { name: ev.name, arguments: '' } };
        this.seq?.push('tool');
        break;
      case 'tool_args': {
        const tc = this.tools[ev.index];
        if (!tc) { this.failed = true; break; } // args for a tool that never started: not a faithful record
        tc.function.arguments += ev.delta;
        this.grow(ev.delta.length);
        break;
      }
      case 'thinking_start':
        if (ev.id === undefined) { this.reasoningOpen = null; (this.thinking ??= []).push({ type: 'thinking', thinking: '', signature: '' }); this.block('thinking'); break; }
        // An OpenAI reasoning item's summary (or reasoning_text) part: the item's next part, or a new item.
        if (this.reasoningOpen !== ev.id) { this.reasoningOpen = ev.id; (this.thinking ??= []).push({ type: 'reasoning', summary: [], item: null }); this.block('thinking'); }
        {
          const rb = this.thinking![this.thinking!.length - 1] as ReasoningBlock;
          if (ev.content) (rb.content ??= []).push(''); else rb.summary.push('');
          this.inContent = ev.content === true;
        }
        break;
      case 'thinking': case 'thinking_signature': {
        const b = this.thinking?.[this.thinking.length - 1];
        if (b?.type === 'reasoning' && ev.type === 'thinking' && this.reasoningOpen !== null) {
          const parts = this.inContent ? b.content! : b.summary;
          parts[parts.length - 1] += ev.text;
          this.grow(ev.text.length);
          break;
        }
        if (b?.type !== 'thinking') { this.failed = true; break; } // outside a thinking block: not a faithful record
        if (ev.type === 'thinking') { b.thinking += ev.text; this.grow(ev.text.length); } else b.signature += ev.signature;
        break;
      }
      case 'redacted_thinking': this.reasoningOpen = null; (this.thinking ??= []).push({ type: 'redacted_thinking', data: ev.data }); this.grow(ev.data.length); this.block('thinking'); break;
      case 'reasoning_item': {
        // Ends the item whose summary came (the same id), else an item without a summary.
        const b = this.thinking?.[this.thinking.length - 1];
        if (b?.type === 'reasoning' && this.reasoningOpen !== null && this.reasoningOpen === reasoningItemId(ev.item)) b.item = ev.item;
        else { (this.thinking ??= []).push({ type: 'reasoning', summary: [], item: ev.item }); this.block('thinking'); }
        this.reasoningOpen = null;
        break;
      }
      case 'usage': this.usage = ev.usage; break;
      case 'finish': this.reason = ev.reason; break;
      case 'error': this.failed = true; break;
    }
  }

  /** The complete answer, or null if it must not be stored. */
  result(): ChatResult | null {
    if (this.failed || this.reason === null) return null;
    for (let i = 0; i < this.tools.length; i++) if (!this.tools[i]) return null; // a gap in tool indexes
    const out: ChatResult = {
      id: this.id, model: this.model, created: this.created, text: this.hasText ? this.text : null,
      toolCalls: this.tools, finishReason: this.reason,
    };
    if (this.usage) out.usage = this.usage;
    if (this.logprobs) out.logprobs = this.logprobs;
    if (this.thinking) {
      out.thinking = this.thinking;
      const order = this.seq !== undefined ? interleavedOrder(this.seq) : undefined;
      if (order !== undefined) out.order = order;
    }
    return out;
  }

  /**
   * The blocks' order, kept from the first thinking block on (before it: text, then tool calls, as
   * usual; a stream without thinking keeps none).
   */
  private block(k: ResultBlock): void {
    if (this.seq === undefined) {
      this.seq = [];
      if (this.text.length > 0) this.seq.push(this.text.length);
      for (let i = 0; i < this.tools.length; i++) this.seq.push('tool');
    }
    this.seq.push(k);
  }

  private grow(n: number): void {
    this.size += n;
    if (this.size > this.maxChars) this.failed = true;
  }
}

/** A completed stream as a ChatResult; null when it did not finish or reported an error. */
export function eventsToResult(events: readonly StreamEvent[], now = Date.now()): ChatResult | null {
  const rec = new StreamRecorder(Infinity, now);
  for (const ev of events) rec.push(ev);
  return rec.result();
}
