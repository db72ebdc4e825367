// Validation of client Anthropic Messages requests into the canonical (OpenAI-shaped) request.
// tool_result blocks become tool messages placed before the rest of the user turn, as OpenAI needs.
import type { ChatMessage, ChatRequest, ContentPart, ToolCall, ToolDef } from './types.ts';

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


/** Anthropic block -> canonical part; undefined for blocks with no canonical form (thinking). */
function toPart(b: Obj, at: string): ContentPart | Bad | undefined {
  if (b.type === 'text') return typeof b.text === 'string' ? { type: 'text', text: b.text } : bad(`${at}.text`, 'must be a string');
  if (b.type === 'image') {
    const src = b.source;
    if (isObj(src) && src.type === 'base64' && typeof src.media_type === 'string' && typeof src.data === 'string') {
      return { type: 'image_url', image_url: { url: `data:${src.media_type};base64,${src.data}` } };
    }
    if (isObj(src) && src.type === 'url' && typeof src.url === 'string') return { type: 'image_url', image_url: { url: src.url } };
    return bad(`${at}.source`, 'must be {type:"base64",media_type,data} or {type:"url",url}');
  }
  if (b.type === 'thinking' || b.type === 'redacted_thinking') return undefined;
  return b as ContentPart; // document and other native blocks pass through for Anthropic upstreams
}

function isBad(v: unknown): v is Bad {
  return isObj(v) && v.ok === false;
}

/** One text part collapses to a plain string, the common and most portable form. */
function simplify(parts: ContentPart[]): string | ContentPart[] {
  return parts.length === 1 && parts[0].type === 'text' ? (parts[0] as { text: string }).text : parts;
}

function toolResult(b: Obj, at: string): ChatMessage | Bad {
  if (typeof b.tool_use_id !== 'string') return bad(`${at}.tool_use_id`, 'must be a string');
  const c = b.content;
  let content: string | ContentPart[] = '';
  if (typeof c === 'string') content = c;
  else if (Array.isArray(c)) {
    const parts: ContentPart[] = [];
    for (let i = 0; i < c.length; i++) {
      const x: unknown = c[i];
      if (!isObj(x) || typeof x.type !== 'string') return bad(`${at}.content[${i}]`, 'must be a content block');
      const p = toPart(x, `${at}.content[${i}]`);
      if (isBad(p)) return p;
      if (p !== undefined) parts.push(p);
    }
    content = simplify(parts);
  } else if (c !== undefined) return bad(`${at}.content`, 'must be a string or an array of blocks');
  return { role: 'tool', tool_call_id: b.tool_use_id, content };
}

function convertMessage(m: unknown, at: string, out: ChatMessage[]): Bad | undefined {
  if (!isObj(m)) return bad(at, 'must be an object');
  const role = m.role;
  if (role !== 'user' && role !== 'assistant') return bad(`${at}.role`, 'must be "user" or "assistant"');
  const c = m.content;
  if (typeof c === 'string') { out.push({ role, content: c }); return undefined; }
  if (!Array.isArray(c)) return bad(`${at}.content`, 'must be a string or an array of content blocks');
  const parts: ContentPart[] = [];
  const calls: ToolCall[] = [];
  for (let i = 0; i < c.length; i++) {
    const b: unknown = c[i];
    const f = `${at}.content[${i}]`;
    if (!isObj(b) || typeof b.type !== 'string') return bad(f, 'must be a content block with a string "type"');
    if (b.type === 'tool_result') {
      if (role !== 'user') return bad(f, 'tool_result blocks belong in user messages');
      const r = toolResult(b, f);
      if (isBad(r)) return r;
      out.push(r);
    } else if (b.type === 'tool_use') {
      if (role !== 'assistant') return bad(f, 'tool_use blocks belong in assistant messages');
      if (typeof b.id !== 'string' || typeof b.name !== 'string') return bad(f, 'tool_use needs string "id" and "name"');
      calls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
    } else {
      const p = toPart(b, f);
      if (isBad(p)) return p;
      if (p !== undefined) parts.push(p);
    }
  }
  if (role === 'assistant') {
    let text: string | null = null;
    for (const p of parts) if (p.type === 'text') text = (text ?? '') + (p as { text: string }).text;
    const msg: ChatMessage = { role, content: text };
    if (calls.length > 0) msg.tool_calls = calls;
    if (text !== null || calls.length > 0) out.push(msg);
  } else if (parts.length > 0) {
    out.push({ role, content: simplify(parts) });
  }
  return undefined;
}

function convertTools(tools: unknown): ToolDef[] | Bad {
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
    out.push({ type: 'function', function: fn });
  }
  return out;
}

function systemOf(s: unknown): string | Bad {
  if (typeof s === 'string') return s;
  if (!Array.isArray(s)) return bad('system', 'must be a string or an array of text blocks');
  let text = '';
  for (let i = 0; i < s.length; i++) {
    const b: unknown = s[i];
    if (!isObj(b) || b.type !== 'text' || typeof b.text !== 'string') return bad(`system[${i}]`, 'must be a text block');
    text += (i > 0 ? '\n' : '') + b.text;
  }
  return text;
}

export function parseAnthropicRequest(body: unknown): ParseResult<ChatRequest> {
  if (!isObj(body)) return bad('body', 'must be a JSON object');
  const b = body;
  if (typeof b.model !== 'string' || b.model === '') return bad('model', 'is required and must be a non-empty string (a Model route name)');
  if (!Array.isArray(b.messages) || b.messages.length === 0) return bad('messages', 'is required and must be a non-empty array');
  const messages: ChatMessage[] = [];
  if (b.system !== undefined && b.system !== null) {
    const s = systemOf(b.system);
    if (isBad(s)) return s;
    messages.push({ role: 'system', content: s });
  }
  for (let i = 0; i < b.messages.length; i++) {
    const e = convertMessage(b.messages[i], `messages[${i}]`, messages);
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
    const t = convertTools(b.tools);
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
  let extra: Obj | undefined;
  for (const k in b) {
    if (KNOWN.has(k)) continue;
    (extra ??= {})[k] = b[k];
  }
  if (extra !== undefined) req.anthropicExtra = extra;
  return { ok: true, req };
}
