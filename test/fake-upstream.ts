// Fake LLM upstream for end-to-end tests: speaks the OpenAI (chat completions and Responses),
// Anthropic, Gemini and Azure OpenAI wire formats (JSON and SSE). Behaviour is chosen by the
// upstream model name, so a test picks it in an aam Model route target:
//   ok (default for any other name)  text answer echoing the last user message
//   tools                            two tool calls (get_weather, get_time)
//   handoff                          a call of the first tool named transfer_to_* the request offers (an Agents
//                                    SDK handoff), arguments {}; without one, ok
//   json                             a JSON text answer in pieces, {"city":"Paris","temp_c":21} (structured output)
//   tool-loop                        one get_weather call, then (once the last message is its
//                                    result) a final answer quoting that result: a whole tool loop
// On the Responses wire, a request whose include has reasoning.encrypted_content gets REASONING_ITEM first.
//   fail-500 | fail-400 | fail-429   error in the wire's shape (429 carries retry-after: 1)
//   flaky-<n>                        503 for the first n requests to this model, then ok
//   hang                             never answers
//   slow-<ms>                        first byte (headers) after ms
//   garbage                          200 with a body that is not JSON / not SSE
//   cut-stream                       two content pieces, then the socket is destroyed
//   error-before-content             stream opens (role chunk / message_start) then an error, no content
//   silent-<ms>                      first chunk, silence for ms, then the rest
//   pause-<ms>                       ok, streamed: the first content piece, silence for ms, then the rest
//   prompt-cache                     ok, and Anthropic usage reports a prompt-cache write of 1200 tokens (200
//                                    for 5 minutes, 1000 for an hour) on the first request to it, a read of
//                                    1200 on every later one
//   thinking-tools                   Anthropic wire, extended thinking + tools: the first turn answers a
//                                    thinking block (THINKING, signed), a redacted_thinking block, text and a
//                                    get_weather call; a turn carrying the tool result must send both blocks
//                                    back first in the assistant turn, as sent (else 400, as Anthropic
//                                    answers), then gets a final answer
//   thinking-interleaved             Anthropic wire, interleaved thinking (the beta): the first turn answers
//                                    thinking, text, get_weather, a second thinking block, text, get_time; a turn
//                                    carrying the tool results must send the thinking and tool_use blocks
//                                    back in that order, thinking as sent (else 400), then a final answer
// Anthropic wire, any model: a thinking block sent back without a signature is
// 400 (as Anthropic answers), and so is a tool loop with thinking on whose assistant turn does not start with one.
// Every request is recorded in `requests` (with `aborted` set if the caller went away early).
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
  /** The body's bytes as received (UTF-8): what a raw pass-through must leave as the client wrote it. */
  raw: string;
  /** Upstream model the behaviour was chosen from. */
  model: string;
  /** True when the client closed the connection before the response finished. */
  aborted: boolean;
}

export interface FakeUpstream {
  /** Base URL, e.g. http://127.0.0.1:PORT (OpenAI/Anthropic under /v1, Gemini under /v1beta). */
  url: string;
  requests: RecordedRequest[];
  /** Requests received per upstream model name. */
  count(model: string): number;
  reset(): void;
  close(): Promise<void>;
}

export interface FakeUpstreamOptions {
  /** Delay between streamed chunks in ms (default 0). */
  chunkDelayMs?: number;
}

type Wire = 'openai' | 'anthropic' | 'gemini' | 'responses';
type Obj = Record<string, unknown>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function lastUserText(wire: Wire, body: unknown): string {
  if (!isObj(body)) return '';
  const list = wire === 'gemini' ? body.contents : wire === 'responses' ? body.input : body.messages;
  if (!Array.isArray(list)) return '';
  for (let i = list.length - 1; i >= 0; i--) {
    const m: unknown = list[i];
    if (!isObj(m) || m.role !== 'user') continue;
    const c = wire === 'gemini' ? m.parts : m.content;
    if (typeof c === 'string') return c;
    if (Array.isArray(c)) {
      const texts = c.filter((p): p is Obj => isObj(p) && typeof p.text === 'string' && p.type !== 'tool_result').map((p) => p.text as string);
      if (texts.length > 0) return texts.join(' ');
    }
  }
  return '';
}

