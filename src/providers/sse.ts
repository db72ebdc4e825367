// Incremental Server-Sent Events parser and encoder (WHATWG event-stream rules).
// Chunks may be split anywhere, including between the CR and LF of a CRLF pair.

export interface SseRecord { event?: string; data: string }

const NONE: readonly SseRecord[] = Object.freeze([]);

/** s[at, at + name.length) is `name` (compared by char code: startsWith on sliced strings is slow). */
function nameAt(s: string, at: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) if (s.charCodeAt(at + i) !== name.charCodeAt(i)) return false;
  return true;
}

export class SseParser {
  /** The open line: pieces received since the last line break (none of them holds CR or LF). */
  private open: string[] = [];
  /** The record's data lines: the first one alone (most records have one), the others only if any. */
  private data: string | undefined = undefined;
  private moreData: string[] | null = null;
  private event: string | undefined = undefined;
  /** Records completed by the chunk being pushed (allocated only when one completes). */
  private done: SseRecord[] | null = null;
  /** The previous chunk ended in CR: a leading LF in the next chunk belongs to that line break. */
  private skipLf = false;

  /**
   * Feed a chunk; returns the records completed by it (usually 0 or 1). The result is read-only:
   * a chunk that completes none returns one shared empty array (no garbage per chunk).
   */
  push(chunk: string): readonly SseRecord[] {
    this.scan(chunk);
    return this.take();
  }

  /** push() for several chunks of one read: the records completed are appended to `into` (made when one is). */
  pushInto(chunk: string, into: SseRecord[] | null): SseRecord[] | null {
    this.done = into;
    this.scan(chunk);
    const out = this.done;
    this.done = null;
    return out;
  }

  private scan(chunk: string): void {
    // A long line (a 1 MB data field) arrives over many chunks: keep its pieces until a line break
    // comes, rather than joining and rescanning all of it per chunk (quadratic: ~14 ms per MB).
    let s = chunk;
    let from = 0; // s has no CR or LF before this
    if (this.open.length > 0) {
      if (chunk.indexOf('\n') === -1 && chunk.indexOf('\r') === -1) { this.open.push(chunk); return; }
      this.open.push(chunk);
      s = this.open.join('');
      from = s.length - chunk.length;
      this.open = [];
    }
    let pos = 0;
    if (this.skipLf) {
      this.skipLf = false;
      if (s.charCodeAt(0) === 10) pos = 1;
    }
    const len = s.length;
    // Cache the next CR / LF positions so a chunk with many lines is scanned once.
    let lfAt = -2;
    let crAt = -2;
    while (pos < len) {
      if (lfAt !== -1 && lfAt < pos) lfAt = s.indexOf('\n', Math.max(pos, from));
      if (crAt !== -1 && crAt < pos) crAt = s.indexOf('\r', Math.max(pos, from));
      let end: number;
      let next: number;
      if (crAt !== -1 && (lfAt === -1 || crAt < lfAt)) {
        end = crAt;
        if (crAt + 1 < len) next = s.charCodeAt(crAt + 1) === 10 ? crAt + 2 : crAt + 1;
        else { next = len; this.skipLf = true; }
      } else if (lfAt !== -1) {
        end = lfAt;
        next = lfAt + 1;
      } else break;
      this.line(s, pos, end);
      pos = next;
    }
    if (pos < len) this.open.push(s.slice(pos));
  }

  private take(): readonly SseRecord[] {
    const out = this.done;
    this.done = null;
    return out ?? NONE;
  }

  /** End of stream: a final record without its blank line is still delivered (lenient). */
  end(): readonly SseRecord[] {
    const rest = this.open.join('');
    if (rest.length > 0) this.line(rest, 0, rest.length);
    this.open = [];
    this.dispatch();
    return this.take();
  }

  private line(s: string, start: number, end: number): void {
    if (start === end) { this.dispatch(); return; }
    if (s.charCodeAt(start) === 58) return; // ':' comment (keep-alive)
    let colon = s.indexOf(':', start);
    if (colon === -1 || colon > end) colon = end;
    // The field name is compared in place (a slice per line was garbage on every chunk).
    const isData = colon - start === 4 && nameAt(s, start, 'data');
    if (!isData && !(colon - start === 5 && nameAt(s, start, 'event'))) return; // id, retry: not needed by a proxy; unknown fields are ignored per spec
    let value = '';
    if (colon < end) {
      const v = s.charCodeAt(colon + 1) === 32 && colon + 1 < end ? colon + 2 : colon + 1;
      value = s.slice(v, end);
    }
    if (!isData) this.event = value;
    else if (this.data === undefined) this.data = value;
    else (this.moreData ??= []).push(value);
  }

  private dispatch(): void {
    const first = this.data;
    if (first === undefined) { this.event = undefined; return; }
    const data = this.moreData === null ? first : `${first}\n${this.moreData.join('\n')}`;
    (this.done ??= []).push(this.event !== undefined ? { event: this.event, data } : { data });
    this.data = undefined;
    this.moreData = null;
    this.event = undefined;
  }
}

/** Encode one SSE record. Multi-line data becomes several data lines. */
export function sseFrame(data: string, event?: string): string {
  const body = data.indexOf('\n') === -1 && data.indexOf('\r') === -1
    ? `data: ${data}\n\n`
    : `data: ${data.split(/\r\n|\r|\n/).join('\ndata: ')}\n\n`;
  return event !== undefined ? `event: ${event}\n${body}` : body;
}

/** SSE comment line used as keep-alive during long upstream silences. */
export const SSE_KEEPALIVE = ': keep-alive\n\n';
