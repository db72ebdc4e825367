// Output guardrails over canonical stream events (src/providers/types.ts): text deltas and each
// tool call's argument deltas get their own windowed guard, and so does the text of each thinking
// block (Anthropic extended thinking reaches the client: guardrails read it; a redaction in it
// breaks its signature, so the client's next turn fails closed at Anthropic). Held-back text is
// flushed before a new block or tool call starts and before `finish`, so event order stays what
// the client expects.
import type { StreamEvent } from '../providers/types.ts';
import type { CompiledGuardrail } from './engine-core.ts';
import { createStreamGuard, type StreamGuard, type StreamGuardOptions, type StreamPush } from './stream.ts';
import type { Category, FindingSummary } from './types.ts';

export interface EventGuardResult {
  /** Events to send to the client now (possibly none while text is held back). */
  events: StreamEvent[];
  /** Set when a block guardrail fired: send the final error event and close the stream. */
  blocked?: { guardrail: string; category: Category };
}

export interface EventGuard {
  push(ev: StreamEvent): EventGuardResult;
  /** Upstream ended without a finish event: flush what is held. */
  end(): EventGuardResult;
  findings(): FindingSummary[];
}

export function createEventGuard(guardrails: readonly CompiledGuardrail[], opts: StreamGuardOptions = {}): EventGuard {
  const done: StreamGuard[] = [];
  let text: StreamGuard | null = null;
  let thinking: StreamGuard | null = null;
  const tools = new Map<number, StreamGuard>();
  let blocked: EventGuardResult['blocked'];

  const fresh = (): StreamGuard => createStreamGuard(guardrails, opts);

  /** Turn one guard's output into events; records a block. */
  function emit(r: StreamPush, make: (s: string) => StreamEvent, out: StreamEvent[]): void {
    if (r.blocked) { blocked ??= r.blocked; return; }
    if (r.emit.length > 0) out.push(make(r.emit));
  }

  function flushText(out: StreamEvent[]): void {
    if (text === null) return;
    emit(text.end(), (s) => ({ type: 'text', text: s }), out);
    done.push(text);
    text = null;
  }

  function flushThinking(out: StreamEvent[]): void {
    if (thinking === null) return;
    emit(thinking.end(), (s) => ({ type: 'thinking', text: s }), out);
    done.push(thinking);
    thinking = null;
  }

  function flushTools(out: StreamEvent[]): void {
    for (const [index, g] of tools) {
      emit(g.end(), (s) => ({ type: 'tool_args', index, delta: s }), out);
      done.push(g);
    }
    tools.clear();
  }

  function result(out: StreamEvent[]): EventGuardResult {
    return blocked ? { events: [], blocked } : { events: out };
  }

  return {
    push(ev) {
      if (blocked) return { events: [], blocked };
      const out: StreamEvent[] = [];
      switch (ev.type) {
        case 'text':
          flushThinking(out);
          text ??= fresh();
          emit(text.push(ev.text), (s) => ({ type: 'text', text: s }), out);
          break;
        case 'thinking':
          flushText(out);
          thinking ??= fresh();
          emit(thinking.push(ev.text), (s) => ({ type: 'thinking', text: s }), out);
          break;
        case 'thinking_start':
        case 'thinking_signature':
        case 'redacted_thinking':
        case 'reasoning_item':
          // A signature (or the end of a reasoning item) ends its block's text; a new block starts after everything held.
          flushThinking(out);
          flushText(out);
          out.push(ev);
          break;
        case 'tool_start':
          flushThinking(out);
          flushText(out);
          flushTools(out);
          tools.set(ev.index, fresh());
          out.push(ev);
          break;
        case 'tool_args': {
          let g = tools.get(ev.index);
          if (g === undefined) { g = fresh(); tools.set(ev.index, g); }
          emit(g.push(ev.delta), (s) => ({ type: 'tool_args', index: ev.index, delta: s }), out);
          break;
        }
        case 'finish':
        case 'error':
          flushThinking(out);
          flushText(out);
          flushTools(out);
          out.push(ev);
          break;
        default:
          out.push(ev);
      }
      return result(out);
    },
    end() {
      if (blocked) return { events: [], blocked };
      const out: StreamEvent[] = [];
      flushThinking(out);
      flushText(out);
      flushTools(out);
      return result(out);
    },
    findings() {
      const merged = new Map<string, FindingSummary>();
      for (const g of [...done, ...(text ? [text] : []), ...(thinking ? [thinking] : []), ...tools.values()]) {
        for (const f of g.findings()) {
          const key = `${f.guardrail}\u0000${f.category}`;
          const m = merged.get(key);
          if (m) m.count += f.count; else merged.set(key, { ...f });
        }
      }
      return [...merged.values()];
    },
  };
}
