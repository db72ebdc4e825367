// Reading an upstream stream as canonical events, with a commit point: events are held until the
// first content event, so an error before any content can still fall back to the next target.
import { StringDecoder } from 'node:string_decoder';
import { SseParser, type SseRecord } from '../providers/sse.ts';
import { EventStreamFramer } from '../providers/bedrock-eventstream.ts';
import { isContentEvent, type StreamEvent, type StreamParser } from '../providers/types.ts';
import { networkFailure, type AttemptFailure, type UpstreamBody } from './upstream.ts';
import type { Target } from './routes.ts';
import { parseJsonInTurns } from '../access/json-turns.ts';

/** A started upstream stream: `head` are the events up to and including the first content event. */
export interface OpenStream {
  head: StreamEvent[];
  /** Remaining events, in arrival order; ends at upstream end. Throws on upstream failure. */
  rest: AsyncIterable<StreamEvent[]>;
  abort(): void;
  /**
   * The upstream has nothing more to send (its body ended and was all read): what `rest` still
   * yields is already here, and the stream's end follows without waiting on the upstream.
   */
  drained(): boolean;
}

/** Events from a local source (demo provider): already complete. */
export function localStream(events: StreamEvent[]): OpenStream {
  const i = events.findIndex(isContentEvent);
  const cut = i < 0 ? events.length : i + 1;
  return { head: events.slice(0, cut), rest: (async function* () { if (cut < events.length) yield events.slice(cut); })(), abort() {}, drained: () => true };
}

/**
 * Records from raw body bytes: SSE text, or AWS event-stream frames (Bedrock). A read of several
 * chunks comes unjoined: each is decoded on its own (a join copied the read into a new buffer).
 */
function framesFor(target: Target): { push(b: Buffer | readonly Buffer[]): readonly SseRecord[]; end(): readonly SseRecord[] } {
  if (target.provider.adapter?.streamFraming === 'aws-eventstream') {
    const es = new EventStreamFramer();
    return { push: (b) => (Buffer.isBuffer(b) ? es.push(b) : b.flatMap((c) => es.push(c))), end: () => es.end() };
  }
  const sse = new SseParser();
  const dec = new StringDecoder('utf8');
  return {
    push: (b) => {
      if (Buffer.isBuffer(b)) return sse.push(dec.write(b));
      let into: SseRecord[] | null = null;
      for (let i = 0; i < b.length; i++) into = sse.pushInto(dec.write(b[i]), into);
      return into ?? [];
    },
    end: () => sse.end(),
  };
}

/** Events this long are parsed across loop turns: JSON.parse of a 2 MB event held the loop at once. */
const LONG_EVENT = 64 * 1024;
const isLong = (rec: SseRecord): boolean => rec.data.length >= LONG_EVENT;

/** toEvents for records of which some are long: each long one is parsed in turns (json-turns.ts). */
async function eventsInTurns(parser: StreamParser, records: readonly SseRecord[]): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for (const rec of records) {
    if (rec.data === '[DONE]') continue;
    let parsed: { value: unknown } | undefined;
    if (isLong(rec)) {
      try {
        const v = parseJsonInTurns(rec.data);
        parsed = { value: v instanceof Promise ? await v : v };
      } catch { parsed = { value: undefined }; } // not JSON: the parser reports it, as for a short one
    }
    for (const ev of parser.push(rec.data, rec.event, parsed)) out.push(ev);
  }
  return out;
}

/** Raised inside `rest` when the upstream breaks after the commit point. */
export class StreamBroken extends Error {
  readonly errorType: string;
  constructor(message: string, errorType = 'api_error') { super(message); this.name = 'StreamBroken'; this.errorType = errorType; }
}

/**
 * Read an upstream SSE body until the first content event. Returns a failure (to fall back on) if
 * the stream ends, errors or reports an error event before that point.
 */
export async function openUpstreamStream(
  target: Target,
  body: UpstreamBody,
  parser: StreamParser,
): Promise<{ ok: true; value: OpenStream } | AttemptFailure> {
  const sse = framesFor(target);
  const head: StreamEvent[] = [];
  // Records that arrived with the first content but after it: converted once the head is out, so
  // the first chunk reaches the client without waiting for the rest of a large read.
  let pending: readonly SseRecord[] = [];
  const toEvents = (records: readonly SseRecord[]): StreamEvent[] | Promise<StreamEvent[]> => {
    if (records.some(isLong)) return eventsInTurns(parser, records);
    const out: StreamEvent[] = [];
    // Indexed loops: this runs per upstream read, and array iterators showed up in its garbage.
    for (let i = 0; i < records.length; i++) {
      const rec = records[i];
      if (rec.data === '[DONE]') continue;
      const evs = parser.push(rec.data, rec.event);
      for (let j = 0; j < evs.length; j++) out.push(evs[j]);
    }
    return out;
  };
  const fail = (message: string): AttemptFailure => {
    body.destroy();
    return { ok: false, next: 'retry', status: 502, clientStatus: 502, code: 'upstream_error', message: `${target.label} stream failed before any content: ${message}` };
  };
  try {
    for (;;) {
      const r = await body.next();
      if (r.done) {
        // Ended without content (e.g. an empty answer): that is a valid, complete response.
        head.push(...await toEvents(sse.end()), ...parser.end());
        const err = head.find((e) => e.type === 'error');
        if (err && err.type === 'error') return fail(err.message);
        if (!head.some((e) => e.type === 'finish')) return fail('stream ended without a finish event');
        return { ok: true, value: { head, rest: (async function* () {})(), abort() {}, drained: () => true } };
      }
      const records = sse.push(r.value);
      let committed = false;
      for (let i = 0; i < records.length && !committed; i++) {
        const converted = toEvents([records[i]]);
        for (const ev of converted instanceof Promise ? await converted : converted) {
          if (ev.type === 'error' && !committed) return fail(ev.message);
          head.push(ev);
          if (isContentEvent(ev)) committed = true;
        }
        if (committed) pending = records.slice(i + 1);
      }
      if (committed) break;
    }
  } catch (err) {
    return networkFailure(target, err);
  }
  async function* rest(): AsyncGenerator<StreamEvent[]> {
    try {
      let records = pending;
      pending = [];
      for (;;) {
        const converted = toEvents(records);
        const events = converted instanceof Promise ? await converted : converted;
        for (let i = 0; i < events.length; i++) {
          const ev = events[i];
          if (ev.type === 'error') throw new StreamBroken(`upstream reported an error mid-stream: ${ev.message}`, ev.errorType);
          if (ev.type === 'finish') sawFinish = true;
        }
        if (events.length) yield events;
        const r = await body.next();
        if (r.done) break;
        records = sse.push(r.value);
      }
    } catch (err) {
      if (err instanceof StreamBroken) throw err;
      throw new StreamBroken(`upstream stream from ${target.label} broke: ${(err as { code?: string }).code ?? (err as Error).message}`);
    }
    const tail = [...await toEvents(sse.end()), ...parser.end()];
    if (!tail.some((e) => e.type === 'finish') && !sawFinish) throw new StreamBroken(`upstream stream from ${target.label} ended before the response was complete`);
    if (tail.length) yield tail;
  }
  let sawFinish = head.some((e) => e.type === 'finish');
  return { ok: true, value: { head, rest: rest(), abort: () => body.destroy(), drained: () => body.drained } };
}
