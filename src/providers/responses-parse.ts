// OpenAI Responses API, request side: a /v1/responses body -> the canonical chat request plus the
// Responses state aam keeps itself (input items, previous_response_id, store). Items are
// validated here (the first bad field is named); `item_reference` items are left for the gateway
// to resolve from its store, then `itemsToMessages` turns the whole conversation into canonical
// chat messages. Pure: no I/O, no policy.
import type { ChatMessage, ChatRequest, ContentPart, ImagePart, Json, TextPart, ToolCall, ToolChoice, ToolDef } from './types.ts';
import type { Obj } from './util.ts';
import type { ParseResult } from './openai-parse.ts';
import { isNum, isObj } from '../lib/json.ts';
import { thinkingOf } from './responses-codec.ts';

/** One validated Responses item (message, function_call, function_call_output, item_reference). */
export type ResponseItem = Obj & { type: string };

export interface ResponsesRequest {
  /** Canonical request; `messages` holds only the instructions until the gateway adds the conversation. */
  chat: ChatRequest;
  instructions: string | null;
  /** This request's input items, in order (item_reference not yet resolved). */
  input: ResponseItem[];
  previousResponseId: string | null;
  store: boolean;
  /** Request fields the Response object echoes back (tools, tool_choice, text, metadata...). */
  echo: Obj;
}

type Bad = { ok: false; field: string; message: string };
const bad = (field: string, message: string): Bad => ({ ok: false, field, message });
const isBad = (v: unknown): v is Bad => isObj(v) && v.ok === false;
const given = (v: unknown): boolean => v !== undefined && v !== null;

// Fields with no meaning on a translated path (truncation, stream_options, ...) are accepted and
// not forwarded. `include` and `top_logprobs` are mapped (includes) or refused, never dropped.
/** OpenAI fields chat completions knows too: forwarded to OpenAI-wire upstreams. */
const FORWARDED = ['service_tier', 'safety_identifier', 'prompt_cache_key'] as const;
const UNSUPPORTED: Readonly<Record<string, string>> = {
  background: 'background responses are not supported through aam; send the request without it and keep the connection (or stream)',
  conversation: 'conversations are not supported through aam; chain responses with previous_response_id instead',
  prompt: 'stored prompt templates are not supported through aam; send instructions and input instead',
};

/**
 * `include` values and what aam does with them: the output text's logprobs are chat's logprobs
 * (carried to the targets that return them, refused by the others: providers/params.ts);
 * encrypted reasoning asks OpenAI's Responses API for its reasoning items (other targets answer
 * none, as a model that does not reason answers on OpenAI: agents such as Codex always ask); the
 * outputs of tools OpenAI runs itself cannot occur (such tools are refused): nothing to include.
 */
const LOGPROBS_INCLUDE = 'message.output_text.logprobs';
const REASONING_INCLUDE = 'reasoning.encrypted_content';
const NOTHING_TO_INCLUDE = new Set(['file_search_call.results', 'web_search_call.results', 'web_search_call.action.sources', 'code_interpreter_call.outputs', 'computer_call_output.output.image_url', 'message.input_image.image_url']);

/** The request's `include` and `top_logprobs` as chat's logprobs fields (extra) and the reasoning items asked (chat), or the first bad field. */
function includes(b: Obj, extra: Obj, chat: ChatRequest): Bad | undefined {
  let logprobs = false;
  if (given(b.include)) {
    if (!Array.isArray(b.include)) return bad('include', 'must be an array of strings');
    for (let i = 0; i < b.include.length; i++) {
      const v: unknown = b.include[i];
      if (v === LOGPROBS_INCLUDE) logprobs = true;
      else if (v === REASONING_INCLUDE) chat.reasoningItems = true;
      else if (typeof v !== 'string' || !NOTHING_TO_INCLUDE.has(v)) return bad(`include[${i}]`, `${JSON.stringify(v)} is not an include aam can honour; use "${LOGPROBS_INCLUDE}"`);
    }
  }
  if (given(b.top_logprobs)) {
    const n = b.top_logprobs;
    if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > 20) return bad('top_logprobs', 'must be an integer from 0 to 20');
    if (logprobs) extra.top_logprobs = n;
  }
  if (logprobs) extra.logprobs = true;
  return undefined;
}

