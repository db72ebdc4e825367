// Credential scrubbing on canonical stream events. A secret split across two content deltas is
// not contiguous in the SSE bytes (JSON framing sits between the pieces), so the text of each
// text stream, each thinking block's text and each tool call's arguments is scrubbed as its own
// character stream, holding back only what could be the start of a secret. Held text is released
// before any other event. (A signature or redacted data passes the door's own scrub, as every byte.)
import type { Json, StreamEvent } from '../providers/types.ts';
import type { StreamScrubber } from '../credentials/scrub.ts';

/** push's answer is read before the next push or end (it may be an array reused by the next call). */
export interface EventScrubber { push(ev: StreamEvent): readonly StreamEvent[]; end(): StreamEvent[] }

const NONE: readonly StreamEvent[] = Object.freeze([]);

type MakeStream = () => Pick<StreamScrubber, 'push' | 'end'>;

/** A text's token logprobs taken in and not yet let out; `skip`: characters of the first token's text already let out. */
interface Tokens { lp: Json[]; skip: number }

/**
 * Of `pending`, the tokens whose text `released` (the text the scrubber let out) completes, and
 * what is left (a token may straddle two releases: it goes with the one that completes it). None,
 * and nothing left, when they do not spell it (the text was rewritten): a token is relayed only as
 * text that passed the scrubber.
 */
function spelled(pending: Tokens, released: string): { lp: Json[] | undefined; rest: Tokens | null } {
  let at = 0;
  let n = 0;
  let skip = pending.skip;
  while (n < pending.lp.length && at < released.length) {
    const tok = (pending.lp[n] as { token?: unknown } | null)?.token;
    if (typeof tok !== 'string') return { lp: undefined, rest: null };
    const part = skip > 0 ? tok.slice(skip) : tok;
    if (released.startsWith(part, at)) { at += part.length; n++; skip = 0; continue; }
    if (!part.startsWith(released.slice(at))) return { lp: undefined, rest: null };
    skip += released.length - at; // the release ends inside this token
    at = released.length;
  }
  if (at !== released.length) return { lp: undefined, rest: null };
  const rest = n < pending.lp.length ? { lp: pending.lp.slice(n), skip } : null;
  return { lp: n > 0 ? pending.lp.slice(0, n) : undefined, rest };
}

export function createEventScrubber(make: MakeStream): EventScrubber {
  let text: ReturnType<MakeStream> | null = null;
  let logprobs: Tokens | null = null;
  /** A text event of released text, with the logprobs that spell it. */
  const textEvent = (t: string): StreamEvent => {
    if (logprobs === null) return { type: 'text', text: t };
    const { lp, rest } = spelled(logprobs, t);
    logprobs = rest;
    return lp === undefined ? { type: 'text', text: t } : { type: 'text', text: t, logprobs: lp };
  };
  let thinking: ReturnType<MakeStream> | null = null;
  const tools = new Map<number, ReturnType<MakeStream>>();
  // The one-event answer of a text delta, reused: the common case makes no array per event.
  const one: StreamEvent[] = [];
  const endThinking = (out: StreamEvent[]) => {
    if (thinking) { const t = thinking.end(); thinking = null; if (t) out.push({ type: 'thinking', text: t }); }
  };
  const endText = (out: StreamEvent[]) => {
    if (text) { const t = text.end(); text = null; if (t) out.push(textEvent(t)); }
    logprobs = null;
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
        if (ev.logprobs !== undefined || logprobs !== null) {
          const out: StreamEvent[] = [];
          endThinking(out);
          if (ev.logprobs !== undefined) (logprobs ??= { lp: [], skip: 0 }).lp.push(...ev.logprobs);
          const t = text.push(ev.text);
          if (t) out.push(textEvent(t));
          return out;
        }
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
