// Credential scrubbing on canonical stream events. A secret split across two content deltas is
// not contiguous in the SSE bytes (JSON framing sits between the pieces), so the text of each
// text stream, each thinking block's text and each tool call's arguments is scrubbed as its own
// character stream, holding back only what could be the start of a secret. Held text is released
// before any other event. (A signature or redacted data passes the door's own scrub, as every byte.)
import type { StreamEvent } from '../providers/types.ts';
import type { StreamScrubber } from '../credentials/scrub.ts';

/** push's answer is read before the next push or end (it may be an array reused by the next call). */
export interface EventScrubber { push(ev: StreamEvent): readonly StreamEvent[]; end(): StreamEvent[] }

const NONE: readonly StreamEvent[] = Object.freeze([]);

type MakeStream = () => Pick<StreamScrubber, 'push' | 'end'>;

export function createEventScrubber(make: MakeStream): EventScrubber {
  let text: ReturnType<MakeStream> | null = null;
  let thinking: ReturnType<MakeStream> | null = null;
  const tools = new Map<number, ReturnType<MakeStream>>();
  // The one-event answer of a text delta, reused: the common case makes no array per event.
  const one: StreamEvent[] = [];
  const endThinking = (out: StreamEvent[]) => {
    if (thinking) { const t = thinking.end(); thinking = null; if (t) out.push({ type: 'thinking', text: t }); }
  };
  const endText = (out: StreamEvent[]) => {
    if (text) { const t = text.end(); text = null; if (t) out.push({ type: 'text', text: t }); }
  };
  const flush = (out: StreamEvent[]) => {
    endThinking(out);
    endText(out);
    for (const [index, s] of tools) { const d = s.end(); if (d) out.push({ type: 'tool_args', index, delta: d }); }
    tools.clear();
  };
  return {
    push(ev) {
      if (ev.type === 'text') {
        text ??= make();
        // The common case (no thinking block open) makes no array, and no event when the text
        // passes unchanged (nothing held, nothing redacted): the event is its own clean event.
        if (!thinking) {
          const t = text.push(ev.text);
          if (!t) return NONE;
          one[0] = t === ev.text ? ev : { type: 'text', text: t };
          return one;
        }
        const out: StreamEvent[] = [];
        endThinking(out);
        const t = text.push(ev.text);
        if (t) out.push({ type: 'text', text: t });
        return out;
      }
      if (ev.type === 'thinking') {
        const out: StreamEvent[] = [];
        endText(out);
        thinking ??= make();
        const t = thinking.push(ev.text);
        if (t) out.push({ type: 'thinking', text: t });
        return out;
      }
      if (ev.type === 'tool_args') {
        let s = tools.get(ev.index);
        if (!s) { s = make(); tools.set(ev.index, s); }
        const d = s.push(ev.delta);
        return d ? [{ type: 'tool_args', index: ev.index, delta: d }] : [];
      }
      const out: StreamEvent[] = [];
      // A new tool call only ends the text stream; other tool calls may still be streaming.
      if (ev.type === 'tool_start') {
        endThinking(out);
        endText(out);
      } else flush(out);
      out.push(ev);
      return out;
    },
    end() { const out: StreamEvent[] = []; flush(out); return out; },
  };
}
