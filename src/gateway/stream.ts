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
  readonly head: StreamEvent[];
  /**
   * The next events, in arrival order: a value when they are here already (null: the stream ended,
   * complete), a promise when the upstream must send more. Throws (rejects with) StreamBroken on an
   * upstream failure. Not an async iterator: a batch that is here costs no promise and no loop turn.
   */
  next(): StreamEvent[] | null | Promise<StreamEvent[] | null>;
  abort(): void;
  /**
   * The upstream has nothing more to send (its body ended and was all read): what `next` still
   * gives is already here, and the stream's end follows without waiting on the upstream.
   */
  drained(): boolean;
}

/** Events from a local source (demo provider, a cached or checked answer): already complete. */
export function localStream(events: StreamEvent[]): OpenStream {
  const i = events.findIndex(isContentEvent);
  const cut = i < 0 ? events.length : i + 1;
  let rest: StreamEvent[] | null = cut < events.length ? events.slice(cut) : null;
  return {
    head: events.slice(0, cut),
    next() { const r = rest; rest = null; return r; },
    abort() {},
    drained: () => true,
  };
}

/**
 * Records from raw body bytes: SSE text, or AWS event-stream frames (Bedrock). A read of several
 * chunks comes unjoined: each is decoded on its own (a join copied the read into a new buffer).
 */
interface Frames { push(b: Buffer | readonly Buffer[]): readonly SseRecord[]; end(): readonly SseRecord[] }