const ROLES = new Set(['user', 'system', 'developer', 'assistant']);
const INPUT_PARTS = new Set(['input_text', 'input_image', 'input_file', 'input_audio']);
const OUTPUT_PARTS = new Set(['output_text', 'refusal']);

function checkPart(p: unknown, at: string, assistant: boolean): Bad | undefined {
  if (!isObj(p) || typeof p.type !== 'string') return bad(at, 'must be a content part with a string "type"');
  const allowed = assistant ? OUTPUT_PARTS : INPUT_PARTS;
  // An assistant turn replayed from an earlier answer may carry input_text too; be lenient there.
  if (!allowed.has(p.type) && !(assistant && p.type === 'input_text')) {
    return bad(`${at}.type`, `"${p.type}" is not a content part of a${assistant ? 'n assistant' : ' user/system/developer'} message; use ${[...allowed].join(', ')}`);
  }
  if ((p.type === 'input_text' || p.type === 'output_text') && typeof p.text !== 'string') return bad(`${at}.text`, 'must be a string');
  if (p.type === 'refusal' && typeof p.refusal !== 'string') return bad(`${at}.refusal`, 'must be a string');
  if (p.type === 'input_image' && typeof p.image_url !== 'string') {
    return bad(`${at}.image_url`, given(p.file_id) ? 'file ids are not supported through aam; send the image as a URL or a data: URL' : 'must be a string (a URL or a data: URL)');
  }
  if (p.type === 'input_file' && typeof p.file_data !== 'string' && typeof p.file_id !== 'string' && typeof p.file_url !== 'string') {
    return bad(at, 'an input_file needs file_data (a data: URL or base64), file_url or file_id');
  }
  if (p.type === 'input_audio' && !(isObj(p.input_audio) && typeof p.input_audio.data === 'string')) return bad(`${at}.input_audio.data`, 'must be a base64 string');
  return undefined;
}

function checkMessage(m: Obj, at: string): Bad | undefined {
  if (typeof m.role !== 'string' || !ROLES.has(m.role)) return bad(`${at}.role`, 'must be one of user, system, developer, assistant');
  const c = m.content;
  if (typeof c === 'string') return undefined;
  if (!Array.isArray(c)) return bad(`${at}.content`, 'must be a string or an array of content parts');
  for (let i = 0; i < c.length; i++) {
    const e = checkPart(c[i], `${at}.content[${i}]`, m.role === 'assistant');
    if (e) return e;
  }
  return undefined;
}

/** Validate one input item; returns it normalized (type filled in) or the first bad field. */
function checkItem(it: unknown, at: string): ResponseItem | Bad | null {
  if (!isObj(it)) return bad(at, 'must be an object (an input item)');
  const type = it.type ?? 'message';
  switch (type) {
    case 'message': {
      const e = checkMessage(it, at);
      return e ?? { ...it, type: 'message' };
    }
    case 'function_call':
      if (typeof it.call_id !== 'string' || it.call_id === '') return bad(`${at}.call_id`, 'must be a non-empty string');
      if (typeof it.name !== 'string' || it.name === '') return bad(`${at}.name`, 'must be a non-empty string');
      if (typeof it.arguments !== 'string') return bad(`${at}.arguments`, 'must be a JSON string');
      return it as ResponseItem;
    case 'function_call_output': {
      if (typeof it.call_id !== 'string' || it.call_id === '') return bad(`${at}.call_id`, 'must be a non-empty string (the call_id of the function_call it answers)');
      const o = it.output;
      if (typeof o === 'string') return it as ResponseItem;
      if (!Array.isArray(o)) return bad(`${at}.output`, 'must be a string or an array of content parts');
      for (let i = 0; i < o.length; i++) {
        const e = checkPart(o[i], `${at}.output[${i}]`, false);
        if (e) return e;
      }
      return it as ResponseItem;
    }
    case 'item_reference':
      if (typeof it.id !== 'string' || it.id === '') return bad(`${at}.id`, 'must be the id of an item of a stored response');
      return it as ResponseItem;
    case 'reasoning':
      // Reasoning sent back for a stateless turn: OpenAI's (to OpenAI's Responses API only, params.ts), or
      // an Anthropic thinking block aam answered as one (its signature as encrypted_content).
      if (typeof it.encrypted_content !== 'string') return null; // without it no model can use it (store: false): nothing to carry
      return it as ResponseItem;
    default:
      return bad(`${at}.type`, `"${String(type)}" items are not supported through aam; use message, function_call, function_call_output or item_reference`);
  }
}