const TOOLS = [
  { id: 'call_fake_weather_001', name: 'get_weather', args: ['{"loc', 'ation": "Par', 'is"}'] },
  { id: 'call_fake_time_002', name: 'get_time', args: ['{"tz": ', '"Europe/Paris"}'] },
];

interface Answer { pieces: string[]; tools: boolean; input: number; output: number; calls?: typeof TOOLS; cacheWrite?: number; cacheRead?: number; thinking?: boolean; interleaved?: boolean; reasoning?: boolean }

/** The reasoning item the Responses wire answers first when asked (include reasoning.encrypted_content). */
export const REASONING_ITEM = { id: 'rs_fake_0', type: 'reasoning', summary: [], encrypted_content: 'gAAAAABfakeEncryptedReasoning==' } as const;

/** thinking-tools' blocks: a signature with the characters base64 has (and JSON might escape differently). */
export const THINKING = {
  thinking: { type: 'thinking', thinking: 'The user wants the weather; I will call get_weather for Paris.', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3h+/Gx0pkiMOYds=' },
  redacted: { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4aMOYds+9=' },
} as const;

/** thinking-interleaved's second thinking block (between its two tool calls). */
export const THINKING2 = { type: 'thinking', thinking: 'Paris is in Europe/Paris; I will also call get_time.', signature: 'ErUBCgIYAhIMz9k+Qm3pX1/b0aAhIgyq7==' } as const;

/** thinking-interleaved's first answer, its blocks in order (thinking between the tool calls). */
export function interleavedContent(): Obj[] {
  const use = (t: typeof TOOLS[number]): Obj => ({ type: 'tool_use', id: t.id.replace('call_', 'toolu_'), name: t.name, input: JSON.parse(t.args.join('')) as unknown });
  return [{ ...THINKING.thinking }, { type: 'text', text: 'Let me check.' }, use(TOOLS[0]), { ...THINKING2 }, { type: 'text', text: 'And the time.' }, use(TOOLS[1])];
}

/**
 * thinking-interleaved's check of a turn after the tool calls: the last assistant message's
 * thinking and tool_use blocks in the order answered, each thinking block as sent (text blocks may change).
 */
function interleavedSentBack(body: unknown): string | null {
  const list = isObj(body) && Array.isArray(body.messages) ? body.messages : [];
  const asst = [...list].reverse().find((m) => isObj(m) && m.role === 'assistant') as Obj | undefined;
  const got = (asst && Array.isArray(asst.content) ? asst.content : []).filter((b) => isObj(b) && b.type !== 'text');
  const want = interleavedContent().filter((b) => b.type !== 'text');
  if (JSON.stringify(got) !== JSON.stringify(want)) return 'messages.1.content: thinking blocks must be sent back unmodified, in the order and place they were returned (interleaved thinking)';
  return null;
}

/**
 * thinking-tools' check of a turn after the tool call: the last assistant message starts with the
 * two blocks exactly as answered (Anthropic checks the signature), else the API's complaint.
 */
function thinkingSentBack(body: unknown, raw: string): string | null {
  if (!raw.includes(JSON.stringify(THINKING.thinking.signature))) return 'messages: the thinking block\'s signature is missing or altered';
  const list = isObj(body) && Array.isArray(body.messages) ? body.messages : [];
  const asst = [...list].reverse().find((m) => isObj(m) && m.role === 'assistant') as Obj | undefined;
  const c = asst && Array.isArray(asst.content) ? asst.content : [];
  if (JSON.stringify(c[0]) !== JSON.stringify(THINKING.thinking) || JSON.stringify(c[1]) !== JSON.stringify(THINKING.redacted)) {
    return 'messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks).';
  }
  return null;
}

/**
 * Anthropic's check of every thinking block a request carries: it must have a signature (Anthropic
 * also verifies it; tests here send made-up ones), else 400 as Anthropic answers; and with thinking on,
 * an assistant turn that called tools, when the conversation ends with their results, must start with a thinking block.
 */
function foreignThinking(body: unknown): string | null {
  const list = isObj(body) && Array.isArray(body.messages) ? body.messages as unknown[] : [];
  for (let i = 0; i < list.length; i++) {
    const m = list[i];
    const c = isObj(m) && Array.isArray(m.content) ? m.content as unknown[] : [];
    for (let j = 0; j < c.length; j++) {
      const b = c[j];
      if (isObj(b) && b.type === 'thinking' && (typeof b.signature !== 'string' || b.signature === '')) return `messages.${i}.content.${j}: Invalid \`signature\` in \`thinking\` block`;
    }
  }
  const asst = list.findLastIndex((m) => isObj(m) && m.role === 'assistant');
  const c = asst >= 0 && asst === list.length - 2 && Array.isArray((list[asst] as Obj).content) ? (list[asst] as Obj).content as Obj[] : [];
  const on = isObj(body) && isObj(body.thinking) && body.thinking.type !== 'disabled';
  if (on && c.some((b) => isObj(b) && b.type === 'tool_use') && !(isObj(c[0]) && (c[0].type === 'thinking' || c[0].type === 'redacted_thinking'))) {
    return `messages.${asst}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${String(c[0]?.type)}\`. When \`thinking\` is enabled, a final \`assistant\` message must start with a thinking block (preceeding the lastmost set of \`tool_use\` and \`tool_result\` blocks).`;
  }
  return null;
}

/** The tool result the conversation ends with (OpenAI tool message, Anthropic tool_result, Gemini functionResponse), or null. */
function lastToolResult(wire: Wire, body: unknown): string | null {
  const list = isObj(body) ? (wire === 'gemini' ? body.contents : wire === 'responses' ? body.input : body.messages) : undefined;
  const m: unknown = Array.isArray(list) ? list[list.length - 1] : undefined;
  if (!isObj(m)) return null;
  const text = (c: unknown): string => typeof c === 'string' ? c : Array.isArray(c) ? c.map((p) => (isObj(p) && typeof p.text === 'string' ? p.text : '')).join('') : '';
  if (wire === 'responses') return m.type === 'function_call_output' ? text(m.output) : null;
  if (wire === 'openai') return m.role === 'tool' ? text(m.content) : null;
  const parts = wire === 'gemini' ? m.parts : m.content;
  if (!Array.isArray(parts)) return null;
  for (const p of parts) {
    if (wire === 'anthropic' && isObj(p) && p.type === 'tool_result') return text(p.content);
    if (wire === 'gemini' && isObj(p) && isObj(p.functionResponse)) {
      const r = p.functionResponse.response;
      return isObj(r) && typeof r.result === 'string' ? r.result : JSON.stringify(r);
    }
  }
  return null;
}

function answerFor(behaviour: string, userText: string, toolResult: string | null = null): Answer {
  if (behaviour === 'tools') return { pieces: [], tools: true, input: 42, output: 17 };
  if (behaviour === 'tool-loop' || behaviour === 'thinking-tools' || behaviour === 'thinking-interleaved') {
    if (behaviour === 'thinking-tools' && toolResult === null) return { pieces: [], tools: true, input: 30, output: 9, calls: [TOOLS[0]], thinking: true };
    if (behaviour === 'thinking-interleaved' && toolResult === null) return { pieces: [], tools: true, input: 30, output: 19, thinking: true, interleaved: true };
    return toolResult === null ? { pieces: [], tools: true, input: 30, output: 9, calls: [TOOLS[0]] }
      : { pieces: ['final: ', 'the tool said ', toolResult], tools: false, input: 50, output: 6 };
  }
  if (behaviour === 'json') return { pieces: ['{"city":', '"Paris",', '"temp_c":21}'], tools: false, input: 12, output: 9 };
  const text = `echo: ${userText}`;
  const words = text.split(/(?<= )/);
  return { pieces: words.length > 1 ? words : [text, ''], tools: false, input: 10 + userText.length, output: words.length };
}

/** The first transfer_to_* tool a request offers (OpenAI chat, Responses or Anthropic tool shapes). */
function handoffTool(tools: unknown): string | undefined {
  for (const t of Array.isArray(tools) ? tools : []) {
    const name: unknown = isObj(t) ? (isObj(t.function) ? t.function.name : t.name) : undefined;
    if (typeof name === 'string' && name.startsWith('transfer_to_')) return name;
  }
  return undefined;
}

function errorBody(wire: Wire, status: number, message: string): string {
  const type = status === 429 ? 'rate_limit_error' : status === 400 ? 'invalid_request_error' : 'api_error';
  if (wire === 'anthropic') return JSON.stringify({ type: 'error', error: { type, message } });
  if (wire === 'gemini') return JSON.stringify({ error: { code: status, message, status: status === 429 ? 'RESOURCE_EXHAUSTED' : status === 400 ? 'INVALID_ARGUMENT' : 'INTERNAL' } });
  return JSON.stringify({ error: { message, type, code: status === 429 ? 'rate_limit_exceeded' : null } });
}

// ---- non-streamed bodies ----

/** OpenAI Responses API: a Response object (text as one message item, calls as function_call items). */
function responsesAnswer(model: string, a: Answer, status = 'completed'): Obj {
  const output: Obj[] = a.tools
    ? (a.calls ?? TOOLS).map((t, i) => ({ id: `fc_fake_${i}`, type: 'function_call', status: 'completed', call_id: t.id, name: t.name, arguments: t.args.join('') }))
    : [{ id: 'msg_fake_0', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: a.pieces.join(''), annotations: [] }] }];
  if (a.reasoning === true) output.unshift({ ...REASONING_ITEM });
  return { id: 'resp_fake_0001', object: 'response', created_at: 1764081600, status, model, output, usage: { input_tokens: a.input, input_tokens_details: { cached_tokens: 0 }, output_tokens: a.output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: a.input + a.output } };
}

