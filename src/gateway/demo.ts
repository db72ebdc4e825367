// Built-in demo provider: answers locally so `npm start` works with no provider keys. It speaks
// the canonical model directly (no HTTP), including a tool call when the caller offers tools and
// JSON that fits a requested structured output, so a framework's tool loop and schema parsing run
// end to end on the quickstart's config.
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
    const params = tool.function.parameters;
    const args = JSON.stringify(params?.type === 'object' ? exampleOf(params, params, prompt.slice(0, 200), 0) : { query: prompt.slice(0, 200) });
    return {
      id: 'chatcmpl-demo-' + randomBytes(6).toString('hex'), model, created: Math.floor(Date.now() / 1000), text: null,
      toolCalls: [{ id: 'call_' + randomBytes(6).toString('hex'), type: 'function', function: { name: tool.function.name, arguments: args } }],
      finishReason: 'tool_calls', usage: { inputTokens: promptTokens, outputTokens: approxTokens(args) },
    };
  }
  const said = `Hello from aam's built-in demo provider (no provider key is set). You said: "${prompt.slice(0, 500)}"`;
  const text = structuredAnswer(req.response_format, said) ?? said;
  return {
    id: 'chatcmpl-demo-' + randomBytes(6).toString('hex'), model, created: Math.floor(Date.now() / 1000), text, toolCalls: [],
    finishReason: 'stop', usage: { inputTokens: promptTokens, outputTokens: approxTokens(text) },
  };
}

/** JSON for a structured-output request (json_schema: a value its schema accepts; json_object: an object), else undefined. */
function structuredAnswer(rf: ChatRequest['response_format'], said: string): string | undefined {
  if (rf?.type === 'json_object') return JSON.stringify({ answer: said });
  const schema = (rf?.json_schema as { schema?: unknown } | undefined)?.schema;
  if (rf?.type !== 'json_schema' || !isSchema(schema)) return undefined;
  return JSON.stringify(exampleOf(schema, schema, said, 0));
}

type Schema = Record<string, unknown>;
const isSchema = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A value `schema` accepts (every property filled, `text` in strings, bounds met); `root` resolves local $refs. */
function exampleOf(schema: Schema, root: Schema, text: string, depth: number): unknown {
  if (depth > 16) return null; // a recursive schema ends in its nullable branch
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  if (typeof schema.$ref === 'string') {
    const target = schema.$ref.replace(/^#\//, '').split('/').reduce<unknown>((at, k) => (isSchema(at) ? at[k] : undefined), root);
    return isSchema(target) ? exampleOf(target, root, text, depth + 1) : null;
  }
  const branches = (schema.anyOf ?? schema.oneOf ?? schema.allOf) as unknown;
  if (Array.isArray(branches) && branches.length > 0) {
    const pick = branches.find((b) => isSchema(b) && (depth < 8 || b.type === 'null')) ?? branches[0];
    return isSchema(pick) ? exampleOf(pick, root, text, depth + 1) : null;
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') ?? 'null' : schema.type ?? (isSchema(schema.properties) ? 'object' : 'string');
  const num = (k: string) => (typeof schema[k] === 'number' ? schema[k] : undefined);
  switch (type) {
    case 'object': {
      const props = isSchema(schema.properties) ? schema.properties : {};
      return Object.fromEntries(Object.entries(props).map(([k, v]) => [k, isSchema(v) ? exampleOf(v, root, text, depth + 1) : null]));
    }
    case 'array': {
      const item = isSchema(schema.items) ? exampleOf(schema.items, root, text, depth + 1) : null;
      return Array.from({ length: Math.max(1, num('minItems') ?? 1) }, () => item);
    }
    case 'integer': case 'number': {
      const low = num('minimum') ?? (num('exclusiveMinimum') !== undefined ? num('exclusiveMinimum')! + 1 : 0);
      const n = Math.min(low, num('maximum') ?? (num('exclusiveMaximum') !== undefined ? num('exclusiveMaximum')! - 1 : low));
      return type === 'integer' ? Math.ceil(n) : n;
    }
    case 'boolean': return true;
    case 'null': return null;
    default: return stringFor(schema.format, text, num('minLength') ?? 0, num('maxLength'));
  }
}

const FORMATS: Record<string, string> = {
  email: 'demo@example.com', uri: 'https://example.com/', url: 'https://example.com/', uuid: '00000000-0000-4000-8000-000000000000',
  'date-time': '2025-01-01T00:00:00Z', date: '2025-01-01', time: '00:00:00Z', ipv4: '127.0.0.1', ipv6: '::1',
};
function stringFor(format: unknown, text: string, min: number, max: number | undefined): string {
  const s = (typeof format === 'string' && FORMATS[format]) || text;
  return s.padEnd(min, '.').slice(0, max ?? s.length + min);
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