function parseInput(input: unknown): ResponseItem[] | Bad {
  if (typeof input === 'string') return [{ type: 'message', role: 'user', content: input }];
  if (!Array.isArray(input)) return bad('input', 'must be a string or an array of input items');
  const out: ResponseItem[] = [];
  for (let i = 0; i < input.length; i++) {
    const r = checkItem(input[i], `input[${i}]`);
    if (isBad(r)) return r;
    if (r !== null) out.push(r);
  }
  return out;
}

function parseTools(tools: unknown): ToolDef[] | Bad {
  if (!Array.isArray(tools)) return bad('tools', 'must be an array');
  const out: ToolDef[] = [];
  for (let i = 0; i < tools.length; i++) {
    const t: unknown = tools[i];
    if (!isObj(t)) return bad(`tools[${i}]`, 'must be an object');
    if (t.type !== 'function') {
      return bad(`tools[${i}].type`, `"${String(t.type)}" is a tool OpenAI runs itself, which aam cannot offer over every provider; declare a function tool ({type:"function",name,parameters}) and run it in the agent`);
    }
    if (typeof t.name !== 'string' || t.name === '') return bad(`tools[${i}].name`, 'must be a non-empty string');
    if (given(t.description) && typeof t.description !== 'string') return bad(`tools[${i}].description`, 'must be a string');
    if (given(t.parameters) && !isObj(t.parameters)) return bad(`tools[${i}].parameters`, 'must be a JSON Schema object');
    const fn: ToolDef['function'] = { name: t.name };
    if (typeof t.description === 'string') fn.description = t.description;
    if (isObj(t.parameters)) fn.parameters = t.parameters;
    if (typeof t.strict === 'boolean') fn.strict = t.strict;
    // LiteLLM's form of an Anthropic cache breakpoint on a tool definition.
    out.push(isObj(t.cache_control) ? { type: 'function', function: fn, cache_control: t.cache_control } : { type: 'function', function: fn });
  }
  return out;
}

function parseToolChoice(v: unknown): ToolChoice | Bad {
  if (v === 'auto' || v === 'none' || v === 'required') return v;
  if (isObj(v) && v.type === 'function' && typeof v.name === 'string') return { type: 'function', function: { name: v.name } };
  return bad('tool_choice', 'must be "auto", "none", "required" or {"type":"function","name":...}');
}

/** text.format -> chat response_format (json_schema nests its schema one level deeper there). */
function responseFormat(text: unknown): Obj | Bad | undefined {
  if (!given(text)) return undefined;
  if (!isObj(text)) return bad('text', 'must be an object');
  const f = text.format;
  if (!given(f)) return undefined;
  if (!isObj(f)) return bad('text.format', 'must be an object');
  if (f.type === 'text') return undefined;
  if (f.type === 'json_object') return { type: 'json_object' };
  if (f.type === 'json_schema') {
    if (typeof f.name !== 'string' || !isObj(f.schema)) return bad('text.format', 'a json_schema format needs a string "name" and a "schema" object');
    const js: Obj = { name: f.name, schema: f.schema };
    if (typeof f.strict === 'boolean') js.strict = f.strict;
    if (typeof f.description === 'string') js.description = f.description;
    return { type: 'json_schema', json_schema: js };
  }
  return bad('text.format.type', 'must be "text", "json_object" or "json_schema"');
}

