// Validation of client OpenAI requests into the canonical shape. Names the first bad field.
// Valid messages are used as-is (no copy): unknown message keys and content parts ride along.
import type { ChatMessage, ChatRequest, EmbeddingsRequest, ToolChoice, ToolDef } from './types.ts';

import type { Obj } from './util.ts';
import { isNum, isObj } from '../lib/json.ts';

export type ParseResult<T> = { ok: true; req: T } | { ok: false; field: string; message: string };

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);
const KNOWN = new Set([
  'model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'temperature',
  'top_p', 'stop', 'tools', 'tool_choice', 'parallel_tool_calls', 'user', 'response_format',
]);

function bad(field: string, message: string): { ok: false; field: string; message: string } {
  return { ok: false, field, message };
}

/** Whether a request holds an Anthropic cache breakpoint (ChatRequest.anthropicMarks), a part other than text and image_url (otherParts). */
interface Marks { on: boolean; parts?: boolean }

/** Returns an error message for one message, or undefined when valid. */
function checkMessage(m: unknown, at: string, marks: Marks): { field: string; message: string } | undefined {
  if (!isObj(m)) return bad(at, 'must be an object');
  const role = m.role;
  if (typeof role !== 'string' || !ROLES.has(role)) return bad(`${at}.role`, 'must be one of system, developer, user, assistant, tool');
  const c = m.content;
  if (Array.isArray(c)) {
    for (let i = 0; i < c.length; i++) {
      const p: unknown = c[i];
      if (!isObj(p) || typeof p.type !== 'string') return bad(`${at}.content[${i}]`, 'must be an object with a string "type"');
      if (p.type === 'text' && typeof p.text !== 'string') return bad(`${at}.content[${i}].text`, 'must be a string');
      if (p.cache_control !== undefined) marks.on = true;
      if (p.type !== 'text' && p.type !== 'image_url') marks.parts = true;
      if (p.type === 'image_url' && !(isObj(p.image_url) && typeof p.image_url.url === 'string')) {
        return bad(`${at}.content[${i}].image_url.url`, 'must be a string');
      }
    }
  } else if (typeof c !== 'string' && !((c === null || c === undefined) && role === 'assistant')) {
    return bad(`${at}.content`, role === 'assistant' ? 'must be a string, an array of content parts or null' : 'must be a string or an array of content parts');
  }
  if (m.name !== undefined && typeof m.name !== 'string') return bad(`${at}.name`, 'must be a string');
  if (m.cache_control !== undefined) marks.on = true;
  if (role === 'tool' && typeof m.tool_call_id !== 'string') return bad(`${at}.tool_call_id`, 'is required for tool messages and must be a string');
  if (m.tool_calls !== undefined) {
    if (role !== 'assistant' || !Array.isArray(m.tool_calls)) return bad(`${at}.tool_calls`, 'must be an array on an assistant message');
    for (let i = 0; i < m.tool_calls.length; i++) {
      const tc: unknown = m.tool_calls[i];
      const f = `${at}.tool_calls[${i}]`;
      if (!isObj(tc) || typeof tc.id !== 'string') return bad(`${f}.id`, 'must be a string');
      if (!isObj(tc.function) || typeof tc.function.name !== 'string') return bad(`${f}.function.name`, 'must be a string');
      if (typeof tc.function.arguments !== 'string') return bad(`${f}.function.arguments`, 'must be a JSON string');
      if (tc.cache_control !== undefined) marks.on = true;
    }
  }
  return undefined;
}

function checkTools(tools: unknown, marks: Marks): { field: string; message: string } | undefined {
  if (!Array.isArray(tools)) return bad('tools', 'must be an array');
  for (let i = 0; i < tools.length; i++) {
    const t: unknown = tools[i];
    if (!isObj(t) || t.type !== 'function') return bad(`tools[${i}].type`, 'must be "function"');
    const fn = t.function;
    if (!isObj(fn) || typeof fn.name !== 'string' || fn.name === '') return bad(`tools[${i}].function.name`, 'must be a non-empty string');
    if (fn.description !== undefined && typeof fn.description !== 'string') return bad(`tools[${i}].function.description`, 'must be a string');
    if (fn.parameters !== undefined && !isObj(fn.parameters)) return bad(`tools[${i}].function.parameters`, 'must be a JSON Schema object');
    if (t.cache_control !== undefined) marks.on = true;
  }
  return undefined;
}

function isToolChoice(v: unknown): v is ToolChoice {
  if (v === 'auto' || v === 'none' || v === 'required') return true;
  return isObj(v) && v.type === 'function' && isObj(v.function) && typeof v.function.name === 'string';
}


