// Built-in demo provider: answers locally so `npm start` works with no provider keys. It speaks
// the canonical model directly (no HTTP), including a tool call when the caller offers tools.
import { randomBytes } from 'node:crypto';
import type { ChatRequest, ChatResult, StreamEvent, EmbeddingsRequest, EmbeddingsResult, Usage } from '../providers/types.ts';

function lastUserText(req: ChatRequest): string {
  for (let i = req.messages.length - 1; i >= 0; i--) {
    const m = req.messages[i];
    if (m.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content)) return m.content.map((p) => (p.type === 'text' ? (p as { text: string }).text : `[${p.type}]`)).join(' ');
  }
  return '';
}

function approxTokens(s: string): number { return Math.max(1, Math.ceil(s.length / 4)); }

export function demoChat(req: ChatRequest, model: string): ChatResult {
  const prompt = lastUserText(req);
  const promptTokens = approxTokens(JSON.stringify(req.messages));
  const lastIsToolResult = req.messages[req.messages.length - 1]?.role === 'tool';
  const tool = req.tools?.[0];
  if (tool && !lastIsToolResult && req.tool_choice !== 'none') {
    const args = JSON.stringify({ query: prompt.slice(0, 200) });
    return {
      id: 'chatcmpl-demo-' + randomBytes(6).toString('hex'), model, created: Math.floor(Date.now() / 1000), text: null,
      toolCalls: [{ id: 'call_' + randomBytes(6).toString('hex'), type: 'function', function: { name: tool.function.name, arguments: args } }],
      finishReason: 'tool_calls', usage: { inputTokens: promptTokens, outputTokens: approxTokens(args) },
    };
  }
  const text = `Hello from aam's built-in demo provider (no provider key is set). You said: "${prompt.slice(0, 500)}"`;
  return {
    id: 'chatcmpl-demo-' + randomBytes(6).toString('hex'), model, created: Math.floor(Date.now() / 1000), text, toolCalls: [],
    finishReason: 'stop', usage: { inputTokens: promptTokens, outputTokens: approxTokens(text) },
  };
}

/** The same answer as a canonical event stream (word by word, no artificial delay). */
export function demoStream(req: ChatRequest, model: string): StreamEvent[] {
  const r = demoChat(req, model);
  const events: StreamEvent[] = [{ type: 'start', id: r.id, model }];
  if (r.text) for (const w of r.text.match(/\S+\s*/g) ?? []) events.push({ type: 'text', text: w });
  r.toolCalls.forEach((tc, index) => {
    events.push({ type: 'tool_start', index, id: tc.id, name: tc.function.name });
    events.push({ type: 'tool_args', index, delta: tc.function.arguments });
  });
  // Canonical order: usage before finish (encoders write OpenAI's usage chunk after finish).
  events.push({ type: 'usage', usage: r.usage as Usage });
  events.push({ type: 'finish', reason: r.finishReason });
  return events;
}

/** Deterministic pseudo-embeddings (hash of words), good enough to try the API offline. */
export function demoEmbeddings(req: EmbeddingsRequest, model: string): EmbeddingsResult {
  const inputs = typeof req.input === 'string' ? [req.input] : (req.input as unknown[]).map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
  const dim = req.dimensions ?? 64;
  const data = inputs.map((text, index) => {
    const v = new Array<number>(dim).fill(0);
    for (const w of text.toLowerCase().split(/\W+/).filter(Boolean)) {
      let h = 2166136261;
      for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 16777619);
      v[Math.abs(h) % dim] += 1;
    }
    const norm = Math.hypot(...v) || 1;
    return { index, embedding: v.map((x) => x / norm) };
  });
  return { model, data, usage: { inputTokens: inputs.reduce((s, t) => s + approxTokens(t), 0), outputTokens: 0 } };
}
