// Client side of the Anthropic wire: canonical result / events -> Message JSON and Messages SSE.
// Anthropic content blocks cannot interleave, so a tool call that starts while another is still
// open is buffered and written, complete, when the open one ends (at finish). Thinking blocks
// (extended thinking) are written as the API writes them: a thinking block opened empty, its
// thinking_delta and signature_delta, then stop; a redacted_thinking block whole.
import type { ChatResult, ClientCodec, FinishReason, StreamEvent, ToolCall, Usage } from './types.ts';
import { resultBlocks } from './types.ts';
import { argsObject, localId } from './util.ts';

const STOP_REASON: Readonly<Record<FinishReason, string>> = {
  stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', content_filter: 'refusal',
};

export function anthropicErrorBody(type: string, message: string): { type: 'error'; error: { type: string; message: string } } {
  return { type: 'error', error: { type, message } };
}

/**
 * Canonical usage as Anthropic counts it: input_tokens without the cache reads and writes, which have
 * fields of their own; the writes split by lifetime too (cache_creation) when the upstream split them.
 */
export function anthropicUsageJson(u: Usage): Record<string, number | Record<string, number>> {
  const cached = u.cachedTokens ?? 0;
  const written = u.cacheWriteTokens ?? 0;
  const out: Record<string, number | Record<string, number>> = { input_tokens: u.inputTokens - cached - written, output_tokens: u.outputTokens };
  if (u.cacheWriteTokens !== undefined) out.cache_creation_input_tokens = written;
  if (u.cachedTokens !== undefined) out.cache_read_input_tokens = cached;
  if (u.cacheWrite1hTokens !== undefined && u.cacheWriteTokens !== undefined) {
    out.cache_creation = { ephemeral_5m_input_tokens: written - u.cacheWrite1hTokens, ephemeral_1h_input_tokens: u.cacheWrite1hTokens };
  }
  return out;
}

function toolUse(tc: ToolCall): unknown {
  return { type: 'tool_use', id: tc.id, name: tc.function.name, input: argsObject(tc.function.arguments) };
}

function encodeResult(r: ChatResult, model: string): unknown {
  const content: unknown[] = [];
  if (r.order !== undefined) { // interleaved thinking: the upstream's order, as Anthropic signed it
    for (const b of resultBlocks(r)) if (b.kind !== 'thinking' || b.block.type !== 'reasoning') content.push(b.kind === 'thinking' ? b.block : b.kind === 'text' ? { type: 'text', text: b.text } : toolUse(b.call));
  } else {
    // OpenAI's reasoning items have no Anthropic form (only a Responses client asks for them).
    if (r.thinking !== undefined) for (const b of r.thinking) if (b.type !== 'reasoning') content.push(b);
    if (r.text !== null && r.text.length > 0) content.push({ type: 'text', text: r.text });
    for (const tc of r.toolCalls) content.push(toolUse(tc));
  }
  return {
    id: r.id,
    type: 'message',
    role: 'assistant',
    model,
    content,
    stop_reason: STOP_REASON[r.finishReason],
    stop_sequence: null,
    usage: anthropicUsageJson(r.usage ?? { inputTokens: 0, outputTokens: 0 }),
  };
}

function frame(event: string, json: string): string {
  return `event: ${event}\ndata: ${json}\n\n`;
}

interface Pending { tool: boolean; index: number; id: string; name: string; buf: string }

