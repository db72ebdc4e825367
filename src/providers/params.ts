// Which request fields that change the answer each upstream wire carries (the README's table).
// A field a target's wire would drop is never dropped silently: the gateway serves the request
// only from targets that carry it, and answers 400 naming the field when none does.
import type { ChatRequest, ContentPart, ProviderAdapter } from './types.ts';
import { anthropicDocument, anthropicTakesFormat } from './anthropic.ts';
import { geminiAudio, geminiFile } from './gemini.ts';
import { bedrockDocument, isClaude } from './bedrock.ts';
import { claudeThinking, effortThinking, thinkingStyle, DEFAULT_MAX_TOKENS } from './claude-effort.ts';
import { isObj } from '../lib/json.ts';

type Wire = ProviderAdapter['wire'];

/** OpenAI chat fields (ChatRequest.extra) and the wires that carry them; any other extra field is delivery or bookkeeping. */
const EXTRA: Readonly<Record<string, readonly Wire[]>> = {
  seed: ['openai', 'gemini'],
  frequency_penalty: ['openai', 'gemini'],
  presence_penalty: ['openai', 'gemini'],
  logit_bias: ['openai'],
  prediction: ['openai'],
  modalities: ['openai'],
  audio: ['openai'],
  web_search_options: ['openai'],
  // Claude's thinking on Anthropic and Bedrock (claude-effort.ts; claudeUncarried below says when not).
  reasoning_effort: ['openai', 'openai-responses', 'anthropic', 'bedrock'],
};

/** Anthropic fields (ChatRequest.anthropicExtra) that change the answer; `thinking` is left to the model (others think their own way). */
const ANTHROPIC_EXTRA: Readonly<Record<string, readonly Wire[]>> = {
  top_k: ['anthropic', 'bedrock'],
};

/**
 * Why `wire` has no form for content part `p` (neither text nor image_url), or null when it has
 * one. OpenAI wires take the parts as written (a Responses upstream a file as input_file); an
 * Anthropic client's own blocks (document, ...) go to Anthropic as sent.
 */
function partUncarried(p: ContentPart, wire: Wire): string | null {
  if (wire === 'openai' || wire === 'openai-responses') return null;
  if (p.type === 'file') {
    if (wire === 'anthropic' && anthropicDocument(p) !== null) return null;
    if (wire === 'gemini' && geminiFile(p) !== null) return null;
    if (wire === 'bedrock' && bedrockDocument(p) !== null) return null;
    if (wire === 'bedrock') return 'a file part: bedrock upstreams take file_data (a data: URL, or base64 with a filename) of a pdf, csv, doc, docx, xls, xlsx, html, txt or md document, not a file_url or an OpenAI file_id';
    return `a file part: ${wire} upstreams take file_data (a data: URL, or base64 with a filename saying its type${wire === 'anthropic' ? ': a PDF or text' : ''}) or a file_url, not an OpenAI file_id`;
  }
  if (p.type === 'input_audio') return wire === 'gemini' && geminiAudio(p) !== null ? null : `an input_audio part: ${wire} upstreams take no audio input`;
  return wire === 'anthropic' ? null : `a ${p.type} part: ${wire} upstreams have no form for it`;
}

/** Why a reasoning effort cannot become Claude's thinking on this target (a model that is not Claude on Bedrock, a max_tokens too small), or null. */
function effortUncarried(req: ChatRequest, effort: unknown, wire: Wire, model: string, options?: Readonly<Record<string, string>>): string | null {
  if (wire === 'bedrock' && !isClaude(model)) return `reasoning_effort: ${model || 'this'} model on Bedrock has no such parameter (Claude models map it to thinking)`;
  if (typeof effort !== 'string') return 'reasoning_effort: must be a string (none, minimal, low, medium, high or xhigh)';
  if (req.anthropicExtra?.thinking !== undefined) return null; // the client's own thinking wins
  const t = claudeThinking(effort, model, req.max_completion_tokens ?? req.max_tokens, thinkingStyle(model, options));
  return typeof t === 'string' ? t : null;
}

/**
 * The first answer-changing field of `req` that an upstream of `wire` (model `model`) would not carry, with why;
 * null when it carries them all. Logprobs go in streams too: the stream's scrubber relays a text's
 * tokens only when they spell the text it lets out (access/scrub-events.ts).
 */