export function parseResponsesRequest(body: unknown): ParseResult<ResponsesRequest> {
  if (!isObj(body)) return bad('body', 'must be a JSON object');
  const b = body;
  for (const k in UNSUPPORTED) if (given(b[k]) && b[k] !== false) return bad(k, UNSUPPORTED[k]);
  if (typeof b.model !== 'string' || b.model === '') return bad('model', 'is required and must be a non-empty string (a Model route name)');
  let previousResponseId: string | null = null;
  if (given(b.previous_response_id)) {
    if (typeof b.previous_response_id !== 'string' || b.previous_response_id === '') return bad('previous_response_id', 'must be the id of a stored response');
    previousResponseId = b.previous_response_id;
  }
  if (!given(b.input) && previousResponseId === null) return bad('input', 'is required: a string or an array of input items');
  const input = given(b.input) ? parseInput(b.input) : [];
  if (isBad(input)) return input;
  let instructions: string | null = null;
  if (given(b.instructions)) {
    if (typeof b.instructions !== 'string') return bad('instructions', 'must be a string');
    instructions = b.instructions;
  }
  const chat: ChatRequest = { model: b.model, messages: [], stream_options: { include_usage: true } };
  const echo: Obj = {};
  for (const k of ['stream', 'store', 'parallel_tool_calls'] as const) {
    if (given(b[k]) && typeof b[k] !== 'boolean') return bad(k, 'must be a boolean');
  }
  if (b.stream === true) chat.stream = true;
  if (typeof b.parallel_tool_calls === 'boolean') { chat.parallel_tool_calls = b.parallel_tool_calls; echo.parallel_tool_calls = b.parallel_tool_calls; }
  for (const k of ['temperature', 'top_p'] as const) {
    if (!given(b[k])) continue;
    if (!isNum(b[k])) return bad(k, 'must be a number');
    chat[k] = b[k];
    echo[k] = b[k];
  }
  if (given(b.max_output_tokens)) {
    if (!Number.isInteger(b.max_output_tokens) || (b.max_output_tokens as number) <= 0) return bad('max_output_tokens', 'must be a positive integer');
    chat.max_completion_tokens = b.max_output_tokens as number;
    echo.max_output_tokens = b.max_output_tokens;
  }
  if (given(b.tools)) {
    const t = parseTools(b.tools);
    if (isBad(t)) return t;
    if (t.length > 0) chat.tools = t;
    if (t.some((d) => d.cache_control !== undefined)) chat.anthropicMarks = true;
    echo.tools = b.tools;
  }
  if (given(b.tool_choice)) {
    const tc = parseToolChoice(b.tool_choice);
    if (isBad(tc)) return tc;
    chat.tool_choice = tc;
    echo.tool_choice = b.tool_choice;
  }
  const rf = responseFormat(b.text);
  if (isBad(rf)) return rf;
  if (rf !== undefined) chat.response_format = rf;
  if (given(b.text)) echo.text = b.text;
  if (given(b.metadata)) {
    if (!isObj(b.metadata) || !Object.values(b.metadata).every((v) => typeof v === 'string')) return bad('metadata', 'must be an object of string values');
    echo.metadata = b.metadata;
  }
  if (given(b.user)) {
    if (typeof b.user !== 'string') return bad('user', 'must be a string');
    chat.user = b.user;
    echo.user = b.user;
  }
  let extra: Obj | undefined;
  if (given(b.reasoning)) {
    if (!isObj(b.reasoning)) return bad('reasoning', 'must be an object');
    echo.reasoning = b.reasoning;
    if (typeof b.reasoning.effort === 'string') (extra ??= {}).reasoning_effort = b.reasoning.effort;
  }
  for (const k of FORWARDED) if (given(b[k])) (extra ??= {})[k] = b[k];
  if (given(b.include) || given(b.top_logprobs)) {
    const e = includes(b, extra ??= {}, chat);
    if (e) return e;
    if (Object.keys(extra).length === 0) extra = undefined;
  }
  if (extra !== undefined) chat.extra = extra;
  // Other fields (newer API additions, IGNORED ones) are not forwarded: a chat upstream would refuse them.
  return { ok: true, req: { chat, instructions, input, previousResponseId, store: b.store !== false, echo } };
}

// ---- items -> canonical messages ----

/** Whether the conversation holds an Anthropic cache breakpoint (ChatRequest.anthropicMarks), a file or audio part (otherParts). */
export interface Marks { on: boolean; parts?: boolean }

