// Incremental Server-Sent Events parser and encoder (WHATWG event-stream rules).
// Chunks may be split anywhere, including between the CR and LF of a CRLF pair.

export interface SseRecord { event?: string; data: string }

export class SseParser {
  /** The open line: pieces received since the last line break (none of them holds CR or LF). */
  private open: string[] = [];
  private data: string[] = [];
  private event: string | undefined = undefined;
  /** The previous chunk ended in CR: a leading LF in the next chunk belongs to that line break. */
  private skipLf = false;

  /** Feed a chunk; returns the records completed by it (usually 0 or 1). */
  push(chunk: string): SseRecord[] {
    const out: SseRecord[] = [];
    // A long line (a 1 MB data field) arrives over many chunks: keep its pieces until a line break
    // comes, rather than joining and rescanning all of it per chunk (quadratic: ~14 ms per MB).
    let s = chunk;
    let from = 0; // s has no CR or LF before this
    if (this.open.length > 0) {
      if (chunk.indexOf('\n') === -1 && chunk.indexOf('\r') === -1) { this.open.push(chunk); return out; }
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
      this.line(s, pos, end, out);
      pos = next;
    }
    if (pos < len) this.open.push(s.slice(pos));
    return out;
  }

  /** End of stream: a final record without its blank line is still delivered (lenient). */
  end(): SseRecord[] {
    const out: SseRecord[] = [];
    const rest = this.open.join('');
    if (rest.length > 0) this.line(rest, 0, rest.length, out);
    this.open = [];
    this.dispatch(out);
    return out;
  }

  private line(s: string, start: number, end: number, out: SseRecord[]): void {
    if (start === end) { this.dispatch(out); return; }
    if (s.charCodeAt(start) === 58) return; // ':' comment (keep-alive)
    const colon = s.indexOf(':', start);
    let field: string;
    let value: string;
    if (colon === -1 || colon >= end) {
      field = s.slice(start, end);
      value = '';
    } else {
      field = s.slice(start, colon);
      const v = s.charCodeAt(colon + 1) === 32 && colon + 1 < end ? colon + 2 : colon + 1;
      value = s.slice(v, end);
    }
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    // id and retry are not needed by a proxy; unknown fields are ignored per spec.
  }

  private dispatch(out: SseRecord[]): void {
    if (this.data.length === 0) { this.event = undefined; return; }
    const data = this.data.length === 1 ? this.data[0] : this.data.join('\n');
    out.push(this.event !== undefined ? { event: this.event, data } : { data });
    this.data = [];
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