function responsesFrames(model: string, a: Answer): Frame[] {
  let seq = 0;
  const e = (type: string, data: Obj, content = false): Frame => ({ data: ev(type, { type, sequence_number: seq++, ...data }), content });
  const out: Frame[] = [e('response.created', { response: { ...responsesAnswer(model, a, 'in_progress'), output: [], usage: null } })];
  const r = a.reasoning === true ? 1 : 0;
  if (r === 1) {
    out.push(e('response.output_item.added', { output_index: 0, item: { id: REASONING_ITEM.id, type: 'reasoning', summary: [] } }));
    out.push(e('response.output_item.done', { output_index: 0, item: { ...REASONING_ITEM } }));
  }
  if (a.tools) {
    (a.calls ?? TOOLS).forEach((t, j) => {
      const i = j + r;
      const id = `fc_fake_${j}`;
      out.push(e('response.output_item.added', { output_index: i, item: { id, type: 'function_call', status: 'in_progress', call_id: t.id, name: t.name, arguments: '' } }, true));
      for (const f of t.args) out.push(e('response.function_call_arguments.delta', { item_id: id, output_index: i, delta: f }, true));
      out.push(e('response.output_item.done', { output_index: i, item: { id, type: 'function_call', status: 'completed', call_id: t.id, name: t.name, arguments: t.args.join('') } }));
    });
  } else {
    out.push(e('response.output_item.added', { output_index: r, item: { id: 'msg_fake_0', type: 'message', status: 'in_progress', role: 'assistant', content: [] } }));
    for (const p of a.pieces) out.push(e('response.output_text.delta', { item_id: 'msg_fake_0', output_index: r, content_index: 0, delta: p }, true));
  }
  out.push(e('response.completed', { response: responsesAnswer(model, a) }));
  return out;
}