function streamEncoder(opts: { includeUsage: boolean; model: string }): (ev: StreamEvent) => string {
  let model = JSON.stringify(opts.model);
  let started = false;
  let done = false;
  let block = -1; // Anthropic index of the open block, -1 when none
  let openTool = -1; // canonical tool index of the open block, -1 for text
  let thinking = false; // the open block is a thinking block
  let openai = false; // an OpenAI reasoning item's summary is coming (no Anthropic form: left out)
  let nextBlock = 0;
  let usage: Usage | undefined;
  const queue: Pending[] = [];
  const queuedTool = new Map<number, Pending>();

  const startMsg = (id: string, u?: Usage): string => {
    started = true;
    const usage = u === undefined ? '{"input_tokens":0,"output_tokens":0}' : JSON.stringify(anthropicUsageJson(u));
    return frame('message_start', `{"type":"message_start","message":{"id":${JSON.stringify(id)},"type":"message","role":"assistant","model":${model},"content":[],"stop_reason":null,"stop_sequence":null,"usage":${usage}}}`);
  };
  const stopBlock = (): string => {
    if (block < 0) return '';
    const s = frame('content_block_stop', `{"type":"content_block_stop","index":${block}}`);
    block = -1;
    openTool = -1;
    thinking = false;
    return s;
  };
  const openText = (): string => {
    block = nextBlock++;
    openTool = -1;
    return frame('content_block_start', `{"type":"content_block_start","index":${block},"content_block":{"type":"text","text":""}}`);
  };
  const openToolBlock = (index: number, id: string, name: string): string => {
    block = nextBlock++;
    openTool = index;
    return frame('content_block_start', `{"type":"content_block_start","index":${block},"content_block":{"type":"tool_use","id":${JSON.stringify(id)},"name":${JSON.stringify(name)},"input":{}}}`);
  };
  const openThinking = (): string => {
    block = nextBlock++;
    openTool = -1;
    thinking = true;
    return frame('content_block_start', `{"type":"content_block_start","index":${block},"content_block":{"type":"thinking","thinking":"","signature":""}}`);
  };
  /** A thinking block after whatever is open or waiting (blocks cannot interleave). */
  const nextThinking = (): string => stopBlock() + flushQueue() + openThinking();
  const redacted = (data: string): string => {
    const at = nextBlock++;
    return frame('content_block_start', `{"type":"content_block_start","index":${at},"content_block":{"type":"redacted_thinking","data":${JSON.stringify(data)}}}`)
      + frame('content_block_stop', `{"type":"content_block_stop","index":${at}}`);
  };
  const thinkingDelta = (t: string): string => frame('content_block_delta', `{"type":"content_block_delta","index":${block},"delta":{"type":"thinking_delta","thinking":${JSON.stringify(t)}}}`);
  const signatureDelta = (sig: string): string => frame('content_block_delta', `{"type":"content_block_delta","index":${block},"delta":{"type":"signature_delta","signature":${JSON.stringify(sig)}}}`);
  const textDelta = (t: string): string => frame('content_block_delta', `{"type":"content_block_delta","index":${block},"delta":{"type":"text_delta","text":${JSON.stringify(t)}}}`);
  const argsDelta = (a: string): string => frame('content_block_delta', `{"type":"content_block_delta","index":${block},"delta":{"type":"input_json_delta","partial_json":${JSON.stringify(a)}}}`);
  const flushQueue = (): string => {
    let s = '';
    for (const p of queue) {
      s += p.tool ? openToolBlock(p.index, p.id, p.name) : openText();
      if (p.buf.length > 0) s += p.tool ? argsDelta(p.buf) : textDelta(p.buf);
      s += stopBlock();
    }
    queue.length = 0;
    queuedTool.clear();
    return s;
  };

  return (ev: StreamEvent): string => {
    if (done) return '';
    if (ev.type === 'error') { done = true; return streamError(ev.message, ev.errorType); }
    if (ev.type === 'start') {
      if (started) return '';
      if (ev.model) model = JSON.stringify(ev.model);
      return startMsg(ev.id, ev.usage);
    }
    let s = started ? '' : startMsg(localId('msg_'));
    switch (ev.type) {
      case 'text':
        if (ev.text.length === 0) return s;
        if (block >= 0 && openTool < 0 && !thinking) return s + textDelta(ev.text);
        if (block < 0 || thinking) return s + stopBlock() + openText() + textDelta(ev.text);
        {
          const last = queue[queue.length - 1];
          if (last !== undefined && !last.tool) last.buf += ev.text;
          else queue.push({ tool: false, index: -1, id: '', name: '', buf: ev.text });
        }
        return s;
      case 'tool_start':
        if (block >= 0 && openTool >= 0) {
          const p: Pending = { tool: true, index: ev.index, id: ev.id, name: ev.name, buf: '' };
          queue.push(p);
          queuedTool.set(ev.index, p);
          return s;
        }
        return s + stopBlock() + openToolBlock(ev.index, ev.id, ev.name);
      case 'tool_args': {
        if (ev.delta.length === 0) return s;
        if (openTool === ev.index) return s + argsDelta(ev.delta);
        const p = queuedTool.get(ev.index);
        if (p !== undefined) p.buf += ev.delta;
        return s;
      }
      case 'thinking_start':
        openai = ev.id !== undefined;
        return openai ? s : s + nextThinking();
      case 'thinking':
        if (ev.text.length === 0 || openai) return s;
        if (!thinking) s += nextThinking();
        return s + thinkingDelta(ev.text);
      case 'thinking_signature':
        if (!thinking) s += nextThinking();
        return s + signatureDelta(ev.signature);
      case 'redacted_thinking':
        return s + stopBlock() + flushQueue() + redacted(ev.data);
      case 'reasoning_item':
        openai = false;
        return s; // OpenAI's encrypted reasoning: no Anthropic form (only a Responses client asks for it)
      case 'usage':
        usage = ev.usage;
        return s;
      case 'finish': {
        done = true;
        s += stopBlock() + flushQueue();
        const u = JSON.stringify(anthropicUsageJson(usage ?? { inputTokens: 0, outputTokens: 0 }));
        s += frame('message_delta', `{"type":"message_delta","delta":{"stop_reason":"${STOP_REASON[ev.reason]}","stop_sequence":null},"usage":${u}}`);
        return s + frame('message_stop', '{"type":"message_stop"}');
      }
    }
  };
}

function streamError(message: string, type: string, code?: string): string {
  const body = anthropicErrorBody(type, message);
  // aam's code beside Anthropic's fields, as its error bodies carry it (e.g. store_unavailable).
  return frame('error', JSON.stringify(code === undefined ? body : { ...body, error: { ...body.error, code } }));
}

export const anthropicCodec: ClientCodec = {
  wire: 'anthropic',
  encodeResult,
  streamEncoder,
  // message_stop is written with the finish event; Anthropic streams have no extra terminator.
  streamDone: '',
  streamError,
};