export function uncarried(req: ChatRequest, wire: Wire, model = '', options?: Readonly<Record<string, string>>): string | null {
  const x = req.extra;
  if (x !== undefined) {
    if (x.reasoning_effort !== undefined && x.reasoning_effort !== null && (wire === 'anthropic' || wire === 'bedrock')) {
      const why = effortUncarried(req, x.reasoning_effort, wire, model, options);
      if (why !== null) return why;
    }
    if (x.logprobs === true || (x.top_logprobs !== undefined && x.top_logprobs !== null)) {
      const f = x.logprobs === true ? 'logprobs' : 'top_logprobs';
      if (wire !== 'openai' && wire !== 'openai-responses') return `${f}: a ${wire} upstream returns no logprobs`;
    }
    for (const k in x) {
      const wires = EXTRA[k];
      if (wires !== undefined && x[k] !== null && !wires.includes(wire)) return `${k}: a ${wire} upstream has no such parameter`;
    }
  }
  if (req.otherParts === true) {
    for (let i = 0; i < req.messages.length; i++) {
      // OpenAI's encrypted reasoning is OpenAI's to read: no other model (nor OpenAI's chat API) can use it.
      if (req.messages[i].reasoning !== undefined && wire !== 'openai-responses') {
        return `messages[${i}].reasoning: a Responses reasoning item (encrypted_content) goes to OpenAI's Responses API only; a ${wire} upstream cannot read it (send the conversation without it)`;
      }
      const c = req.messages[i].content;
      if (!Array.isArray(c)) continue;
      for (let j = 0; j < c.length; j++) {
        if (c[j].type === 'text' || c[j].type === 'image_url') continue;
        // Converse takes documents in user turns only (a tool result, system or assistant text would drop it).
        const why = wire === 'bedrock' && c[j].type === 'file' && req.messages[i].role !== 'user'
          ? `a file part in a ${req.messages[i].role} message: bedrock upstreams take documents in user messages only`
          : partUncarried(c[j], wire);
        if (why !== null) return `messages[${i}].content[${j}]: ${why}`;
      }
    }
  }
  const ax = req.anthropicExtra;
  if (ax !== undefined) {
    for (const k in ax) {
      const wires = ANTHROPIC_EXTRA[k];
      if (wires !== undefined && !wires.includes(wire)) return `${k}: a ${wire} upstream has no such parameter`;
    }
  }
  const rf = req.response_format;
  if (rf !== undefined && rf.type !== 'text') {
    if (wire === 'bedrock') return `response_format: ${String(rf.type)} has no Bedrock Converse form`;
    // An Anthropic client's own output_config goes to Anthropic as it sent it.
    if (wire === 'anthropic' && !isObj(req.anthropicExtra?.output_config)) {
      if (rf.type !== 'json_schema') return `response_format: ${String(rf.type)} has no Anthropic form (use json_schema)`;
      if (!anthropicTakesFormat(rf)) return 'response_format: Anthropic has no form for this json_schema (an object whose additionalProperties is a schema, or nesting deeper than 64)';
    }
  }
  return null;
}

/**
 * What an OpenAI (chat, Responses) or Gemini upstream may answer when the client set no limit (aam
 * then sends none, and the model's own output limit holds), by model family, from OpenAI's and
 * Google's model pages (2026): gpt-5 128,000; o1/o3/o4 100,000; gpt-4.1 32,768; gpt-4o 16,384;
 * Gemini 2.5 and 3 65,536 (thinking counts toward it); Gemini 2.0 and 1.5 8,192. Checked in order.
 */
const OUTPUT_LIMITS: ReadonlyArray<readonly [RegExp, number]> = [
  [/(?:^|\/)gpt-5/, 128_000],
  [/(?:^|\/)o[134](?:-|$)/, 100_000],
  [/(?:^|\/)gpt-4\.1/, 32_768],
  [/(?:^|\/)(?:chatgpt-)?gpt-4o/, 16_384],
  [/(?:^|\/)gemini-(?:2\.5|3)/, 65_536],
  [/(?:^|\/)gemini-(?:2\.0|1\.5)/, 8_192],
];

/**
 * The limit a `wire` upstream answers within when the client set none: what aam sends Anthropic
 * (4,096; Bedrock the same), the model's own output limit on an OpenAI or Gemini wire (a model
 * not listed above: 4,096, a guess: a client's max_tokens bounds what is reserved).
 */
export function unsetMaxTokens(wire: Wire, model: string): number {
  if (wire === 'openai' || wire === 'openai-responses' || wire === 'gemini') {
    for (const [re, n] of OUTPUT_LIMITS) if (re.test(model)) return n;
  }
  return DEFAULT_MAX_TOKENS;
}

/**
 * The output limit a `wire` upstream (model `model`) is asked for: the client's max_tokens (or
 * max_completion_tokens; when it set none, unsetMaxTokens), raised when aam adds Claude
 * thinking for a reasoning effort (claude-effort.ts). A budget reserves this, not the client's own limit.
 */
export function sentMaxTokens(req: ChatRequest, wire: Wire, model: string, options?: Readonly<Record<string, string>>): number {
  if (wire === 'anthropic' || (wire === 'bedrock' && isClaude(model))) {
    const t = effortThinking(req, model, options);
    if (t !== null) return t.maxTokens;
  }
  return req.max_completion_tokens ?? req.max_tokens ?? unsetMaxTokens(wire, model);
}
