// Validation of client Anthropic Messages requests into the canonical (OpenAI-shaped) request.
// tool_result blocks become tool messages placed before the rest of the user turn, as OpenAI needs.
import type { BlockKind, CacheControl, ChatMessage, ChatRequest, ContentPart, ImagePart, TextPart, ToolCall, ToolDef } from './types.ts';
import { interleavedOrder } from './types.ts';
import type { Obj } from './util.ts';
import type { ParseResult } from './openai-parse.ts';
import { isNum, isObj } from '../lib/json.ts';

const KNOWN = new Set([
  'model', 'messages', 'system', 'max_tokens', 'stop_sequences', 'temperature', 'top_p', 'stream', 'tools', 'tool_choice',
]);

type Bad = { ok: false; field: string; message: string };
function bad(field: string, message: string): Bad {
  return { ok: false, field, message };
}


/** A block's cache_control, when it has one (an object: Anthropic answers 400 to anything else itself). */
function cacheOf(b: Obj): CacheControl | undefined {
  return isObj(b.cache_control) ? b.cache_control : undefined;
}

/** Anthropic block -> canonical part; THINKING for thinking blocks (kept apart, assistant turns only). */
function toPart(b: Obj, at: string, marks: Marks): ContentPart | Bad | typeof THINKING {
  if (b.type === 'text') {
    if (typeof b.text !== 'string') return bad(`${at}.text`, 'must be a string');
    const cc = cacheOf(b);
    if (cc === undefined) return { type: 'text', text: b.text };
    marks.on = true;
    return { type: 'text', text: b.text, cache_control: cc };
  }
  if (b.type === 'image') {
    const src = b.source;
    let part: ImagePart;
    if (isObj(src) && src.type === 'base64' && typeof src.media_type === 'string' && typeof src.data === 'string') {
      part = { type: 'image_url', image_url: { url: `data:${src.media_type};base64,${src.data}` } };
    } else if (isObj(src) && src.type === 'url' && typeof src.url === 'string') part = { type: 'image_url', image_url: { url: src.url } };
    else return bad(`${at}.source`, 'must be {type:"base64",media_type,data} or {type:"url",url}');
    const cc = cacheOf(b);
    if (cc !== undefined) { part.cache_control = cc; marks.on = true; }
    return part;
  }
  if (b.type === 'thinking' || b.type === 'redacted_thinking') return THINKING;
  if (b.cache_control !== undefined) marks.on = true;
  marks.parts = true;
  return b as ContentPart; // document and other native blocks pass through for Anthropic upstreams
}

/** toPart's answer for a thinking block: the caller keeps the block itself. */
const THINKING = Symbol('thinking');

/** Whether the request holds a field only the Anthropic wire has (ChatRequest.anthropicMarks), a part other than text and image (otherParts). */
interface Marks { on: boolean; parts?: boolean }

function isBad(v: unknown): v is Bad {
  return isObj(v) && v.ok === false;
}

/** One text part (with no cache breakpoint) collapses to a plain string, the common and most portable form. */
function simplify(parts: ContentPart[]): string | ContentPart[] {
  return parts.length === 1 && parts[0].type === 'text' && (parts[0] as TextPart).cache_control === undefined ? (parts[0] as TextPart).text : parts;
}

function toolResult(b: Obj, at: string, marks: Marks): ChatMessage | Bad {
  if (typeof b.tool_use_id !== 'string') return bad(`${at}.tool_use_id`, 'must be a string');
  const c = b.content;
  let content: string | ContentPart[] = '';
  if (typeof c === 'string') content = c;
  else if (Array.isArray(c)) {
    const parts: ContentPart[] = [];
    for (let i = 0; i < c.length; i++) {
      const x: unknown = c[i];
      if (!isObj(x) || typeof x.type !== 'string') return bad(`${at}.content[${i}]`, 'must be a content block');
      const p = toPart(x, `${at}.content[${i}]`, marks);
      if (isBad(p)) return p;
      if (p !== THINKING) parts.push(p);
    }
    content = simplify(parts);
  } else if (c !== undefined) return bad(`${at}.content`, 'must be a string or an array of blocks');
  const msg: ChatMessage = { role: 'tool', tool_call_id: b.tool_use_id, content };
  if (typeof b.is_error === 'boolean') { msg.is_error = b.is_error; marks.on = true; }
  const cc = cacheOf(b);
  if (cc !== undefined) { msg.cache_control = cc; marks.on = true; }
  return msg;
}