function jsonAnswer(wire: Wire, model: string, a: Answer): Obj {
  if (wire === 'responses') return responsesAnswer(model, a);
  const text = a.pieces.join('');
  if (wire === 'anthropic') {
    const content: unknown[] = a.interleaved ? interleavedContent() : a.tools
      ? [...(a.thinking ? [THINKING.thinking, THINKING.redacted] : []), { type: 'text', text: 'Let me check.' }, ...(a.calls ?? TOOLS).map((t) => ({ type: 'tool_use', id: t.id.replace('call_', 'toolu_'), name: t.name, input: JSON.parse(t.args.join('')) as unknown }))]
      : [{ type: 'text', text }];
    return { id: 'msg_fake_0001', type: 'message', role: 'assistant', model, content, stop_reason: a.tools ? 'tool_use' : 'end_turn', stop_sequence: null, usage: { input_tokens: a.input, output_tokens: a.output, cache_creation_input_tokens: a.cacheWrite ?? 0, cache_read_input_tokens: a.cacheRead ?? 0, ...cacheCreation(a) } };
  }
  if (wire === 'gemini') {
    const parts = a.tools ? (a.calls ?? TOOLS).map((t) => ({ functionCall: { name: t.name, args: JSON.parse(t.args.join('')) as unknown } })) : [{ text }];
    return { candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP', index: 0 }], usageMetadata: { promptTokenCount: a.input, candidatesTokenCount: a.output, totalTokenCount: a.input + a.output }, modelVersion: model, responseId: 'fake-response-1' };
  }
  const message: Obj = { role: 'assistant', content: a.tools ? null : text, refusal: null, annotations: [] };
  if (a.tools) message.tool_calls = (a.calls ?? TOOLS).map((t) => ({ id: t.id, type: 'function', function: { name: t.name, arguments: t.args.join('') } }));
  return {
    id: 'chatcmpl-fake0001', object: 'chat.completion', created: 1764081600, model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: a.tools ? 'tool_calls' : 'stop' }],
    usage: { prompt_tokens: a.input, completion_tokens: a.output, total_tokens: a.input + a.output, prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 } },
    system_fingerprint: 'fp_fake',
  };
}

