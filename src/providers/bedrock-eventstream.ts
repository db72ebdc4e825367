// AWS event-stream framing (application/vnd.amazon.eventstream), as Bedrock ConverseStream sends
// it. Each message: prelude (total length, headers length, CRC32 of those 8 bytes), headers,
// payload, CRC32 of everything before it. Both CRCs are checked: a corrupted frame must not be
// read as JSON with shifted boundaries. Bounded: a frame may declare at most MAX_MESSAGE bytes,
// so a hostile length cannot make us buffer without limit.
import type { SseRecord } from './sse.ts';

/** AWS caps event-stream messages at 16 MiB. */
export const MAX_MESSAGE = 16 * 1024 * 1024;
const PRELUDE = 12;
const MIN_MESSAGE = PRELUDE + 4;

export type HeaderValue = string | number | boolean | bigint | Uint8Array;
export interface EventMessage { headers: Record<string, HeaderValue>; payload: Uint8Array }

export class EventStreamError extends Error {
  override name = 'EventStreamError';
}

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zlib), the checksum event-stream uses. */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function readHeaders(b: Uint8Array, view: DataView, start: number, end: number): Record<string, HeaderValue> {
  const out: Record<string, HeaderValue> = {};
  let i = start;
  const need = (n: number) => { if (i + n > end) throw new EventStreamError('event-stream header runs past its section'); };
  while (i < end) {
    need(1);
    const nameLen = b[i++];
    need(nameLen + 1);
    const name = utf8.decode(b.subarray(i, i + nameLen));
    i += nameLen;
    const type = b[i++];
    let value: HeaderValue;
    switch (type) {
      case 0: value = true; break;
      case 1: value = false; break;
      case 2: need(1); value = view.getInt8(i); i += 1; break;
      case 3: need(2); value = view.getInt16(i); i += 2; break;
      case 4: need(4); value = view.getInt32(i); i += 4; break;
      case 5: need(8); value = view.getBigInt64(i); i += 8; break;
      case 6: case 7: {
        need(2);
        const len = view.getUint16(i);
        i += 2;
        need(len);
        const raw = b.subarray(i, i + len);
        value = type === 7 ? utf8.decode(raw) : raw.slice();
        i += len;
        break;
      }
      case 8: need(8); value = Number(view.getBigInt64(i)); i += 8; break;
      case 9: need(16); value = b.slice(i, i + 16); i += 16; break;
      default: throw new EventStreamError(`event-stream header "${name}" has unknown type ${type}`);
    }
    out[name] = value;
  }
  return out;
}

/** Decode one whole message (exactly `total` bytes at `b`); throws EventStreamError when it is malformed. */
export function decodeMessage(b: Uint8Array): EventMessage {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const total = view.getUint32(0);
  const headersLen = view.getUint32(4);
  if (total !== b.length) throw new EventStreamError(`event-stream message length ${total} does not match its ${b.length} bytes`);
  if (crc32(b, 0, 8) !== view.getUint32(8)) throw new EventStreamError('event-stream prelude CRC mismatch (corrupted frame)');
  if (crc32(b, 0, total - 4) !== view.getUint32(total - 4)) throw new EventStreamError('event-stream message CRC mismatch (corrupted frame)');
  if (PRELUDE + headersLen > total - 4) throw new EventStreamError('event-stream headers are longer than the message');
  return { headers: readHeaders(b, view, PRELUDE, PRELUDE + headersLen), payload: b.subarray(PRELUDE + headersLen, total - 4) };
}

/**
 * Incremental decoder: push bytes as they arrive (any chunking), get whole messages. After an
 * error it stays failed (framing is lost): every later push throws the same error.
 */
export class EventStreamDecoder {
  // Chunks are joined only when a prelude or a whole message is there (at most twice per
  // message), so a message arriving a byte at a time costs linear time, not quadratic.
  private chunks: Uint8Array[] = [];
  private len = 0;
  /** Length of the message being collected, once its prelude has been read. */
  private need = 0;
  private failed: EventStreamError | null = null;

