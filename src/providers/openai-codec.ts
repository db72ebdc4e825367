// Client side of the OpenAI wire: canonical result / events -> chat.completion JSON and SSE chunks.
import type { ChatResult, ClientCodec, StreamEvent, Usage } from './types.ts';
import { localId, nowSeconds } from './util.ts';

export function openaiUsageJson(u: Usage): Record<string, unknown> {
  const out: Record<string, unknown> = {
    prompt_tokens: u.inputTokens,
    completion_tokens: u.outputTokens,
    total_tokens: u.inputTokens + u.outputTokens,
  };
  if (u.cachedTokens !== undefined) out.prompt_tokens_details = { cached_tokens: u.cachedTokens };
  return out;
}

function encodeResult(r: ChatResult, model: string): unknown {
  const message: Record<string, unknown> = { role: 'assistant', content: r.text, refusal: null };
  if (r.toolCalls.length > 0) message.tool_calls = r.toolCalls;
  const out: Record<string, unknown> = {
    id: r.id,
    object: 'chat.completion',
    created: r.created,
    model,
    choices: [{ index: 0, message, logprobs: r.logprobs !== undefined ? { content: r.logprobs, refusal: null } : null, finish_reason: r.finishReason }],
  };
  if (r.usage !== undefined) out.usage = openaiUsageJson(r.usage);
  return out;
}

/**
 * Per-stream encoder. Each chunk is a template around a precomputed prefix, so the per-event
 * cost is one JSON.stringify of the changing value. Usage arrives before finish (canonical
 * order) and is written after the finish chunk, as OpenAI does, only if the client asked.
 */
function streamEncoder(opts: { includeUsage: boolean; model: string }): (ev: StreamEvent) => string {
  let prefix = '';
  let roleSent = false;
  let usage: Usage | undefined;
  let done = false;
  let model = JSON.stringify(opts.model);
  const begin = (id: string): string => {
    prefix = `data: {"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${nowSeconds()},"model":${model},"choices":`;
    roleSent = true;
    return `${prefix}[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}\n\n`;
  };
  const delta = (d: string): string => `${prefix}[{"index":0,"delta":${d},"logprobs":null,"finish_reason":null}]}\n\n`;
  return (ev: StreamEvent): string => {
    if (done) return '';
    let head = '';
    if (!roleSent && ev.type !== 'start' && ev.type !== 'error') head = begin(localId('chatcmpl-'));
    switch (ev.type) {
      case 'start':
        if (roleSent) return '';
        if (ev.model) model = JSON.stringify(ev.model);
        return begin(ev.id);
      case 'text': {
        // One template, not delta() around an inner one: the chunk most streams are made of.
        if (ev.text.length === 0) return head;
        const lp = ev.logprobs === undefined ? 'null' : `{"content":${JSON.stringify(ev.logprobs)},"refusal":null}`;
        return `${head}${prefix}[{"index":0,"delta":{"content":${JSON.stringify(ev.text)}},"logprobs":${lp},"finish_reason":null}]}\n\n`;
      }
      case 'tool_start':
        return head + delta(`{"tool_calls":[{"index":${ev.index},"id":${JSON.stringify(ev.id)},"type":"function","function":{"name":${JSON.stringify(ev.name)},"arguments":""}}]}`);
      case 'tool_args':
        return head + delta(`{"tool_calls":[{"index":${ev.index},"function":{"arguments":${JSON.stringify(ev.delta)}}}]}`);
      case 'usage':
        usage = ev.usage;
        return head;
      case 'finish': {
        done = true;
        let s = `${head}${prefix}[{"index":0,"delta":{},"logprobs":null,"finish_reason":"${ev.reason}"}]}\n\n`;
        if (opts.includeUsage && usage !== undefined) s += `${prefix}[],"usage":${JSON.stringify(openaiUsageJson(usage))}}\n\n`;
        return s;
      }
      case 'error':
        done = true;
        return streamError(ev.message, ev.errorType);
      default:
        return head; // Anthropic thinking: chat completions has no field for it (aam maps none)
    }
  };
}

function streamError(message: string, type: string, code = type): string {
  return `data: ${JSON.stringify({ error: { message, type, code } })}\n\n`;
}

export const openaiCodec: ClientCodec = {
  wire: 'openai',
  encodeResult,
  streamEncoder,
  streamDone: 'data: [DONE]\n\n',
  streamError,
};
