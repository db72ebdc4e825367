// A lean HTTP/1.1 client for the model plane's upstream calls: the part of undici's Dispatcher that
// gateway/upstream.ts's Exchange uses (dispatch() with the onRequestStart/onResponseStart/
// onResponseData/onResponseEnd/onResponseError handler, its controller's abort/pause/resume, and
// close()/destroy()), over node:net and node:tls with a keep-alive pool per origin.
//
// Why not undici: per request undici builds a Request (header validation with a RegExp per
// header), runs llhttp in wasm with a JS callback per header, arms its own timers and writes
// several buffers; in the gateway's CPU profile that was the largest single part (13 % of its
// samples). Here a request is one buffer written once (head and body, the head written as bytes
// with no string per line), the header block of a frozen header object is validated and encoded
// once (cached), the response head is parsed from one latin1 string, and the timeouts are
// deadlines checked by one coarse clock (TICK_MS) per agent (owned by it, stopped by
// close()/destroy() and when its last socket closes), not a timer per request.
// Measured against undici's Agent.dispatch (one process pinned to a core, 20,000 POSTs to bench/mock-upstream.js):
// 29-39 % less CPU per request at c=64 (11-18 us), 28-45 % less at c=1 (notes of session 18, report-h1).
//
// What it does not do: HTTP/2 (undici does not use it for http:// either), pipelining, proxies,
// upgrades (101 is an error), request bodies other than a string or a Buffer.
// Errors carry undici's codes (UND_ERR_CONNECT_TIMEOUT, UND_ERR_HEADERS_TIMEOUT, UND_ERR_BODY_TIMEOUT,
// UND_ERR_SOCKET, UND_ERR_HEADERS_OVERFLOW...) so that whoever classifies them (gateway/upstream.ts
// networkFailure) and whoever reads the messages sees the same as before.
import { connect as netConnect, isIP, type Socket } from 'node:net';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';

export interface H1AgentOptions {
  /** Connect (TCP + TLS handshake) timeout. */
  connectMs: number;
  /** An idle keep-alive socket is closed after this (or 1 s before the server's Keep-Alive: timeout=N). */
  keepAliveTimeout: number;
  /** Sockets per origin at most; requests beyond them wait in a FIFO. */
  connections: number;
  /** Extra TLS options (tests: a private CA). The system CAs and NODE_EXTRA_CA_CERTS apply as in node:tls. */
  tls?: ConnectionOptions;
}

/** What the model plane and the A2A hop call on their dispatcher (an H1Agent). */
export interface UpstreamDispatcher {
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  close(): Promise<void>;
  destroy(): Promise<void>;
  /** Pool nothing from now on, still taking calls (see H1Agent.retire). */
  retire(): void;
}

/** An error with undici's code for the same condition. */
export class H1Error extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
    this.name = code.endsWith('TIMEOUT') ? 'TimeoutError' : 'H1Error';
  }
}

/** A response head above this is an error (undici's maxHeaderSize default). */
export const MAX_HEAD = 64 * 1024;
/** Resolution of the shared clock that checks connect, first-byte, between-chunks and idle deadlines. */
export const TICK_MS = 100;
/** A server's keep-alive hint minus this is how long we keep its idle socket (undici's threshold). */
const KEEPALIVE_MARGIN = 1000;

type Handler = Dispatcher.DispatchHandler;
type Options = Dispatcher.DispatchOptions;

// Parser states and clock kinds (plain numbers: this project's TypeScript is erasable syntax only).
const Parse = { Head: 0, Length: 1, Close: 2, ChunkSize: 3, ChunkData: 4, ChunkEnd: 5, Trailers: 6, Done: 7 } as const;
const Clock = { None: 0, Connect: 1, Headers: 2, Body: 3, Idle: 4 } as const;
type ParseState = typeof Parse[keyof typeof Parse];
type ClockKind = typeof Clock[keyof typeof Clock];

// ---------------------------------------------------------------------------------------------
// Request heads, written as bytes (HeadWriter). A frozen header object (the Exchange reuses the
// merged headers of a target) is validated and serialized once.

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0\r\n]/;
const BAD_PATH = /[^\u0021-\u00ff]/;
/** A frozen header object's block, as the bytes of the encoding it was written in. */
const heads = new WeakMap<object, { enc: HeadEncoding; bytes: Buffer }>();
/** A Buffer body up to this many bytes is copied behind its head and written with it as one buffer. */
const ONE_WRITE_BODY = 16 * 1024;

/** Framing header names: ours (the body is known, its length is sent). Looked up only for a name of one of their lengths. */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade']);
const CONTENT_LENGTH = 'content-length: ';
/** A header value up to this long is stored byte by byte (a loop beats a native call's overhead); a longer one is written. */
const SHORT_VALUE = 64;

/**
 * How a head's text becomes bytes: Latin-1 (one byte a character) when a body follows it, UTF-8
 * for a head alone, as the head was written when it was one string (a string body's head is ASCII
 * or was written as Latin-1 apart from it; a Buffer body's head as Latin-1; a head alone as a string).
 */
type HeadEncoding = 'latin1' | 'utf8';

/**
 * A request's head written as bytes, then copied out once with its body: no string per header
 * line and no joined head for the socket write to flatten and encode (an A2A call's head and body:
 * ~2 KB of garbage less per call, 107 B left). One per agent: a head is written in one synchronous step.
 */