function convertMessage(m: unknown, at: string, out: ChatMessage[], marks: Marks): Bad | undefined {
  if (!isObj(m)) return bad(at, 'must be an object');
  const role = m.role;
  if (role !== 'user' && role !== 'assistant') return bad(`${at}.role`, 'must be "user" or "assistant"');
  const c = m.content;
  if (typeof c === 'string') { out.push({ role, content: c }); return undefined; }
  if (!Array.isArray(c)) return bad(`${at}.content`, 'must be a string or an array of content blocks');
  const parts: ContentPart[] = [];
  const calls: ToolCall[] = [];
  let thinking: Obj[] | undefined;
  const seq: BlockKind[] | undefined = role === 'assistant' ? [] : undefined; // kept when thinking is interleaved
  for (let i = 0; i < c.length; i++) {
    const b: unknown = c[i];
    const f = `${at}.content[${i}]`;
    if (!isObj(b) || typeof b.type !== 'string') return bad(f, 'must be a content block with a string "type"');
    if (b.type === 'tool_result') {
      if (role !== 'user') return bad(f, 'tool_result blocks belong in user messages');
      const r = toolResult(b, f, marks);
      if (isBad(r)) return r;
      out.push(r);
    } else if (b.type === 'tool_use') {
      if (role !== 'assistant') return bad(f, 'tool_use blocks belong in assistant messages');
      if (typeof b.id !== 'string' || typeof b.name !== 'string') return bad(f, 'tool_use needs string "id" and "name"');
      const call: ToolCall = { id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } };
      const cc = cacheOf(b);
      if (cc !== undefined) { call.cache_control = cc; marks.on = true; }
      calls.push(call);
      seq?.push('tool');
    } else {
      const p = toPart(b, f, marks);
      if (isBad(p)) return p;
      if (p === THINKING) {
        if (role !== 'assistant') return bad(f, 'thinking blocks belong in assistant messages');
        (thinking ??= []).push(b);
        marks.on = true;
        seq?.push('thinking');
      } else {
        parts.push(p);
        if (p.type === 'text') seq?.push('text');
      }
    }
  }
  if (role === 'assistant') {
    // The text blocks as one string, unless one carries a cache breakpoint (then as they came).
    let text: string | ContentPart[] | null = null;
    let cached = false;
    for (const p of parts) {
      if (p.type !== 'text') continue;
      text = (text ?? '') + (p as TextPart).text;
      if ((p as TextPart).cache_control !== undefined) cached = true;
    }
    const order = thinking !== undefined && seq !== undefined ? interleavedOrder(seq) : undefined;
    if (cached || (order !== undefined && text !== null)) text = parts.filter((p) => p.type === 'text');
    const msg: ChatMessage = { role, content: text };
    if (thinking !== undefined) msg.thinking = thinking;
    if (order !== undefined) msg.order = order;
    if (calls.length > 0) msg.tool_calls = calls;
    if (text !== null || calls.length > 0 || thinking !== undefined) out.push(msg);
  } else if (parts.length > 0) {
    out.push({ role, content: simplify(parts) });
  }
  return undefined;
}

function convertTools(tools: unknown, marks: Marks): ToolDef[] | Bad {
  if (!Array.isArray(tools)) return bad('tools', 'must be an array');
  const out: ToolDef[] = [];
  for (let i = 0; i < tools.length; i++) {
    const t: unknown = tools[i];
    if (!isObj(t) || typeof t.name !== 'string' || t.name === '') return bad(`tools[${i}].name`, 'must be a non-empty string');
    if (t.type !== undefined && t.type !== 'custom') return bad(`tools[${i}].type`, `"${String(t.type)}" (a server tool) is not supported through aam; use a custom tool with input_schema`);
    if (!isObj(t.input_schema)) return bad(`tools[${i}].input_schema`, 'must be a JSON Schema object');
    if (t.description !== undefined && typeof t.description !== 'string') return bad(`tools[${i}].description`, 'must be a string');
    const fn: ToolDef['function'] = { name: t.name, parameters: t.input_schema };
    if (typeof t.description === 'string') fn.description = t.description;
    const def: ToolDef = { type: 'function', function: fn };
    const cc = cacheOf(t);
    if (cc !== undefined) { def.cache_control = cc; marks.on = true; }
    out.push(def);
  }
  return out;
}