// ---- streamed frames: each entry is one write; `content` marks the pieces cut-stream counts ----

interface Frame { data: string; content: boolean }

function openaiFrames(model: string, a: Answer, includeUsage: boolean): Frame[] {
  const head = `{"id":"chatcmpl-fake0002","object":"chat.completion.chunk","created":1764081600,"model":${JSON.stringify(model)},"system_fingerprint":"fp_fake","choices":`;
  const chunk = (delta: Obj, finish: string | null): string => `data: ${head}[{"index":0,"delta":${JSON.stringify(delta)},"logprobs":null,"finish_reason":${JSON.stringify(finish)}}]${includeUsage ? ',"usage":null' : ''}}\n\n`;
  const out: Frame[] = [{ data: chunk({ role: 'assistant', content: '', refusal: null }, null), content: false }];
  if (a.tools) {
    (a.calls ?? TOOLS).forEach((t, index) => {
      out.push({ data: chunk({ tool_calls: [{ index, id: t.id, type: 'function', function: { name: t.name, arguments: '' } }] }, null), content: true });
      for (const f of t.args) out.push({ data: chunk({ tool_calls: [{ index, function: { arguments: f } }] }, null), content: true });
    });
  } else {
    for (const p of a.pieces) out.push({ data: chunk({ content: p }, null), content: true });
  }
  out.push({ data: chunk({}, a.tools ? 'tool_calls' : 'stop'), content: false });
  if (includeUsage) {
    out.push({ data: `data: ${head}[],"usage":{"prompt_tokens":${a.input},"completion_tokens":${a.output},"total_tokens":${a.input + a.output},"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n`, content: false });
  }
  out.push({ data: 'data: [DONE]\n\n', content: false });
  return out;
}

function ev(event: string, data: Obj): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Anthropic's split of a cache write by lifetime (prompt-cache: 200 tokens for 5 minutes, the rest for an hour). */
function cacheCreation(a: Answer | undefined): Obj {
  const w = a?.cacheWrite ?? 0;
  return w > 0 ? { cache_creation: { ephemeral_5m_input_tokens: 200, ephemeral_1h_input_tokens: w - 200 } } : {};
}

function anthropicStart(model: string, input: number, a?: Answer): string {
  return ev('message_start', { type: 'message_start', message: { id: 'msg_fake_0002', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: input, cache_creation_input_tokens: a?.cacheWrite ?? 0, cache_read_input_tokens: a?.cacheRead ?? 0, ...cacheCreation(a), output_tokens: 1, service_tier: 'standard' } } });
}