class HeadWriter {
  #buf = Buffer.allocUnsafe(4096);
  #at = 0;
  enc: HeadEncoding = 'latin1';

  begin(enc: HeadEncoding): void {
    this.#at = 0;
    this.enc = enc;
  }

  get at(): number { return this.#at; }

  text(s: string): void {
    this.#room(this.enc === 'latin1' ? s.length : s.length * 3);
    this.#at += this.#buf.write(s, this.#at, this.enc);
  }

  bytes(b: Buffer): void {
    this.#room(b.length);
    this.#at += b.copy(this.#buf, this.#at);
  }

  /**
   * One header line, `prefix` (`name: `) then `value` then CRLF, with one room check and the CRLF
   * stored as two bytes; false, with nothing kept, when the value holds NUL, CR or LF. Each native
   * write costs more than storing a few dozen bytes (an A2A call's head has ten lines).
   */
  line(prefix: string, value: string): boolean {
    const latin1 = this.enc === 'latin1';
    const short = latin1 && value.length <= SHORT_VALUE;
    if (!short && BAD_VALUE.test(value)) return false;
    this.#room(prefix.length + (latin1 ? value.length : value.length * 3) + 2);
    const buf = this.#buf;
    let at = this.#at;
    // A name (a token: ASCII) is stored byte by byte; so is a short Latin-1 value (each
    // character's low byte, as write(value, 'latin1') stores it), checked as it goes: no native
    // call and no RegExp for either. The line is only kept (#at moved) once it is whole and valid.
    for (let i = 0; i < prefix.length; i++) buf[at++] = prefix.charCodeAt(i);
    if (short) {
      for (let i = 0; i < value.length; i++) {
        const c = value.charCodeAt(i);
        if (c === 0 || c === 10 || c === 13) return false;
        buf[at++] = c & 0xff;
      }
    } else at += buf.write(value, at, this.enc);
    buf[at] = 13;
    buf[at + 1] = 10;
    this.#at = at + 2;
    return true;
  }

  /** `METHOD path HTTP/1.1` and its CRLF (the space after the method stored as a byte). */
  requestLine(method: string, path: string): void {
    this.#room(method.length + 1 + (this.enc === 'latin1' ? path.length : path.length * 3) + 11);
    const buf = this.#buf;
    let at = this.#at + buf.write(method, this.#at, this.enc);
    buf[at++] = 32;
    at += buf.write(path, at, this.enc);
    this.#at = at + buf.write(' HTTP/1.1\r\n', at, 'latin1');
  }

  /** `content-length: n` and the blank line that ends the head, the digits stored as bytes (no string made of n). */
  contentLength(n: number): void {
    this.#room(CONTENT_LENGTH.length + 20);
    const buf = this.#buf;
    let at = this.#at + buf.write(CONTENT_LENGTH, this.#at, 'latin1');
    let digits = 1;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
    for (let i = digits - 1, x = n; i >= 0; i--, x = Math.floor(x / 10)) buf[at + i] = 48 + (x % 10);
    at += digits;
    buf[at] = 13;
    buf[at + 1] = 10;
    buf[at + 2] = 13;
    buf[at + 3] = 10;
    this.#at = at + 4;
  }

  /** A copy of what was written from `from` on. */
  since(from: number): Buffer {
    return Buffer.from(this.#buf.subarray(from, this.#at));
  }

  /** The head, and `body` (a string as UTF-8, of `bodyBytes` bytes) after it, as one new Buffer. */
  end(body: string | Buffer | null, bodyBytes: number): Buffer {
    const out = Buffer.allocUnsafe(this.#at + bodyBytes);
    this.#buf.copy(out, 0, 0, this.#at);
    if (typeof body === 'string') out.write(body, this.#at, 'utf8');
    else if (body !== null) body.copy(out, this.#at);
    // A head over 64 KiB (headers that large are the caller's choice) is not kept for the next one.
    if (this.#buf.length > MAX_HEAD) this.#buf = Buffer.allocUnsafe(4096);
    return out;
  }

  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#at + n));
    this.#buf.copy(grown, 0, 0, this.#at);
    this.#buf = grown;
  }
}

/** The header lines, in the object's order (a frozen object's are validated and encoded once). */
function writeHeaders(w: HeadWriter, h: Options['headers']): void {
  if (h == null) return;
  if (typeof h !== 'object' || Array.isArray(h) || Symbol.iterator in (h as object)) throw new H1Error('headers: a plain object', 'UND_ERR_INVALID_ARG');
  const frozen = Object.isFrozen(h);
  if (frozen) {
    const hit = heads.get(h);
    if (hit !== undefined && hit.enc === w.enc) { w.bytes(hit.bytes); return; }
  }
  const from = w.at;
  for (const name in h) {
    const v = (h as Record<string, unknown>)[name];
    if (v === undefined || v === null) continue;
    let prefix = prefixes.get(name);
    if (prefix === undefined) {
      if (!TOKEN.test(name)) throw new H1Error(`invalid header name ${JSON.stringify(name)}`, 'UND_ERR_INVALID_ARG');
      // Framing is ours: the body is known, its length is sent.
      const n = name.length;
      if ((n === 7 || n === 10 || n === 14 || n === 17) && FRAMING.has(name.toLowerCase())) continue;
      prefix = `${name}: `;
      if (prefixes.size < MAX_PREFIXES) prefixes.set(name, prefix);
    }
    if (typeof v === 'string') headerLine(w, name, prefix, v);
    else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) headerLine(w, name, prefix, String(v[i]));
    else headerLine(w, name, prefix, String(v));
  }
  if (frozen) heads.set(h, { enc: w.enc, bytes: w.since(from) });
}

/**
 * `name: ` of each header name seen, once it was checked (a token, not a framing name): a head's
 * lines are then written with no `name: ` string made and no name regex run per header per call
 * (an A2A call's eight headers: ~250 B less per call). Names only, never values; bounded.
 */
const prefixes = new Map<string, string>();
const MAX_PREFIXES = 512;

function headerLine(w: HeadWriter, name: string, prefix: string, value: string): void {
  if (!w.line(prefix, value)) throw new H1Error(`invalid ${name} header value`, 'UND_ERR_INVALID_ARG');
}

function hasHost(h: Options['headers']): boolean {
  if (h == null || typeof h !== 'object') return false;
  for (const name in h) if (name.length === 4 && name.toLowerCase() === 'host') return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// One request: the controller the handler is given.

class Req implements Dispatcher.DispatchController {
  readonly handler: Handler;
  readonly method: string;
  /** Everything before the body, with the body when it goes in the same write; else the body, written after it. */
  readonly head: Buffer;
  readonly body: Buffer | null;
  readonly headersMs: number;
  readonly bodyMs: number;
  readonly noBody: boolean;
  conn: Conn | null = null;
  pool: Pool | null = null;
  /** Retried once already (a reused socket closed before any byte of its response). */
  retried = false;
  aborted = false;
  paused = false;
  reason: Error | null = null;
  /** The handler has been told the end or an error: nothing more reaches it. */
  done = false;

  constructor(pool: Pool, opts: Options, handler: Handler) {
    this.handler = handler;
    this.pool = pool;
    const method = (this.method = opts.method);
    const path = opts.path;
    if (typeof path !== 'string' || path[0] !== '/' || BAD_PATH.test(path)) throw new H1Error('invalid request path', 'UND_ERR_INVALID_ARG');
    if (!TOKEN.test(method)) throw new H1Error('invalid request method', 'UND_ERR_INVALID_ARG');
    const b = opts.body;
    const w = pool.agent.heads;
    w.begin(b == null ? 'utf8' : 'latin1');
    w.requestLine(method, path);
    if (!hasHost(opts.headers)) w.text(pool.hostLine);
    writeHeaders(w, opts.headers);
    this.body = null;
    if (typeof b === 'string') {
      // Head and body in one buffer, written once (the body as UTF-8).
      const n = Buffer.byteLength(b);
      w.contentLength(n);
      this.head = w.end(b, n);
    } else if (b instanceof Uint8Array) {
      w.contentLength(b.byteLength);
      const body = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
      // A small body is copied behind its head (one buffer, one write: no cork, no writev of two).
      if (body.length <= ONE_WRITE_BODY) this.head = w.end(body, body.length);
      else { this.head = w.end(null, 0); this.body = body; }
    } else if (b == null) {
      w.text(method === 'POST' || method === 'PUT' || method === 'PATCH' ? 'content-length: 0\r\n\r\n' : '\r\n');
      this.head = w.end(null, 0);
    } else {
      throw new H1Error('body: a string or a Buffer', 'UND_ERR_INVALID_ARG');
    }
    this.headersMs = opts.headersTimeout ?? 300_000;
    this.bodyMs = opts.bodyTimeout ?? 300_000;
    this.noBody = method === 'HEAD';
  }

  abort(reason: Error): void {
    if (this.aborted || this.done) return;
    this.aborted = true;
    this.reason = reason;
    const c = this.conn;
    if (c !== null) c.destroy(reason); // detaches and fails this request
    else this.fail(reason); // queued: skipped when its turn comes
  }

  pause(): void {
    this.paused = true;
    this.conn?.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const c = this.conn;
    if (c === null) return;
    // The body clock starts again (as undici's on resume): the wait was the reader's, and the
    // bytes that came meanwhile are read only in the loop's next poll phase, after the timers'.
    if (c.clock === Clock.Body) { c.deadline = performance.now() + this.bodyMs; c.touched = false; }
    c.socket.resume();
  }

  fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.conn = null;
    this.handler.onResponseError?.(this, err);
  }
}

// ---------------------------------------------------------------------------------------------
// One connection and its response parser.

class Conn {
  readonly pool: Pool;
  readonly socket: Socket;
  req: Req | null = null;
  /** Requests it has carried: a socket that carried one before is a reused one. */
  uses = 0;
  connected = false;
  closed = false;
  /** The server said connection: close, or the response ran until close: not reused. */
  reusable = true;
  /** Any byte of the current response arrived. */
  started = false;
  idleMs: number;
  error: Error | null = null;
  // clock
  clock: ClockKind = Clock.None;
  deadline = 0;
  touched = false;
  // parser
  state: ParseState = Parse.Head;
  pending: Buffer | null = null;
  shared = false;
  left = 0;
  line = '';
  status = 0;
  trailers: Record<string, string | string[]> | null = null;

  constructor(pool: Pool) {
    this.pool = pool;
    this.idleMs = pool.agent.keepAliveTimeout;
    const o = pool.url;
    const port = Number(o.port) || (pool.tls ? 443 : 80);
    const host = o.hostname.startsWith('[') ? o.hostname.slice(1, -1) : o.hostname;
    if (pool.tls) {
      const tls = process.getBuiltinModule('node:tls');
      this.socket = tls.connect({ ...pool.agent.tlsOptions, host, port, servername: isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'] });
      this.socket.once('secureConnect', () => this.onConnect());
      this.socket.on('data', (b: Buffer) => this.onData(b));
    } else {
      // Reads land in one shared buffer (the head is parsed from it, body chunks are copied out):
      // no Readable push/emit and no buffer allocated per read.
      const readBuffer = pool.agent.readBuffer;
      this.socket = netConnect({ host, port, onread: { buffer: readBuffer, callback: (n: number) => { this.onData(readBuffer.subarray(0, n), true); return true; } } });
      this.socket.once('connect', () => this.onConnect());
    }
    this.socket.setNoDelay(true);
    this.socket.on('error', (e: Error) => { this.error ??= e; });
    this.socket.on('close', () => this.onClose());
    this.arm(Clock.Connect, pool.agent.connectMs);
    pool.agent.track(this);
  }

  arm(kind: ClockKind, ms: number): void {
    this.clock = kind;
    this.deadline = performance.now() + ms;
    this.touched = false;
  }

  /** The shared clock's check (every TICK_MS). */
  check(now: number): void {
    if (this.clock === Clock.None) return;
    if (this.touched && this.clock === Clock.Body) {
      // Data arrived since the last tick: the between-chunks timeout starts again.
      this.touched = false;
      this.deadline = now + (this.req?.bodyMs ?? 0);
      return;
    }
    if (now < this.deadline) return;
    if (this.clock === Clock.Body && this.req?.paused === true) {
      // Paused by the reader (a slow client): no data is expected, as undici's body timeout does not run while paused.
      this.deadline = now + this.req.bodyMs;
      return;
    }
    const kind = this.clock;
    this.clock = Clock.None;
    if (kind === Clock.Idle) this.destroy(null);
    else if (kind === Clock.Connect) this.destroy(new H1Error(`Connect Timeout Error (attempted ${this.pool.origin}, timeout ${this.pool.agent.connectMs} ms)`, 'UND_ERR_CONNECT_TIMEOUT'));
    else if (kind === Clock.Headers) this.destroy(new H1Error('Headers Timeout Error', 'UND_ERR_HEADERS_TIMEOUT'));
    else this.destroy(new H1Error('Body Timeout Error', 'UND_ERR_BODY_TIMEOUT'));
  }

  private onConnect(): void {
    this.connected = true;
    this.clock = Clock.None;
    const r = this.req;
    if (r !== null) this.write(r);
    else this.pool.release(this);
  }

  /** Start `r` on this socket (connected or not yet). */
  start(r: Req): void {
    if (this.uses > 0) this.socket.ref();
    this.req = r;
    r.conn = this;
    this.uses++;
    this.started = false;
    this.state = Parse.Head;
    this.status = 0;
    this.trailers = null;
    if (r.paused) this.socket.pause();
    if (this.connected) this.write(r);
  }

  private write(r: Req): void {
    const s = this.socket;
    this.arm(Clock.Headers, r.headersMs);
    const body = r.body;
    if (body === null) {
      s.write(r.head);
    } else {
      s.cork();
      s.write(r.head);
      s.write(body);
      s.uncork();
    }
  }

  /** `shared`: `buf` is the shared read buffer, overwritten by the next read: what is kept is copied. */
  private onData(buf: Buffer, shared = false): void {
    this.shared = shared;
    const r = this.req;
    if (r === null) {
      // Bytes with no request waiting for them: the server is out of step; never reuse.
      this.destroy(null);
      return;
    }
    this.started = true;
    try {
      this.parse(r, buf);
    } catch (err) {
      // A parse error, or a handler that threw: the socket is done, the request failed. (A throw
      // from onResponseEnd, after the socket went on to another request, is the handler's own.)
      if (this.req !== r && r.done) throw err;
      this.destroy(err as Error);
    }
  }

  private parse(r: Req, buf: Buffer): void {
    let at = 0;
    const end = buf.length;
    while (at < end || this.state === Parse.Done) {
      switch (this.state) {
        case Parse.Head: {
          let b = buf;
          let from = at;
          if (this.pending !== null) {
            from = Math.max(0, this.pending.length - 3);
            b = Buffer.concat([this.pending, at === 0 ? buf : buf.subarray(at)]);
            buf = b;
            at = 0;
            this.shared = false;
          }
          const stop = b.indexOf('\r\n\r\n', from, 'latin1');
          const avail = b.length - at;
          if (stop < 0) {
            if (avail > MAX_HEAD) throw new H1Error('Headers Overflow Error', 'UND_ERR_HEADERS_OVERFLOW');
            const rest = at === 0 ? b : b.subarray(at);
            this.pending = this.shared ? Buffer.from(rest) : rest;
            return;
          }
          if (stop - at > MAX_HEAD) throw new H1Error('Headers Overflow Error', 'UND_ERR_HEADERS_OVERFLOW');
          this.pending = null;
          const head = b.toString('latin1', at, stop);
          at = stop + 4;
          return this.parseFrom(r, b, at, head);
        }
        case Parse.Length: {
          const n = Math.min(this.left, end - at);
          const chunk = this.chunkOf(buf, at, at + n);
          at += n;
          this.left -= n;
          if (this.left === 0) this.state = Parse.Done;
          this.touched = true;
          r.handler.onResponseData?.(r, chunk);
          if (r.done) return;
          break;
        }
        case Parse.Close: {
          this.touched = true;
          r.handler.onResponseData?.(r, this.chunkOf(buf, at, end));
          return;
        }
        case Parse.ChunkSize: {
          const nl = buf.indexOf(10, at);
          if (nl < 0) {
            this.line += buf.toString('latin1', at, end);
            if (this.line.length > 1024) throw new H1Error('Invalid chunk size', 'HPE_INVALID_CHUNK_SIZE');
            return;
          }
          // A line begun in an earlier read is joined as text; a whole one is read from the bytes.
          if (this.line === '') this.left = chunkSize(buf, at, nl);
          else {
            const line = this.line + buf.toString('latin1', at, nl);
            this.line = '';
            this.left = chunkSize(line, 0, line.length);
          }
          at = nl + 1;
          this.state = this.left === 0 ? Parse.Trailers : Parse.ChunkData;
          break;
        }
        case Parse.ChunkData: {
          const n = Math.min(this.left, end - at);
          const chunk = this.chunkOf(buf, at, at + n);
          at += n;
          this.left -= n;
          if (this.left === 0) { this.state = Parse.ChunkEnd; this.left = 2; }
          this.touched = true;
          r.handler.onResponseData?.(r, chunk);
          if (r.done) return;
          break;
        }
        case Parse.ChunkEnd: {
          // The CRLF after a chunk's data (it may arrive split).
          const c = buf[at++];
          if (c !== (this.left === 2 ? 13 : 10)) throw new H1Error('Invalid chunk end', 'HPE_STRICT');
          if (--this.left === 0) this.state = Parse.ChunkSize;
          break;
        }
        case Parse.Trailers: {
          const nl = buf.indexOf(10, at);
          if (nl < 0) {
            this.line += buf.toString('latin1', at, end);
            if (this.line.length > MAX_HEAD) throw new H1Error('Headers Overflow Error', 'UND_ERR_HEADERS_OVERFLOW');
            return;
          }
          let line = this.line + buf.toString('latin1', at, nl);
          this.line = '';
          at = nl + 1;
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') { this.state = Parse.Done; break; }
          const colon = line.indexOf(':');
          if (colon <= 0) throw new H1Error('Invalid trailer', 'HPE_INVALID_HEADER_TOKEN');
          addHeader((this.trailers ??= {}), line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
          break;
        }
        case Parse.Done: {
          // Bytes after the end of the response: the server is out of step; not reused.
          if (at < end) this.reusable = false;
          this.finish(r);
          return;
        }
      }
    }
  }

  /**
   * Body bytes `from`..`to` of a read, as the handler keeps them: a view of a read's own buffer, or
   * a copy out of the shared one (copied into a Buffer of their own: no view made of it first).
   */
  private chunkOf(buf: Buffer, from: number, to: number): Buffer {
    if (!this.shared) return from === 0 && to === buf.length ? buf : buf.subarray(from, to);
    const c = Buffer.allocUnsafe(to - from);
    buf.copy(c, 0, from, to);
    return c;
  }

  /** A complete head: the status line and headers; then the body from `at`. */
  private parseFrom(r: Req, b: Buffer, at: number, head: string): void {
    let eol = head.indexOf('\r\n');
    if (eol < 0) eol = head.length;
    // HTTP/1.x NNN[ reason]
    if (eol < 12 || !head.startsWith('HTTP/1.') || head.charCodeAt(8) !== 32 || (eol > 12 && head.charCodeAt(12) !== 32)) throw new H1Error('Invalid status line', 'HPE_INVALID_STATUS');
    const status = Number(head.slice(9, 12));
    if (!(status >= 100 && status <= 999) || !isDigit(head.charCodeAt(9)) || !isDigit(head.charCodeAt(10)) || !isDigit(head.charCodeAt(11))) throw new H1Error('Invalid status code', 'HPE_INVALID_STATUS');
    const http10 = head.charCodeAt(7) === 48;
    const headers: IncomingHttpHeaders = {};
    let length = -1;
    let chunked = false;
    let close = http10;
    let keepAliveHint = -1;
    let pos = eol + 2;
    while (pos < head.length) {
      let next = head.indexOf('\r\n', pos);
      if (next < 0) next = head.length;
      const colon = head.indexOf(':', pos);
      const c0 = head.charCodeAt(pos);
      if (colon <= pos || colon > next || c0 === 32 || c0 === 9) throw new H1Error('Invalid header', 'HPE_INVALID_HEADER_TOKEN');
      const name = headerName(head, pos, colon);
      // "name: value" as servers send it needs no trim.
      const value = head.charCodeAt(colon + 1) === 32 && head.charCodeAt(colon + 2) > 32 && head.charCodeAt(next - 1) > 32 ? head.slice(colon + 2, next) : head.slice(colon + 1, next).trim();
      pos = next + 2;
      addHeader(headers as Record<string, string | string[]>, name, value);
      if (name.length < 10 || name.length > 17) continue;
      if (name === 'content-length') {
        const n = /^\d+$/.test(value) ? Number(value) : NaN;
        if (!Number.isSafeInteger(n) || (length !== -1 && length !== n)) throw new H1Error('Invalid content-length', 'HPE_INVALID_CONTENT_LENGTH');
        length = n;
      } else if (name === 'transfer-encoding') {
        chunked = /(?:^|,)\s*chunked\s*$/i.test(value);
        if (!chunked) close = true; // some other coding: the body runs until close
      } else if (name === 'connection') {
        const v = value.toLowerCase();
        if (v.includes('close')) close = true;
        else if (http10 && v.includes('keep-alive')) close = false;
      } else if (name === 'keep-alive') {
        const t = value.search(KEEPALIVE_TIMEOUT);
        if (t >= 0) keepAliveHint = digitsAt(value, t + 8) * 1000;
      }
    }
    if (status < 200) {
      // 1xx: an interim answer; the real one follows (101 Switching Protocols is not ours to take).
      if (status === 101) throw new H1Error('unexpected 101 Switching Protocols', 'UND_ERR_SOCKET');
      this.state = Parse.Head;
      if (at < b.length) this.parse(r, b.subarray(at));
      return;
    }
    if (chunked && length !== -1) throw new H1Error('both transfer-encoding and content-length', 'HPE_UNEXPECTED_CONTENT_LENGTH');
    if (close) this.reusable = false;
    if (keepAliveHint >= 0) {
      const ms = Math.min(this.pool.agent.keepAliveTimeout, keepAliveHint - KEEPALIVE_MARGIN);
      if (ms <= 0) this.reusable = false; else this.idleMs = ms;
    }
    this.status = status;
    if (r.noBody || status === 204 || status === 304) this.state = Parse.Done;
    else if (chunked) { this.state = Parse.ChunkSize; this.line = ''; }
    else if (length >= 0) { this.left = length; this.state = length === 0 ? Parse.Done : Parse.Length; }
    else { this.state = Parse.Close; this.reusable = false; }
    this.arm(Clock.Body, r.bodyMs);
    const sp = head.indexOf(' ', 9);
    r.handler.onResponseStart?.(r, status, headers, sp > 0 && sp < eol ? head.slice(sp + 1, eol) : '');
    if (r.done || this.req !== r) return;
    if (at < b.length || this.state === Parse.Done) this.parse(r, at === 0 ? b : b.subarray(at));
  }

  /** The response ended: tell the handler, then the socket goes back to the pool (or closes). */
  private finish(r: Req): void {
    this.req = null;
    this.clock = Clock.None;
    r.conn = null;
    r.done = true;
    const t = this.trailers;
    this.trailers = null;
    if (this.reusable && !this.pool.closing) {
      if (r.paused) this.socket.resume();
      this.pool.release(this);
    } else {
      this.destroy(null);
    }
    r.handler.onResponseEnd?.(r, t ?? {});
  }

  /** Close the socket; a request on it fails with `err` (or a socket error if none). */
  destroy(err: Error | null): void {
    if (err !== null) this.error ??= err;
    if (!this.closed) this.socket.destroy();
    this.onClose();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.clock = Clock.None;
    this.pool.agent.untrack(this);
    const r = this.req;
    this.req = null;
    if (r !== null) {
      r.conn = null;
      if (this.state === Parse.Close && this.error === null) {
        // The body ran until close: this is its end.
        r.done = true;
        this.pool.removed(this);
        r.handler.onResponseEnd?.(r, {});
        return;
      }
      if (!this.started && this.uses > 1 && !r.retried && !r.aborted && !r.done && this.error?.name !== 'TimeoutError') {
        // A reused socket the server closed before any byte of the answer (keep-alive expiry
        // race): once more on a fresh socket. Never a request whose response had started.
        r.retried = true;
        this.pool.removed(this, r);
        return;
      }
      this.pool.removed(this);
      r.fail(r.aborted && r.reason ? r.reason : this.error ?? new H1Error('other side closed', 'UND_ERR_SOCKET'));
      return;
    }
    this.pool.removed(this);
  }
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;

/** Where a keep-alive hint's timeout is (search: no match array made per answer). */
const KEEPALIVE_TIMEOUT = /timeout=\d/i;

/** The decimal number whose digits start at `at` (at least one is there). */
function digitsAt(s: string, at: number): number {
  let n = 0;
  for (let i = at; i < s.length && isDigit(s.charCodeAt(i)); i++) n = n * 10 + s.charCodeAt(i) - 48;
  return n;
}

/**
 * Names servers send on most answers (node's own in its capitals, Date, Connection, Keep-Alive,
 * Transfer-Encoding), by length: one of them is its constant, with no slice and lower-cased copy
 * made per header line (~0.5 KB per answer of node's five); any other name as before.
 */
const KNOWN_NAMES: ReadonlyArray<readonly string[] | undefined> = (() => {
  const by: string[][] = [];
  for (const n of ['date', 'vary', 'etag', 'server', 'connection', 'keep-alive', 'content-type', 'cache-control', 'content-length', 'transfer-encoding', 'x-request-id', 'retry-after', 'content-encoding', 'last-modified', 'set-cookie']) (by[n.length] ??= []).push(n);
  return by;
})();

/** The header name from `from` to `to` of the head, lower-cased. */
function headerName(head: string, from: number, to: number): string {
  const names = KNOWN_NAMES[to - from];
  if (names !== undefined) for (let k = 0; k < names.length; k++) if (isName(head, from, names[k])) return names[k];
  return head.slice(from, to).toLowerCase();
}

/** Whether the head at `from` spells `name` (lower-case ASCII) in any case: each character that letter, or its capital. */
function isName(head: string, from: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = head.charCodeAt(from + i);
    const t = name.charCodeAt(i);
    if (c !== t && !(t >= 97 && t <= 122 && c === t - 32)) return false;
  }
  return true;
}

/**
 * The size on a chunk-size line: `line` from `from` to `to` (the LF excluded), read as Latin-1 text
 * or as its bytes (a line that came whole in one read: no string made per chunk).
 */
function chunkSize(line: string | Buffer, from: number, to: number): number {
  let end = to;
  if (end > from && codeAt(line, end - 1) === 13) end--;
  for (let i = from; i < end; i++) if (codeAt(line, i) === 59) { end = i; break; } // ';': an extension follows
  let n = 0;
  let digits = 0;
  for (let i = from; i < end; i++) {
    const c = codeAt(line, i);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (d < 0) {
      // Whitespace before an extension is tolerated; anything else is not a size.
      if ((c === 32 || c === 9) && digits > 0 && allSpace(line, i, end)) break;
      throw new H1Error('Invalid chunk size', 'HPE_INVALID_CHUNK_SIZE');
    }
    n = n * 16 + d;
    if (++digits > 13) throw new H1Error('Invalid chunk size', 'HPE_INVALID_CHUNK_SIZE');
  }
  if (digits === 0) throw new H1Error('Invalid chunk size', 'HPE_INVALID_CHUNK_SIZE');
  return n;
}

const codeAt = (line: string | Buffer, i: number): number => (typeof line === 'string' ? line.charCodeAt(i) : line[i]);

/** Whether the characters from `i` to `end` are all what String#trim removes (of Latin-1: TAB..CR, space, NBSP). */
function allSpace(line: string | Buffer, i: number, end: number): boolean {
  for (; i < end; i++) {
    const c = codeAt(line, i);
    if (!(c === 32 || (c >= 9 && c <= 13) || c === 160)) return false;
  }
  return true;
}

function addHeader(h: Record<string, string | string[]>, name: string, value: string): void {
  const old = h[name];
  if (old === undefined) {
    if (name === '__proto__') Object.defineProperty(h, name, { value, enumerable: true, configurable: true, writable: true });
    else h[name] = value;
  } else if (typeof old === 'string') h[name] = [old, value];
  else old.push(value);
}

// ---------------------------------------------------------------------------------------------
// The pool of one origin.

class Pool {
  readonly agent: H1Agent;
  readonly origin: string;
  readonly url: URL;
  readonly tls: boolean;
  readonly hostLine: string;
  /** Idle sockets, the most recently used last (LIFO). */
  readonly idle: Conn[] = [];
  /** Waiting requests (FIFO from `qHead`). */
  queue: Req[] = [];
  qHead = 0;
  count = 0;
  closing = false;

  constructor(agent: H1Agent, origin: string) {
    this.agent = agent;
    this.origin = origin;
    this.url = new URL(origin);
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') throw new H1Error(`unsupported protocol ${this.url.protocol}`, 'UND_ERR_INVALID_ARG');
    this.tls = this.url.protocol === 'https:';
    this.hostLine = `host: ${this.url.host}\r\n`;
  }

  enqueue(r: Req, first = false): void {
    for (;;) {
      const c = this.idle.pop();
      if (c === undefined) break;
      if (c.closed || c.socket.destroyed) continue;
      c.start(r);
      return;
    }
    if (this.count < this.agent.connections) {
      this.count++;
      new Conn(this).start(r);
      return;
    }
    if (first) {
      this.queue.splice(this.qHead, 0, r);
    } else this.queue.push(r);
  }

  private nextQueued(): Req | undefined {
    while (this.qHead < this.queue.length) {
      const r = this.queue[this.qHead];
      (this.queue as Array<Req | undefined>)[this.qHead++] = undefined;
      if (this.qHead === this.queue.length) { this.queue = []; this.qHead = 0; }
      if (!r.done && !r.aborted) return r;
    }
    return undefined;
  }

  /** A socket is free (connected and nothing on it). */
  release(c: Conn): void {
    const r = this.nextQueued();
    if (r !== undefined) { c.start(r); return; }
    if (this.closing) { c.destroy(null); return; }
    c.clock = Clock.Idle;
    c.deadline = this.agent.now + c.idleMs;
    // An idle socket does not keep the process alive (as undici's); start() refs it again.
    c.socket.unref();
    this.idle.push(c);
  }

  /** A socket closed; `retry`, a request to send again on a fresh one. */
  removed(c: Conn, retry?: Req): void {
    this.count--;
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    if (retry !== undefined) {
      // On a fresh socket, not another idle one that may have expired as well.
      this.count++;
      new Conn(this).start(retry);
      return;
    }
    if (this.qHead < this.queue.length && this.count < this.agent.connections) {
      const r = this.nextQueued();
      if (r !== undefined) this.enqueue(r, true);
    }
    if (this.closing && this.count === 0) this.agent.poolClosed();
  }

  closeIdle(): void {
    for (const c of this.idle.splice(0)) c.destroy(null);
  }

  destroyAll(err: Error): void {
    for (let r = this.nextQueued(); r !== undefined; r = this.nextQueued()) r.fail(err);
    for (const c of this.agent.connsOf(this)) c.destroy(err);
    this.agent.poolClosed();
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * The Dispatcher the model plane's upstream calls go through (one per Provider, made in
 * gateway/routes.ts): a keep-alive pool per origin. Makes no socket until its first request.
 */
export class H1Agent implements UpstreamDispatcher {
  readonly connectMs: number;
  readonly keepAliveTimeout: number;
  readonly connections: number;
  readonly tlsOptions: ConnectionOptions;
  /**
   * Where this agent's plain-TCP reads land (net's `onread`): what is kept (body chunks, a partial
   * head) is copied out before the callback returns, so one buffer serves every connection of the agent.
   */
  readonly readBuffer = Buffer.allocUnsafe(64 * 1024);
  /** Where this agent's request heads are written (HeadWriter). */
  readonly heads = new HeadWriter();
  /** The clock's time at its last tick (performance.now()). */
  now = 0;
  /** Every open connection: the clock checks their deadlines. */
  readonly #live = new Set<Conn>();
  /** One coarse timer per agent, running while it has a connection (unref'd: it never keeps a process alive). */
  #ticker: NodeJS.Timeout | null = null;
  readonly #pools = new Map<string, Pool>();
  #last: Pool | null = null;
  #closed = false;
  #retired = false;
  #whenClosed: Array<() => void> = [];

  constructor(opts: H1AgentOptions) {
    this.connectMs = opts.connectMs;
    this.keepAliveTimeout = opts.keepAliveTimeout;
    this.connections = opts.connections;
    this.tlsOptions = opts.tls ?? {};
  }

  dispatch(opts: Options, handler: Handler): boolean {
    if (this.#closed) throw new H1Error('The client is destroyed or closed', 'UND_ERR_CLOSED');
    const origin = typeof opts.origin === 'string' ? opts.origin : String(opts.origin);
    let pool = this.#last;
    if (pool === null || pool.origin !== origin) {
      pool = this.#pools.get(origin) ?? null;
      if (pool === null) {
        this.#pools.set(origin, (pool = new Pool(this, origin)));
        pool.closing = this.#retired;
      }
      this.#last = pool;
    }
    const r = new Req(pool, opts, handler);
    handler.onRequestStart?.(r, {});
    if (!r.aborted) pool.enqueue(r);
    return true;
  }

  /** A connection opened: on the clock (started with the first one). */
  track(c: Conn): void {
    this.#live.add(c);
    if (this.#ticker === null) {
      this.now = performance.now();
      this.#ticker = setInterval(() => this.#tick(), TICK_MS);
      this.#ticker.unref();
    }
  }

  /** A connection closed: off the clock, which stops with the last one (so close() and destroy() stop it). */
  untrack(c: Conn): void {
    this.#live.delete(c);
    if (this.#live.size === 0 && this.#ticker !== null) { clearInterval(this.#ticker); this.#ticker = null; }
  }

  connsOf(p: Pool): Conn[] {
    return [...this.#live].filter((c) => c.pool === p);
  }

  /** Whether the clock's timer is running (tests). */
  get ticking(): boolean { return this.#ticker !== null; }

  #tick(): void {
    const now = (this.now = performance.now());
    for (const c of this.#live) c.check(now);
  }

  /** Sockets open (busy or idle), for tests and stats. */
  get sockets(): number {
    let n = 0;
    for (const p of this.#pools.values()) n += p.count;
    return n;
  }

  /** No new requests; those in flight and queued complete, then every socket closes. */
  close(): Promise<void> {
    this.retire(); // its sockets close as their calls end, and it takes no new call
    this.#closed = true;
    if (this.sockets === 0) return Promise.resolve();
    return new Promise((resolve) => { this.#whenClosed.push(resolve); });
  }

  /**
   * A reload replaced this provider's endpoint: idle sockets close now, busy ones when their answer
   * ends. Unlike close() it still takes calls, since one that began under the old config (a retry,
   * a fallback attempt) may come later: it gets a socket of its own, closed after its answer.
   */
  retire(): void {
    this.#retired = true;
    for (const p of this.#pools.values()) { p.closing = true; p.closeIdle(); }
  }

  /** Every socket closes now; requests in flight or queued fail. */
  destroy(err?: Error): Promise<void> {
    this.#closed = true;
    const e = err ?? new H1Error('The client is destroyed', 'UND_ERR_DESTROYED');
    for (const p of this.#pools.values()) { p.closing = true; p.destroyAll(e); }
    return Promise.resolve();
  }

  /** A closing pool's last socket closed. */
  poolClosed(): void {
    if (this.sockets !== 0) return;
    for (const f of this.#whenClosed.splice(0)) f();
  }
}
