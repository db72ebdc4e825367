// OpenAI's reasoning effort (chat `reasoning_effort`, Responses `reasoning.effort`) as Claude's
// thinking, the one mapping for Anthropic and Claude on Bedrock. Anthropic's current API (2026):
// Claude 4.6 and later think adaptively (`thinking: {type: "adaptive"}` steered by
// `output_config.effort` low / medium / high; 4.7 and later refuse a fixed budget), while Claude
// 3.7, 4, 4.1 and 4.5 take only a fixed budget (`thinking: {type: "enabled", budget_tokens}`: at
// least 1,024 tokens and below max_tokens, which counts the thinking). Pure: no I/O.
import type { Obj } from './util.ts';
import type { ChatMessage, ChatRequest } from './types.ts';
import { isObj } from '../lib/json.ts';

/** max_tokens aam sends Claude when the client set none (Anthropic requires one). */
export const DEFAULT_MAX_TOKENS = 4096;

/** Claude's smallest thinking budget (Anthropic refuses less). */
export const MIN_THINKING_BUDGET = 1024;

/** Effort -> thinking budget (the values LiteLLM uses, so a client moving over thinks as much), and the adaptive effort. */
const EFFORTS: Readonly<Record<string, { budget: number; effort: 'low' | 'medium' | 'high' }>> = {
  minimal: { budget: 1024, effort: 'low' },
  low: { budget: 1024, effort: 'low' },
  medium: { budget: 2048, effort: 'medium' },
  high: { budget: 4096, effort: 'high' },
  xhigh: { budget: 8192, effort: 'high' },
};

/**
 * Claude models that take only a fixed budget: 3.7 Sonnet, and the 4, 4.1 and 4.5 families (by
 * model id, dated or not, Bedrock's `anthropic.` / regional prefixes and `-v1:0` suffixes included).
 * Any other id (4.6 and later, an alias aam cannot date) thinks adaptively.
 */
const BUDGET_ONLY = /claude-3-7-sonnet|claude-(?:opus|sonnet|haiku)-4(?:-[015])?(?:-\d{8}|-v\d|[@:]|$)/;

/** How a Claude model thinks: a fixed budget (3.7-4.5) or adaptively (4.6 and later). */
export type ThinkingStyle = 'budget' | 'adaptive';

/**
 * `model`'s thinking style: the target's `thinking` setting (an alias or a deployment name that
 * hides the model's version) when set, else told by the model id (an id aam cannot date: adaptive).
 */
export function thinkingStyle(model: string, options?: Readonly<Record<string, string>>): ThinkingStyle {
  const set = options?.thinking;
  if (set === 'budget' || set === 'adaptive') return set;
  return BUDGET_ONLY.test(model) ? 'budget' : 'adaptive';
}

/** What a request's effort becomes for a Claude model: the body's `thinking`, `output_config.effort` (adaptive) and `max_tokens`. */
export interface ClaudeThinking { thinking: Obj; effort?: 'low' | 'medium' | 'high'; maxTokens: number }

/**
 * `effort` for Claude model `model` (thinking in `style`) with the client's max_tokens (`max`, undefined when it set
 * none): the fields to send, null for `none` (no thinking asked), or why it cannot be sent (a
 * string starting with the field, for the 400). Without a client max_tokens, the answer keeps aam's
 * default room (4,096 tokens) on top of the thinking; with one, a fixed budget stays below it.
 */
export function claudeThinking(effort: string, model: string, max: number | undefined, style: ThinkingStyle = thinkingStyle(model)): ClaudeThinking | null | string {
  if (effort === 'none') return null;
  const e = EFFORTS[effort];
  if (e === undefined) return `reasoning_effort: "${effort}" is not an effort aam maps to Claude's thinking (use none, minimal, low, medium, high or xhigh)`;
  if (style === 'adaptive') return { thinking: { type: 'adaptive' }, effort: e.effort, maxTokens: max ?? DEFAULT_MAX_TOKENS + e.budget };
  if (max === undefined) return { thinking: { type: 'enabled', budget_tokens: e.budget }, maxTokens: DEFAULT_MAX_TOKENS + e.budget };
  const budget = Math.min(e.budget, max - 1);
  if (budget < MIN_THINKING_BUDGET) {
    return `reasoning_effort: ${model} thinks with a budget of at least ${MIN_THINKING_BUDGET} tokens, below max_tokens (${max}); raise max_tokens above ${MIN_THINKING_BUDGET} or leave reasoning_effort out`;
  }
  return { thinking: { type: 'enabled', budget_tokens: budget }, maxTokens: max };
}

/**
 * The thinking aam adds to `req` for Claude model `model` (Anthropic, Claude on Bedrock; `options`:
 * the target's, its `thinking` style if set): null when
 * the client gave no reasoning effort, or its own thinking (which wins), or an effort that asks for
 * none or cannot be sent (uncarried refuses that one before any target is called).
 */
export function effortThinking(req: ChatRequest, model: string, options?: Readonly<Record<string, string>>): ClaudeThinking | null {
  const effort = req.extra?.reasoning_effort;
  if (typeof effort !== 'string' || req.anthropicExtra?.thinking !== undefined) return null;
  const t = claudeThinking(effort, model, req.max_completion_tokens ?? req.max_tokens, thinkingStyle(model, options));
  return typeof t === 'string' ? null : t;
}

/**
 * A thinking block an Anthropic client sent back that Claude takes: one Claude signed (a thinking
 * block with its signature, a redacted one with its data). Claude refuses any other (400 "Invalid
 * signature"): a Gemini thought summary, which aam answers as a thinking block with no signature
 * (Gemini's thoughtSignature is no signature of Claude's), is left out of what Claude is sent.
 */
export function claudeSigned(b: unknown): b is Obj {
  if (!isObj(b)) return false;
  if (b.type === 'thinking') return typeof b.thinking === 'string' && typeof b.signature === 'string' && b.signature !== '';
  return b.type === 'redacted_thinking' && typeof b.data === 'string' && b.data !== '';
}

/**
 * The conversation ends in a tool loop whose assistant turn (the tool calls the results answer)
 * brought thinking, none of it Claude's (another model's, left out by claudeSigned): with thinking
 * on, Claude requires that turn to start with its own thinking (400), so the call goes without it.
 */
export function unsignedToolLoop(messages: readonly ChatMessage[]): boolean {
  let i = messages.length - 1;
  while (i >= 0 && messages[i].role === 'tool') i--;
  const m = messages[i];
  return i < messages.length - 1 && m?.role === 'assistant' && (m.tool_calls?.length ?? 0) > 0
    && (m.thinking?.length ?? 0) > 0 && !m.thinking!.some(claudeSigned);
}