/** The system prompt: a string, or its text blocks when one carries a cache breakpoint. */
function systemOf(s: unknown, marks: Marks): string | ContentPart[] | Bad {
  if (typeof s === 'string') return s;
  if (!Array.isArray(s)) return bad('system', 'must be a string or an array of text blocks');
  const parts: ContentPart[] = [];
  for (let i = 0; i < s.length; i++) {
    const b: unknown = s[i];
    if (!isObj(b) || b.type !== 'text' || typeof b.text !== 'string') return bad(`system[${i}]`, 'must be a text block');
    const p = toPart(b, `system[${i}]`, marks);
    if (isBad(p) || p === THINKING) return bad(`system[${i}]`, 'must be a text block');
    parts.push(p);
  }
  // Without a cache breakpoint the blocks are one string, joined as aam always has (portable to every wire).
  if (!parts.some((p) => (p as TextPart).cache_control !== undefined)) return parts.map((p) => (p as TextPart).text).join('\n');
  return parts;
}

export function parseAnthropicRequest(body: unknown): ParseResult<ChatRequest> {
  if (!isObj(body)) return bad('body', 'must be a JSON object');
  const b = body;
  if (typeof b.model !== 'string' || b.model === '') return bad('model', 'is required and must be a non-empty string (a Model route name)');
  if (!Array.isArray(b.messages) || b.messages.length === 0) return bad('messages', 'is required and must be a non-empty array');
  const messages: ChatMessage[] = [];
  const marks: Marks = { on: false };
  if (b.system !== undefined && b.system !== null) {
    const s = systemOf(b.system, marks);
    if (isBad(s)) return s;
    messages.push({ role: 'system', content: s });
  }
  for (let i = 0; i < b.messages.length; i++) {
    const e = convertMessage(b.messages[i], `messages[${i}]`, messages, marks);
    if (e !== undefined) return e;
  }
  const req: ChatRequest = { model: b.model, messages };
  for (const k of ['max_tokens', 'temperature', 'top_p'] as const) {
    const v = b[k];
    if (v === undefined || v === null) continue;
    if (!isNum(v)) return bad(k, 'must be a number');
    req[k] = v;
  }
  if (b.stream !== undefined && b.stream !== null) {
    if (typeof b.stream !== 'boolean') return bad('stream', 'must be a boolean');
    req.stream = b.stream;
    // Anthropic clients always receive usage in streams.
    if (b.stream) req.stream_options = { include_usage: true };
  }
  if (b.stop_sequences !== undefined && b.stop_sequences !== null) {
    const s = b.stop_sequences;
    if (!Array.isArray(s) || !s.every((x) => typeof x === 'string')) return bad('stop_sequences', 'must be an array of strings');
    req.stop = s as string[];
  }
  if (b.tools !== undefined && b.tools !== null) {
    const t = convertTools(b.tools, marks);
    if (isBad(t)) return t;
    req.tools = t;
  }
  const tc = b.tool_choice;
  if (tc !== undefined && tc !== null) {
    if (!isObj(tc)) return bad('tool_choice', 'must be an object');
    if (tc.type === 'auto') req.tool_choice = 'auto';
    else if (tc.type === 'any') req.tool_choice = 'required';
    else if (tc.type === 'none') req.tool_choice = 'none';
    else if (tc.type === 'tool' && typeof tc.name === 'string') req.tool_choice = { type: 'function', function: { name: tc.name } };
    else return bad('tool_choice', 'must be {type:"auto"|"any"|"none"} or {type:"tool",name}');
    if (tc.disable_parallel_tool_use === true) req.parallel_tool_calls = false;
  }
  const meta = b.metadata;
  if (isObj(meta) && typeof meta.user_id === 'string') req.user = meta.user_id;
  // Structured output: other wires get it as OpenAI's json_schema (Anthropic's gets output_config as sent).
  const format = isObj(b.output_config) ? b.output_config.format : undefined;
  if (isObj(format) && format.type === 'json_schema' && isObj(format.schema)) req.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: format.schema } };
  let extra: Obj | undefined;
  for (const k in b) {
    if (KNOWN.has(k)) continue;
    (extra ??= {})[k] = b[k];
  }
  if (extra !== undefined) req.anthropicExtra = extra;
  if (marks.on) req.anthropicMarks = true;
  if (marks.parts === true) req.otherParts = true;
  return { ok: true, req };
}
