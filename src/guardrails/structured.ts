// Guardrails over structured payloads: canonical chat messages (every text part and tool-call
// argument) and JSON values (MCP tool arguments/results, string leaves). Copy-on-write: the
// caller gets its own objects back unless something was redacted.
import type { ChatMessage, ContentPart, ToolCall } from '../providers/types.ts';
import { evaluateText, finding, newTally, record, summaries, validate, type CompiledGuardrail, type Tally } from './engine-core.ts';
import type { Category, Direction, FindingSummary, Verdict } from './types.ts';

export interface StructuredVerdict<T> {
  verdict: Verdict;
  /** The redacted value, or the very same input object when nothing changed. */
  value: T;
  changed: boolean;
  findings: FindingSummary[];
  blockedBy?: string;
  blockedCategory?: Category;
  /** JSON-schema violations (paths and rules, never values), when a guardrail has json_schema. */
  schemaErrors?: string[];
}

const MAX_DEPTH = 64;

interface Walk { gs: readonly CompiledGuardrail[]; dir: Direction; t: Tally; chars: number }

function walk(v: unknown, path: string, w: Walk, depth: number): unknown {
  if (typeof v === 'string') {
    w.chars += v.length;
    return evaluateText(v, w.gs, w.dir, w.t, false, path);
  }
  if (typeof v !== 'object' || v === null) return v;
  if (depth >= MAX_DEPTH) {
    // Too deep to rebuild safely: scan it as text, and block rather than pass what we cannot redact.
    const flat = JSON.stringify(v);
    w.chars += flat.length;
    const probe = newTally();
    evaluateText(flat, w.gs, w.dir, probe, false, path);
    for (const s of probe.summaries.values()) {
      const g = w.gs.find((x) => x.name === s.guardrail);
      if (g) record(w.t, g, Array.from({ length: s.count }, () => finding(s.category, 0, 0)), g.action === 'redact' ? 'block' : g.action, path);
    }
    return v;
  }
  if (Array.isArray(v)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < v.length; i++) {
      const r = walk(v[i], `${path}[${i}]`, w, depth + 1);
      if (r !== v[i]) { copy ??= v.slice(); copy[i] = r; }
    }
    return copy ?? v;
  }
  let copy: Record<string, unknown> | null = null;
  for (const [k, item] of Object.entries(v)) {
    const r = walk(item, `${path}.${k}`, w, depth + 1);
    if (r !== item) { copy ??= { ...v }; copy[k] = r; }
  }
  return copy ?? v;
}

/** Size limits on structured payloads count all text; a truncated conversation or argument is not meaningful, so redact means block. */
function checkSize(w: Walk, where: string): void {
  for (const g of w.gs) {
    if (g.on.has(w.dir) && g.maxChars !== undefined && w.chars > g.maxChars) {
      record(w.t, g, [finding('size', g.maxChars, w.chars)], g.action === 'flag' ? 'flag' : 'block', where);
    }
  }
}

function result<T>(w: Walk, input: T, value: T, schemaErrors?: string[]): StructuredVerdict<T> {
  const res: StructuredVerdict<T> = { verdict: w.t.verdict, value, changed: value !== input, findings: summaries(w.t) };
  if (w.t.blockedBy !== undefined) { res.blockedBy = w.t.blockedBy; res.blockedCategory = w.t.blockedCategory; }
  if (schemaErrors !== undefined && schemaErrors.length > 0) res.schemaErrors = schemaErrors;
  return res;
}

/** Scan string leaves of a JSON value (MCP tool arguments or results) and check json_schema guardrails. */
export function applyToJson<T>(value: T, guardrails: readonly CompiledGuardrail[], direction: Direction): StructuredVerdict<T> {
  const w: Walk = { gs: guardrails, dir: direction, t: newTally(), chars: 0 };
  const out = walk(value, '$', w, 0) as T;
  checkSize(w, '$');
  const schemaErrors: string[] = [];
  for (const g of guardrails) {
    if (!g.on.has(direction) || g.schema === undefined) continue;
    const errors = validate(g.schema, value);
    if (errors.length === 0) continue;
    // A schema violation cannot be redacted away: redact escalates to block.
    record(w.t, g, errors.map(() => finding('schema', 0, 0)), g.action === 'flag' ? 'flag' : 'block', errors[0].path);
    for (const e of errors) schemaErrors.push(`${g.name}: ${e.path} ${e.message}`);
  }
  return result(w, value, out, schemaErrors);
}

function scanArguments(args: string, path: string, w: Walk): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    w.chars += args.length;
    return evaluateText(args, w.gs, w.dir, w.t, false, path);
  }
  const out = walk(parsed, path, w, 0);
  return out === parsed ? args : JSON.stringify(out);
}

function scanMessage(m: ChatMessage, i: number, w: Walk): ChatMessage {
  let content = m.content;
  if (typeof content === 'string') {
    content = walk(content, `messages[${i}].content`, w, 0) as string;
  } else if (Array.isArray(content)) {
    const src: ContentPart[] = content;
    let parts: ContentPart[] | null = null;
    src.forEach((p, k) => {
      if (p.type !== 'text' || typeof p.text !== 'string') return;
      const text = walk(p.text, `messages[${i}].content[${k}].text`, w, 0) as string;
      if (text !== p.text) { parts ??= src.slice(); parts[k] = { ...p, text } as ContentPart; }
    });
    if (parts !== null) content = parts;
  }
  let calls: ToolCall[] | undefined = m.tool_calls;
  m.tool_calls?.forEach((c, j) => {
    const args = scanArguments(c.function.arguments, `messages[${i}].tool_calls[${j}].arguments`, w);
    if (args !== c.function.arguments) {
      if (calls === m.tool_calls) calls = m.tool_calls!.slice();
      calls![j] = { ...c, function: { ...c.function, arguments: args } };
    }
  });
  if (content === m.content && calls === m.tool_calls) return m;
  const out: ChatMessage = { ...m, content };
  if (calls !== undefined) out.tool_calls = calls;
  return out;
}

/** Scan every message's text and tool-call arguments; returns new messages only if something changed. */
export function applyToChatMessages(messages: readonly ChatMessage[], guardrails: readonly CompiledGuardrail[], direction: Direction): StructuredVerdict<readonly ChatMessage[]> {
  const w: Walk = { gs: guardrails, dir: direction, t: newTally(), chars: 0 };
  let out: ChatMessage[] | null = null;
  messages.forEach((m, i) => {
    const r = scanMessage(m, i, w);
    if (r !== m) { out ??= messages.slice(); out[i] = r; }
  });
  checkSize(w, 'messages');
  return result(w, messages, out ?? messages);
}