function anthropicFrames(model: string, a: Answer): Frame[] {
  const out: Frame[] = [{ data: anthropicStart(model, a.input, a), content: false }];
  if (a.interleaved) {
    interleavedContent().forEach((b, index) => {
      const block = (delta: Obj): Frame => ({ data: ev('content_block_delta', { type: 'content_block_delta', index, delta }), content: true });
      if (b.type === 'thinking') {
        out.push({ data: ev('content_block_start', { type: 'content_block_start', index, content_block: { type: 'thinking', thinking: '', signature: '' } }), content: false });
        for (const p of String(b.thinking).split(/(?<= )/)) out.push(block({ type: 'thinking_delta', thinking: p }));
        out.push(block({ type: 'signature_delta', signature: b.signature }));
      } else if (b.type === 'text') {
        out.push({ data: ev('content_block_start', { type: 'content_block_start', index, content_block: { type: 'text', text: '' } }), content: false });
        out.push(block({ type: 'text_delta', text: b.text }));
      } else {
        out.push({ data: ev('content_block_start', { type: 'content_block_start', index, content_block: { ...b, input: {} } }), content: true });
        out.push(block({ type: 'input_json_delta', partial_json: JSON.stringify(b.input) }));
      }
      out.push({ data: ev('content_block_stop', { type: 'content_block_stop', index }), content: false });
    });
    out.push({ data: ev('message_delta', { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: a.output } }), content: false });
    out.push({ data: ev('message_stop', { type: 'message_stop' }), content: false });
    return out;
  }
  // Extended thinking as the API streams it: an empty thinking block, its text in thinking_delta
  // pieces, its signature in one signature_delta just before the stop; a redacted block whole.
  const t0 = a.thinking ? 2 : 0;
  if (a.thinking) {
    const th = THINKING.thinking;
    out.push({ data: ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } }), content: false });
    for (const p of th.thinking.split(/(?<= )/)) out.push({ data: ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: p } }), content: true });
    out.push({ data: ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: th.signature } }), content: false });
    out.push({ data: ev('content_block_stop', { type: 'content_block_stop', index: 0 }), content: false });
    out.push({ data: ev('content_block_start', { type: 'content_block_start', index: 1, content_block: THINKING.redacted }), content: false });
    out.push({ data: ev('content_block_stop', { type: 'content_block_stop', index: 1 }), content: false });
  }
  out.push({ data: ev('content_block_start', { type: 'content_block_start', index: t0, content_block: { type: 'text', text: '' } }), content: false });
  out.push({ data: ev('ping', { type: 'ping' }), content: false });
  const pieces = a.tools ? ['Let me check.'] : a.pieces;
  for (const p of pieces) out.push({ data: ev('content_block_delta', { type: 'content_block_delta', index: t0, delta: { type: 'text_delta', text: p } }), content: true });
  out.push({ data: ev('content_block_stop', { type: 'content_block_stop', index: t0 }), content: false });
  if (a.tools) {
    (a.calls ?? TOOLS).forEach((t, i) => {
      const index = t0 + i + 1;
      out.push({ data: ev('content_block_start', { type: 'content_block_start', index, content_block: { type: 'tool_use', id: t.id.replace('call_', 'toolu_'), name: t.name, input: {} } }), content: true });
      out.push({ data: ev('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: '' } }), content: false });
      for (const f of t.args) out.push({ data: ev('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: f } }), content: true });
      out.push({ data: ev('content_block_stop', { type: 'content_block_stop', index }), content: false });
    });
  }
  out.push({ data: ev('message_delta', { type: 'message_delta', delta: { stop_reason: a.tools ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: a.output } }), content: false });
  out.push({ data: ev('message_stop', { type: 'message_stop' }), content: false });
  return out;
}

function geminiFrames(model: string, a: Answer): Frame[] {
  const usage = { promptTokenCount: a.input, candidatesTokenCount: a.output, totalTokenCount: a.input + a.output };
  const frame = (parts: unknown[], last: boolean): Frame => ({
    data: `data: ${JSON.stringify({ candidates: [{ content: { parts, role: 'model' }, ...(last ? { finishReason: 'STOP' } : {}), index: 0 }], usageMetadata: usage, modelVersion: model, responseId: 'fake-response-2' })}\r\n\r\n`,
    content: true,
  });
  if (a.tools) return [frame([{ text: 'Let me check.' }], false), frame((a.calls ?? TOOLS).map((t) => ({ functionCall: { name: t.name, args: JSON.parse(t.args.join('')) as unknown } })), true)];
  return a.pieces.map((p, i) => frame([{ text: p }], i === a.pieces.length - 1));
}

function streamErrorFrames(wire: Wire, model: string): Frame[] {
  if (wire === 'anthropic') {
    return [{ data: anthropicStart(model, 5), content: false }, { data: ev('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }), content: false }];
  }
  if (wire === 'gemini') return [{ data: `data: ${JSON.stringify({ error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } })}\r\n\r\n`, content: false }];
  return [
    { data: `data: {"id":"chatcmpl-fake0003","object":"chat.completion.chunk","created":1764081600,"model":${JSON.stringify(model)},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n`, content: false },
    { data: `data: ${JSON.stringify({ error: { message: 'The server had an error while processing your request.', type: 'server_error', code: null } })}\n\n`, content: false },
  ];
}

// ---- routing ----

interface Route { wire: Wire; kind: 'chat' | 'embeddings' | 'models'; model?: string; stream?: boolean }

function route(method: string, path: string): Route | undefined {
  const [p, query = ''] = path.split('?', 2);
  if (method === 'GET' && p === '/v1/models') return { wire: 'openai', kind: 'models' };
  if (method !== 'POST') return undefined;
  if (p === '/v1/chat/completions') return { wire: 'openai', kind: 'chat' };
  if (p === '/v1/embeddings') return { wire: 'openai', kind: 'embeddings' };
  if (p === '/v1/messages') return { wire: 'anthropic', kind: 'chat' };
  if (p === '/v1/responses') return { wire: 'responses', kind: 'chat' };
  let m = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(p);
  if (m !== null) return { wire: 'gemini', kind: 'chat', model: decodeURIComponent(m[1]), stream: m[2] === 'streamGenerateContent' && /(^|&)alt=sse(&|$)/.test(query) };
  m = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|embeddings)$/.exec(p);
  if (m !== null) return { wire: 'openai', kind: m[2] === 'embeddings' ? 'embeddings' : 'chat', model: decodeURIComponent(m[1]) };
  return undefined;
}

function embeddings(body: Obj, model: string): Obj {
  const input = body.input;
  const list = Array.isArray(input) ? input : [input];
  const dims = typeof body.dimensions === 'number' ? body.dimensions : 8;
  return {
    object: 'list', model,
    data: list.map((x, index) => {
      const v = Array.from({ length: dims }, (_, i) => ((String(x).length + i) % 10) / 10);
      // The openai SDK asks for base64 by default: little-endian float32, as OpenAI sends it.
      const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
      return { object: 'embedding', index, embedding };
    }),
    usage: { prompt_tokens: list.length * 3, total_tokens: list.length * 3 },
  };
}

export async function startFakeUpstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const requests: RecordedRequest[] = [];
  const counts = new Map<string, number>();
  const chunkDelay = opts.chunkDelayMs ?? 0;
  const timers = new Set<NodeJS.Timeout>();
  const wait = (ms: number): Promise<void> => new Promise((resolve) => {
    const t = setTimeout(() => { timers.delete(t); resolve(); }, ms);
    timers.add(t);
  });

  async function writeFrames(res: ServerResponse, frames: Frame[], behaviour: string, silentMs: number, pauseMs = 0): Promise<void> {
    let content = 0;
    for (let i = 0; i < frames.length; i++) {
      if (res.destroyed) return;
      res.write(frames[i].data);
      if (frames[i].content) content++;
      if (behaviour === 'cut-stream' && content === 2) { await sleep(5); res.socket?.destroy(); return; }
      if (i === 0 && silentMs > 0) await wait(silentMs);
      else if (pauseMs > 0 && content === 1 && frames[i].content) await wait(pauseMs);
      else if (chunkDelay > 0) await wait(chunkDelay);
    }
    res.end();
  }

  async function handle(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const path = req.url ?? '/';
    let body: unknown = raw;
    try { if (raw !== '') body = JSON.parse(raw); } catch { /* recorded as text */ }
    const r = route(req.method ?? 'GET', path);
    const b = isObj(body) ? body : {};
    const model = r?.model ?? (typeof b.model === 'string' ? b.model : '');
    const rec: RecordedRequest = { method: req.method ?? '', path, headers: req.headers, body, raw, model, aborted: false };
    requests.push(rec);
    const n = (counts.get(model) ?? 0) + 1;
    counts.set(model, n);
    res.on('close', () => { if (!res.writableFinished) rec.aborted = true; });

    if (r === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `fake upstream: no route for ${req.method} ${path}`, type: 'not_found' } }));
      return;
    }
    if (r.kind === 'models') {
      const ids = ['ok', 'tools', 'fail-500', 'fail-429', 'fail-400', 'hang', 'garbage', 'cut-stream', 'error-before-content'];
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: ids.map((id) => ({ id, object: 'model', created: 1764081600, owned_by: 'fake' })) }));
      return;
    }
    const wire = r.wire;
    const behaviour = model;
    const num = (prefix: string): number => (behaviour.startsWith(prefix) ? Number(behaviour.slice(prefix.length)) || 0 : 0);
    const slowMs = num('slow-');
    const silentMs = num('silent-');
    const flaky = num('flaky-');
    if (behaviour === 'hang') return; // never answers; close() destroys the socket
    if (slowMs > 0) await wait(slowMs);
    if (res.destroyed) return;

    const fail = behaviour === 'fail-500' ? 500 : behaviour === 'fail-400' ? 400 : behaviour === 'fail-429' ? 429 : flaky > 0 && n <= flaky ? 503 : 0;
    if (fail > 0) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (fail === 429) headers['retry-after'] = '1';
      res.writeHead(fail, headers).end(errorBody(wire, fail, `fake upstream: ${behaviour} (status ${fail})`));
      return;
    }
    const stream = r.stream ?? b.stream === true;
    if (behaviour === 'garbage') {
      res.writeHead(200, { 'content-type': stream ? 'text/event-stream' : 'application/json' }).end(stream ? 'this is {not an event stream\n\n' : '<html>this is not json</html>');
      return;
    }
    if (r.kind === 'embeddings') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(embeddings(b, model)));
      return;
    }
    const handoff = behaviour === 'handoff' ? handoffTool(b.tools) : undefined;
    const answer = handoff !== undefined ? { pieces: [], tools: true, input: 20, output: 5, calls: [{ id: 'call_fake_handoff_003', name: handoff, args: ['{}'] }] }
      : answerFor(behaviour, lastUserText(wire, body), lastToolResult(wire, body));
    if (behaviour === 'prompt-cache') { if (n === 1) answer.cacheWrite = 1200; else answer.cacheRead = 1200; }
    if (wire === 'responses' && Array.isArray(b.include) && b.include.includes('reasoning.encrypted_content')) answer.reasoning = true;
    const foreign = wire === 'anthropic' ? foreignThinking(body) : null;
    if (foreign !== null) { res.writeHead(400, { 'content-type': 'application/json' }).end(errorBody(wire, 400, foreign)); return; }
    if ((behaviour === 'thinking-tools' || behaviour === 'thinking-interleaved') && !answer.thinking) {
      const bad = behaviour === 'thinking-tools' ? thinkingSentBack(body, raw) : interleavedSentBack(body);
      if (bad !== null) { res.writeHead(400, { 'content-type': 'application/json' }).end(errorBody(wire, 400, bad)); return; }
    }
    if (!stream) {
      if (behaviour === 'error-before-content') {
        res.writeHead(503, { 'content-type': 'application/json' }).end(errorBody(wire, 503, 'fake upstream: overloaded'));
        return;
      }
      const json = JSON.stringify(jsonAnswer(wire, model, answer));
      if (behaviour === 'cut-stream') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(json.length) });
        res.write(json.slice(0, json.length >> 1));
        await sleep(5);
        res.socket?.destroy();
        return;
      }
      if (silentMs > 0) await wait(silentMs);
      if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end(json);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    if (behaviour === 'error-before-content') {
      await writeFrames(res, streamErrorFrames(wire, model), behaviour, 0);
      return;
    }
    const so = isObj(b.stream_options) ? b.stream_options : {};
    const frames = wire === 'anthropic' ? anthropicFrames(model, answer)
      : wire === 'gemini' ? geminiFrames(model, answer)
      : wire === 'responses' ? responsesFrames(model, answer)
      : openaiFrames(model, answer, so.include_usage === true);
    await writeFrames(res, frames, behaviour, silentMs, num('pause-'));
  }

  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(parts).toString('utf8')).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
        else res.destroy();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    count: (model) => counts.get(model) ?? 0,
    reset: () => { requests.length = 0; counts.clear(); },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** thinking-tools' first answer as the Anthropic wire sends it: the SSE text of the stream, and the non-streamed message. */
export function thinkingToolsAnswer(model: string): { sse: string; message: Obj } {
  const a = answerFor('thinking-tools', '', null);
  return { sse: anthropicFrames(model, a).map((f) => f.data).join(''), message: jsonAnswer('anthropic', model, a) };
}