export function parseOpenAIChatRequest(body: unknown): ParseResult<ChatRequest> {
  if (!isObj(body)) return bad('body', 'must be a JSON object');
  const { model, messages } = body;
  if (typeof model !== 'string' || model === '') return bad('model', 'is required and must be a non-empty string (a Model route name)');
  if (!Array.isArray(messages) || messages.length === 0) return bad('messages', 'is required and must be a non-empty array');
  const marks: Marks = { on: false };
  for (let i = 0; i < messages.length; i++) {
    const e = checkMessage(messages[i], `messages[${i}]`, marks);
    if (e !== undefined) return { ok: false, ...e };
  }
  const req: ChatRequest = { model, messages: messages as ChatMessage[] };
  const b = body;
  if (b.stream !== undefined && b.stream !== null) {
    if (typeof b.stream !== 'boolean') return bad('stream', 'must be a boolean');
    req.stream = b.stream;
  }
  if (b.stream_options !== undefined && b.stream_options !== null) {
    const so = b.stream_options;
    if (!isObj(so)) return bad('stream_options', 'must be an object');
    if (so.include_usage !== undefined && typeof so.include_usage !== 'boolean') return bad('stream_options.include_usage', 'must be a boolean');
    req.stream_options = so as { include_usage?: boolean };
  }
  for (const k of ['max_tokens', 'max_completion_tokens', 'temperature', 'top_p'] as const) {
    const v = b[k];
    if (v === undefined || v === null) continue;
    if (!isNum(v)) return bad(k, 'must be a number');
    req[k] = v;
  }
  if (b.stop !== undefined && b.stop !== null) {
    const s = b.stop;
    if (!(typeof s === 'string' || (Array.isArray(s) && s.every((x) => typeof x === 'string')))) return bad('stop', 'must be a string or an array of strings');
    req.stop = s as string | string[];
  }
  if (b.tools !== undefined && b.tools !== null) {
    const e = checkTools(b.tools, marks);
    if (e !== undefined) return { ok: false, ...e };
    req.tools = b.tools as ToolDef[];
  }
  if (b.tool_choice !== undefined && b.tool_choice !== null) {
    if (!isToolChoice(b.tool_choice)) return bad('tool_choice', 'must be "auto", "none", "required" or {"type":"function","function":{"name":...}}');
    req.tool_choice = b.tool_choice;
  }
  if (b.parallel_tool_calls !== undefined && b.parallel_tool_calls !== null) {
    if (typeof b.parallel_tool_calls !== 'boolean') return bad('parallel_tool_calls', 'must be a boolean');
    req.parallel_tool_calls = b.parallel_tool_calls;
  }
  if (b.user !== undefined && b.user !== null) {
    if (typeof b.user !== 'string') return bad('user', 'must be a string');
    req.user = b.user;
  }
  if (b.response_format !== undefined && b.response_format !== null) {
    if (!isObj(b.response_format)) return bad('response_format', 'must be an object');
    req.response_format = b.response_format;
  }
  // Guardrails, cache, streams and translation carry one choice: a second one would pass unscanned
  // (an answer relayed as the upstream wrote it) or be merged into the first (a stream).
  if (b.n !== undefined && b.n !== null && b.n !== 1) return bad('n', 'must be 1: aam answers one choice per request; send n requests for n answers');
  let extra: Obj | undefined;
  for (const k in b) {
    if (KNOWN.has(k)) continue;
    (extra ??= {})[k] = b[k];
  }
  if (extra !== undefined) req.extra = extra;
  // LiteLLM's form of Anthropic prompt caching: cache_control on parts, messages and tools.
  if (marks.on) req.anthropicMarks = true;
  if (marks.parts === true) req.otherParts = true;
  return { ok: true, req };
}

export function parseEmbeddingsRequest(body: unknown): ParseResult<EmbeddingsRequest> {
  if (!isObj(body)) return bad('body', 'must be a JSON object');
  const { model, input } = body;
  if (typeof model !== 'string' || model === '') return bad('model', 'is required and must be a non-empty string (a Model route name)');
  const okInput = typeof input === 'string'
    || (Array.isArray(input) && input.length > 0 && (
      input.every((x) => typeof x === 'string')
      || input.every(isNum)
      || input.every((x) => Array.isArray(x) && x.every(isNum))));
  if (!okInput) return bad('input', 'must be a string, an array of strings, or token arrays (non-empty)');
  const req: EmbeddingsRequest = { model, input: input as EmbeddingsRequest['input'] };
  const b = body;
  if (b.encoding_format !== undefined && b.encoding_format !== null) {
    if (b.encoding_format !== 'float' && b.encoding_format !== 'base64') return bad('encoding_format', 'must be "float" or "base64"');
    req.encoding_format = b.encoding_format;
  }
  if (b.dimensions !== undefined && b.dimensions !== null) {
    if (!Number.isInteger(b.dimensions) || (b.dimensions as number) <= 0) return bad('dimensions', 'must be a positive integer');
    req.dimensions = b.dimensions as number;
  }
  if (b.user !== undefined && b.user !== null) {
    if (typeof b.user !== 'string') return bad('user', 'must be a string');
    req.user = b.user;
  }
  return { ok: true, req };
}
