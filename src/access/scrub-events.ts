// Credential scrubbing on canonical stream events. A secret split across two content deltas is
// not contiguous in the SSE bytes (JSON framing sits between the pieces), so the text of each
// text stream, each thinking block's text and each tool call's arguments is scrubbed as its own
// character stream, holding back only what could be the start of a secret. Held text is released
// before any other event, but for the boundary between two thinking blocks (a Claude block's
// signature and the next one's start; OpenAI's next summary part or item): a reader joins an
// answer's thinking texts, so the held tail carries on into the next block, the boundary's events
// waiting behind it, and a secret cut there is redacted where it starts (the next block keeps what
// follows it). Blocks short enough to be held whole wait too: a secret spanning several is joined. (A signature or redacted data passes the door's own scrub, as every byte.)
import type { Json, StreamEvent } from '../providers/types.ts';
import type { StreamScrubber } from '../credentials/scrub.ts';

/** push's answer is read before the next push or end (it may be an array reused by the next call). */
export interface EventScrubber { push(ev: StreamEvent): readonly StreamEvent[]; end(): StreamEvent[] }

const NONE: readonly StreamEvent[] = Object.freeze([]);

type MakeStream = () => Pick<StreamScrubber, 'push' | 'end' | 'pending'>;
/** Texts a reader joins, scrubbed across their boundaries, one each (Scrubber.scrubJoined's texts; leaks reported by the stream). */
type ScrubJoined = (texts: readonly string[]) => readonly string[];

/** Events between two thinking blocks: a thinking stream's held tail carries on past them. */
const isThinkingBoundary = (ev: StreamEvent): boolean =>
  ev.type === 'thinking_start' || ev.type === 'thinking_signature' || ev.type === 'reasoning_item' || ev.type === 'redacted_thinking';

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

/**
 * `joined`: how text released across a thinking-block boundary is cut between the two blocks (a
 * secret's marker in the first); without it, what is released at once goes with the first block.
 */
export function createEventScrubber(make: MakeStream, joined?: ScrubJoined): EventScrubber {
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
  /**
   * Boundaries waiting behind the thinking stream's held tail, oldest first: each with the held
   * characters of the block before it (`len`) and its events. `carry`: their lengths' sum (what the
   * stream holds beyond it is the open block's). A secret may span several short blocks whole.
   */
  const waiting: Array<{ len: number; events: StreamEvent[] }> = [];
  let carry = 0;
  const tools = new Map<number, ReturnType<MakeStream>>();
  // The one-event answer of a text delta, reused: the common case makes no array per event.
  const one: StreamEvent[] = [];
  /**
   * `raw` (what the stream let out, as the upstream wrote it) released as `shown`: cut at each
   * waiting boundary it reaches, each block's part before that boundary's events (joined: a
   * secret's marker in the block where it starts); a boundary it does not reach keeps waiting.
   */
  const release = (out: StreamEvent[], raw: string, shown: string) => {
    const parts: string[] = [];
    let at = 0;
    let n = 0;
    for (; n < waiting.length && at + waiting[n].len <= raw.length; n++) parts.push(raw.slice(at, at += waiting[n].len));
    parts.push(raw.slice(at));
    const texts = shown === raw ? parts : joined ? joined(parts) : [shown, ...parts.slice(1).map(() => '')];
    for (let k = 0; k < parts.length; k++) {
      if (texts[k]) out.push({ type: 'thinking', text: texts[k] });
      if (k < n) out.push(...waiting[k].events);
    }
    waiting.splice(0, n);
    // Let out short of the next boundary: that much less of its block is held.
    if (waiting.length > 0) waiting[0].len -= raw.length - at;
    carry = waiting.length > 0 ? carry - raw.length : 0;
  };
  const endThinking = (out: StreamEvent[]) => {
    if (!thinking) return;
    const raw = thinking.pending;
    const t = thinking.end();
    thinking = null;
    if (waiting.length > 0) release(out, raw, t);
    else if (t) out.push({ type: 'thinking', text: t });
  };
  /** A thinking delta while boundary events wait: what is let out goes before the boundaries it reaches. */
  const bridged = (s: NonNullable<typeof thinking>, text: string, out: StreamEvent[]) => {
    const buf = s.pending + text;
    const t = s.push(text);
    release(out, buf.slice(0, buf.length - s.pending.length), t);
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
        if (waiting.length > 0) { bridged(thinking, ev.text, out); return out; }
        const t = thinking.push(ev.text);
        if (t) out.push({ type: 'thinking', text: t });
        return out;
      }
      if (thinking !== null && isThinkingBoundary(ev)) {
        // The held tail may be a secret's start that a later block ends: it waits for that block.
        // Held text of the block ending here (all of it, when earlier boundaries wait) opens a new wait.
        const held = thinking.pending.length;
        if (held > carry) { waiting.push({ len: held - carry, events: [ev] }); carry = held; return NONE; }
        if (waiting.length > 0) { waiting[waiting.length - 1].events.push(ev); return NONE; }
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