function framesFor(target: Target): Frames {
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

/** Records as canonical events ('[DONE]' dropped); a promise only when one of them is long (parsed in turns). */
function toEvents(parser: StreamParser, records: readonly SseRecord[]): StreamEvent[] | Promise<StreamEvent[]> {
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
}

type Opened = { ok: true; value: OpenStream } | AttemptFailure;

/**
 * Read an upstream SSE body until the first content event. Returns a failure (to fall back on) if
 * the stream ends, errors or reports an error event before that point.
 */
export function openUpstreamStream(target: Target, body: UpstreamBody, parser: StreamParser): Promise<Opened> {
  return new UpstreamStream(target, body, parser).open();
}

const NO_RECORDS: readonly SseRecord[] = Object.freeze([]);

/**
 * One upstream stream, read up to its first content (open) and then batch by batch (next). An
 * object with methods and promise chains, not async functions and an async generator: their
 * frames and closures lived as long as the stream (~2 KB at c=64, where a stream outlives a
 * scavenge and its state is promoted to old space, major GCs' work). Same reads, same events.
 */
class UpstreamStream implements OpenStream {
  readonly head: StreamEvent[] = [];
  private readonly target: Target;
  private readonly body: UpstreamBody;
  private readonly parser: StreamParser;
  private readonly frames: Frames;
  /**
   * Records read but not yet converted: those that came with the first content but after it are
   * converted once the head is out, so the first chunk reaches the client without waiting for the
   * rest of a large read. null: none.
   */
  private pending: readonly SseRecord[] | null = null;
  private sawFinish = false;
  /** The upstream's end was read and its tail given: next() gives null. */
  private finished = false;

  constructor(target: Target, body: UpstreamBody, parser: StreamParser) {
    this.target = target;
    this.body = body;
    this.parser = parser;
    this.frames = framesFor(target);
  }

  // ---- up to the first content (the commit point) ----

  open(): Promise<Opened> {
    return this.body.next().then((r) => this.headRead(r), (err: unknown) => networkFailure(this.target, err));
  }

  private headRead(r: IteratorResult<Buffer | readonly Buffer[]>): Opened | Promise<Opened> {
    try {
      if (r.done) {
        // Ended without content (e.g. an empty answer): that is a valid, complete response.
        const tail = toEvents(this.parser, this.frames.end());
        return tail instanceof Promise ? tail.then((t) => this.endedBeforeContent(t), (err: unknown) => networkFailure(this.target, err)) : this.endedBeforeContent(tail);
      }
      return this.headFrom(this.frames.push(r.value), 0);
    } catch (err) {
      return networkFailure(this.target, err);
    }
  }

  /** Converts records[i..] until one holds content; reads on when none does. */
  private headFrom(records: readonly SseRecord[], i: number): Opened | Promise<Opened> {
    for (; i < records.length; i++) {
      const converted = toEvents(this.parser, [records[i]]);
      if (converted instanceof Promise) {
        const at = i;
        return converted.then((evs) => this.headEvents(records, at, evs) ?? this.headFrom(records, at + 1), (err: unknown) => networkFailure(this.target, err));
      }
      const done = this.headEvents(records, i, converted);
      if (done) return done;
    }
    return this.open();
  }

  /** Record i's events joined to the head: a failure, the stream once committed (undefined: not yet). */
  private headEvents(records: readonly SseRecord[], i: number, events: readonly StreamEvent[]): Opened | undefined {
    let committed = false;
    for (let j = 0; j < events.length; j++) {
      const ev = events[j];
      if (ev.type === 'error' && !committed) return this.fail(ev.message);
      this.head.push(ev);
      if (isContentEvent(ev)) committed = true;
    }
    if (!committed) return undefined;
    if (i + 1 < records.length) this.pending = records.slice(i + 1);
    if (this.head.some((e) => e.type === 'finish')) this.sawFinish = true;
    return { ok: true, value: this };
  }

  private endedBeforeContent(tail: readonly StreamEvent[]): Opened {
    for (let i = 0; i < tail.length; i++) this.head.push(tail[i]);
    const end = this.parser.end();
    for (let i = 0; i < end.length; i++) this.head.push(end[i]);
    const err = this.head.find((e) => e.type === 'error');
    if (err && err.type === 'error') return this.fail(err.message);
    if (!this.head.some((e) => e.type === 'finish')) return this.fail('stream ended without a finish event');
    this.finished = true;
    return { ok: true, value: this };
  }

  private fail(message: string): AttemptFailure {
    this.body.destroy();
    return { ok: false, next: 'retry', status: 502, clientStatus: 502, code: 'upstream_error', message: `${this.target.label} stream failed before any content: ${message}` };
  }

  // ---- after it ----

  next(): StreamEvent[] | null | Promise<StreamEvent[] | null> {
    try {
      const r = this.step();
      return r instanceof Promise ? r.catch((err: unknown) => { throw this.broken(err); }) : r;
    } catch (err) {
      throw this.broken(err);
    }
  }

  private step(): StreamEvent[] | null | Promise<StreamEvent[] | null> {
    if (this.pending !== null) return this.convert();
    if (this.finished) return null;
    // Ended and all read: its tail now, without asking the body for a promise of its end.
    if (this.body.drained) return this.tail();
    return this.body.next().then((r) => this.read(r));
  }

  drained(): boolean { return this.body.drained; }

  abort(): void { this.body.destroy(); }

  private read(r: IteratorResult<Buffer | readonly Buffer[]>): StreamEvent[] | null | Promise<StreamEvent[] | null> {
    if (r.done) return this.tail();
    this.pending = this.frames.push(r.value);
    return this.convert();
  }

  /** The pending records' events: checked, and given when there are any (else the next read's). */
  private convert(): StreamEvent[] | null | Promise<StreamEvent[] | null> {
    const records = this.pending ?? NO_RECORDS;
    this.pending = null;
    const converted = toEvents(this.parser, records);
    return converted instanceof Promise ? converted.then((evs) => this.checked(evs)) : this.checked(converted);
  }

  private checked(events: StreamEvent[]): StreamEvent[] | null | Promise<StreamEvent[] | null> {
    for (let i = 0; i < events.length; i++) {
      const ev = events[i];
      if (ev.type === 'error') throw new StreamBroken(`upstream reported an error mid-stream: ${ev.message}`, ev.errorType);
      if (ev.type === 'finish') this.sawFinish = true;
    }
    return events.length ? events : this.step();
  }

  /** The upstream ended: what its framer and parser still held; broken when no finish came at all. */
  private tail(): StreamEvent[] | null | Promise<StreamEvent[] | null> {
    this.finished = true;
    const converted = toEvents(this.parser, this.frames.end());
    return converted instanceof Promise ? converted.then((evs) => this.tailOf(evs)) : this.tailOf(converted);
  }

  private tailOf(events: StreamEvent[]): StreamEvent[] | null {
    const end = this.parser.end();
    for (let i = 0; i < end.length; i++) events.push(end[i]);
    if (!events.some((e) => e.type === 'finish') && !this.sawFinish) throw new StreamBroken(`upstream stream from ${this.target.label} ended before the response was complete`);
    return events.length ? events : null;
  }

  private broken(err: unknown): StreamBroken {
    if (err instanceof StreamBroken) return err;
    return new StreamBroken(`upstream stream from ${this.target.label} broke: ${(err as { code?: string }).code ?? (err as Error).message}`);
  }
}