  push(chunk: Uint8Array): EventMessage[] {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) { this.chunks.push(chunk); this.len += chunk.length; }
    const out: EventMessage[] = [];
    try {
      for (;;) {
        if (this.need === 0) {
          if (this.len < PRELUDE) break;
          const head = this.flat();
          const view = new DataView(head.buffer, head.byteOffset, PRELUDE);
          const total = view.getUint32(0);
          if (total < MIN_MESSAGE || total > MAX_MESSAGE) {
            // A bad length is most likely corruption: say so when the prelude CRC agrees.
            if (crc32(head, 0, 8) !== view.getUint32(8)) throw new EventStreamError('event-stream prelude CRC mismatch (corrupted frame)');
            throw new EventStreamError(`event-stream message declares ${total} bytes (allowed ${MIN_MESSAGE}..${MAX_MESSAGE})`);
          }
          this.need = total;
        }
        if (this.len < this.need) break;
        const b = this.flat();
        out.push(decodeMessage(b.subarray(0, this.need)));
        const rest = b.subarray(this.need);
        this.chunks = rest.length > 0 ? [rest] : [];
        this.len = rest.length;
        this.need = 0;
      }
    } catch (e) {
      this.failed = e instanceof EventStreamError ? e : new EventStreamError(String(e));
      throw this.failed;
    }
    return out;
  }

  /** Bytes left over at end of stream: a message cut short. */
  get pending(): number { return this.len; }

  private flat(): Uint8Array {
    if (this.chunks.length === 1) return this.chunks[0];
    const out = new Uint8Array(this.len);
    let at = 0;
    for (const c of this.chunks) { out.set(c, at); at += c.length; }
    this.chunks = [out];
    return out;
  }
}

/**
 * Event-stream messages as the records stream parsers read: `event` is the event type (an
 * exception is `exception:<type>`, a framing or transport error `error:<code>`), `data` the
 * payload text. A framing error becomes one `error:` record, then nothing more.
 */
export class EventStreamFramer {
  private readonly dec = new EventStreamDecoder();
  private dead = false;

  push(chunk: Uint8Array): SseRecord[] {
    if (this.dead) return [];
    let msgs: EventMessage[];
    try {
      msgs = this.dec.push(chunk);
    } catch (e) {
      this.dead = true;
      return [{ event: 'error:eventstream', data: (e as Error).message }];
    }
    return msgs.map(recordOf);
  }

  end(): SseRecord[] {
    if (this.dead || this.dec.pending === 0) return [];
    this.dead = true;
    return [{ event: 'error:eventstream', data: `event-stream ended inside a message (${this.dec.pending} bytes left over)` }];
  }
}

function recordOf(m: EventMessage): SseRecord {
  const type = m.headers[':message-type'];
  const data = utf8.decode(m.payload);
  if (type === 'exception') return { event: `exception:${String(m.headers[':exception-type'] ?? 'unknown')}`, data };
  if (type === 'error') return { event: `error:${String(m.headers[':error-code'] ?? 'unknown')}`, data: String(m.headers[':error-message'] ?? data) };
  return { event: String(m.headers[':event-type'] ?? ''), data };
}

/** Encode one message (used by tests and fake upstreams; string headers only). */
export function encodeMessage(headers: Record<string, string>, payload: Uint8Array): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const [k, v] of Object.entries(headers)) {
    const name = enc.encode(k);
    const value = enc.encode(v);
    const h = new Uint8Array(1 + name.length + 1 + 2 + value.length);
    h[0] = name.length;
    h.set(name, 1);
    h[1 + name.length] = 7;
    new DataView(h.buffer).setUint16(2 + name.length, value.length);
    h.set(value, 4 + name.length);
    parts.push(h);
  }
  const headersLen = parts.reduce((s, p) => s + p.length, 0);
  const total = PRELUDE + headersLen + payload.length + 4;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, total);
  view.setUint32(4, headersLen);
  view.setUint32(8, crc32(out, 0, 8));
  let at = PRELUDE;
  for (const p of parts) { out.set(p, at); at += p.length; }
  out.set(payload, at);
  view.setUint32(total - 4, crc32(out, 0, total - 4));
  return out;
}