function partOf(p: Obj, marks: Marks): ContentPart | null {
  switch (p.type) {
    case 'input_text': case 'output_text': {
      const part: TextPart = { type: 'text', text: p.text as string };
      if (isObj(p.cache_control)) { part.cache_control = p.cache_control; marks.on = true; }
      return part;
    }
    case 'refusal': return { type: 'text', text: p.refusal as string };
    case 'input_image': {
      const image_url: { url: string; detail?: string } = { url: p.image_url as string };
      if (typeof p.detail === 'string' && p.detail !== 'auto') image_url.detail = p.detail;
      const part: ImagePart = { type: 'image_url', image_url };
      if (isObj(p.cache_control)) { part.cache_control = p.cache_control; marks.on = true; }
      return part;
    }
    case 'input_file': {
      marks.parts = true;
      const file: Obj = {};
      for (const k of ['file_data', 'file_id', 'filename', 'file_url']) if (typeof p[k] === 'string') file[k] = p[k];
      return { type: 'file', file };
    }
    case 'input_audio': marks.parts = true; return { type: 'input_audio', input_audio: p.input_audio };
    default: return null;
  }
}

/** One text part (without a cache breakpoint) collapses to a plain string, the most portable form. */
function contentOf(c: unknown, marks: Marks): string | ContentPart[] {
  if (typeof c === 'string') return c;
  const parts: ContentPart[] = [];
  for (const p of c as Obj[]) {
    const part = partOf(p, marks);
    if (part !== null) parts.push(part);
  }
  return parts.length === 1 && parts[0].type === 'text' && (parts[0] as TextPart).cache_control === undefined ? (parts[0] as TextPart).text : parts;
}

/** A message's or function_call_output's own cache breakpoint (LiteLLM's form), onto its canonical message. */
function withCache(m: ChatMessage, it: ResponseItem, marks: Marks): ChatMessage {
  if (isObj(it.cache_control)) { m.cache_control = it.cache_control; marks.on = true; }
  return m;
}

/** A reasoning item's summary texts, in order. */
function summaryTexts(it: Obj): string[] {
  const out: string[] = [];
  if (Array.isArray(it.summary)) for (const p of it.summary) if (isObj(p) && typeof p.text === 'string') out.push(p.text);
  return out;
}

function textOf(c: unknown): string {
  if (typeof c === 'string') return c;
  let s = '';
  for (const p of c as Obj[]) if (typeof p.text === 'string') s += p.text; else if (typeof p.refusal === 'string') s += p.refusal;
  return s;
}

/**
 * Validated, resolved items (no item_reference left) -> canonical chat messages. An assistant
 * message and the function calls that follow it are one assistant turn (as chat wires want them).
 */
export function itemsToMessages(instructions: string | null, items: readonly ResponseItem[], marks: Marks = { on: false }): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (instructions !== null && instructions !== '') out.push({ role: 'system', content: instructions });
  let turn: ChatMessage | null = null; // the assistant turn function calls still join
  let reasoned: ChatMessage | null = null; // a turn of reasoning items only, so far: its text and calls join it
  for (const it of items) {
    if (it.type === 'reasoning') {
      if (reasoned === null) { reasoned = { role: 'assistant', content: null }; out.push(reasoned); turn = reasoned; }
      // An Anthropic thinking block aam answered as this item goes back as that block (to Anthropic
      // and Bedrock only: anthropicMarks); OpenAI's own item to OpenAI's Responses API only (params.ts).
      const th = thinkingOf(it.encrypted_content as string, summaryTexts(it));
      if (th !== null) { (reasoned.thinking ??= []).push(th); marks.on = true; } else { (reasoned.reasoning ??= []).push(it as Json); marks.parts = true; }
      continue;
    }
    const joined = reasoned;
    reasoned = null;
    if (it.type === 'function_call') {
      const call: ToolCall = { id: it.call_id as string, type: 'function', function: { name: it.name as string, arguments: it.arguments as string } };
      if (turn === null) { turn = { role: 'assistant', content: null, tool_calls: [] }; out.push(turn); }
      (turn.tool_calls ??= []).push(call);
      continue;
    }
    turn = null;
    if (it.type === 'function_call_output') {
      out.push(withCache({ role: 'tool', tool_call_id: it.call_id as string, content: contentOf(it.output, marks) }, it, marks));
    } else if (it.type === 'message') {
      if (it.role === 'assistant') {
        if (joined !== null) { joined.content = textOf(it.content); turn = joined; continue; }
        turn = { role: 'assistant', content: textOf(it.content) };
        out.push(turn);
      } else {
        out.push(withCache({ role: it.role as ChatMessage['role'], content: contentOf(it.content, marks) }, it, marks));
      }
    }
  }
  return out;
}
