// The admission's own Redis connection, without ioredis: a replica's one Redis round trip per
// request (the limiter's EVALSHA) costs ~7.5 us of CPU and ~14 KB through ioredis (Command,
// toWritable, its reply parser, Buffers turned into strings, the promise chain). Its commands are
// few and known (EVALSHA/EVAL and the seed's HSETNX/PEXPIRE), so they are written here as RESP
// bytes and their replies parsed here. Pure functions encodeInto() and parse() (tested alone), and
// RespConnection: one socket, replies matched to commands in order, a command on an idle connection
// written at once and the commands of one loop turn sent while others are in flight in one write
// (one reused Buffer, not a string per command), replies read into one reused buffer (onread), no offline queue (a command while Redis is away fails at once: 503
// store_unavailable), a stall watchdog (as redis.ts's for ioredis), and reconnection by itself.
// Where to connect (host, port or path, TLS, user, password, db) is what ioredis makes of
// AAM_REDIS_URL (openFleet passes its parsed options), so the URL means the same on both.
import { EventEmitter } from 'node:events';
import { createConnection, type NetConnectOpts, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

/** An error reply of Redis (its message is the reply's text, e.g. "NOSCRIPT No matching script..."). */
export class RespError extends Error {
  override name = 'ReplyError';
}

/** A reply: simple or bulk string, integer, nil (null), error (inside arrays), or an array of replies. */
export type Reply = string | number | null | RespError | Reply[];

/** Decimal digits of a non-negative integer. */
function digits(n: number): number {
  let d = 1;
  for (let p = 10; n >= p; p *= 10) d++;
  return d;
}

/** A non-negative integer in ASCII at buf[at...]; returns its end. */
function writeUint(buf: Buffer, at: number, n: number): number {
  const end = at + digits(n);
  let i = end;
  do { buf[--i] = 48 + (n % 10); n = Math.floor(n / 10); } while (n > 0);
  return end;
}

/** `$<bytes>\r\n<value>\r\n` at buf[at...]; returns its end. */
function writeBulk(buf: Buffer, at: number, v: string): number {
  // Written straight into place, without a byte-length pass first: a string's UTF-8 bytes are at
  // least its UTF-16 units and at most 3 per unit, so its length's digits are those of v.length
  // (always, for ASCII) or one more: then the value moves up one byte.
  const guess = digits(v.length);
  let from = at + guess + 3;
  const n = buf.write(v, from);
  const shift = digits(n) - guess;
  if (shift !== 0) { buf.copyWithin(from + shift, from, from + n); from += shift; }
  buf[at] = 36;
  const e = writeUint(buf, at + 1, n);
  buf[e] = 13; buf[e + 1] = 10;
  buf[from + n] = 13; buf[from + n + 1] = 10;
  return from + n + 2;
}

/** Bytes encodeInto() may write for this command at most. */
export function encodedBound(name: string, args: ReadonlyArray<string | number>): number {
  let n = 24 + 3 * name.length;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    // A number is at most 24 characters in decimal (String(-1.2345678901234567e-300)).
    n += typeof a === 'string' ? 24 + 3 * a.length : 48;
  }
  return n;
}

/**
 * One command in RESP (an array of bulk strings, `name` first; lengths in bytes) written at
 * buf[at...], which must have encodedBound() bytes free; returns the command's end. No string is
 * built: the values are written into the buffer as they are (integers digit by digit).
 */
export function encodeInto(buf: Buffer, at: number, name: string, args: ReadonlyArray<string | number>): number {
  buf[at] = 42;
  at = writeUint(buf, at + 1, args.length + 1);
  buf[at] = 13; buf[at + 1] = 10;
  at = writeBulk(buf, at + 2, name);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a === 'string') { at = writeBulk(buf, at, a); continue; }
    if (!Number.isSafeInteger(a)) { at = writeBulk(buf, at, String(a)); continue; }
    const neg = a < 0;
    const u = neg ? -a : a;
    buf[at] = 36;
    at = writeUint(buf, at + 1, digits(u) + (neg ? 1 : 0));
    buf[at] = 13; buf[at + 1] = 10;
    at += 2;
    if (neg) buf[at++] = 45;
    at = writeUint(buf, at, u);
    buf[at] = 13; buf[at + 1] = 10;
    at += 2;
  }
  return at;
}

/** One command in RESP, as text (encodeInto() into a buffer of its own). */
export function encode(name: string, args: ReadonlyArray<string | number>): string {
  const buf = Buffer.allocUnsafe(encodedBound(name, args));
  return buf.toString('utf8', 0, encodeInto(buf, 0, name, args));
}

/** What parseOne() returns when the reply is not all in the buffer yet. */
const PARTIAL = Symbol('partial');

/** A read position in one buffer: parseOne() moves it past each whole reply it reads. */
interface Cursor { at: number }

/** The line's end (index of its \r) from `from`, or -1 when the buffer stops before it. */
function lineEnd(buf: Buffer, from: number): number {
  const i = buf.indexOf(13, from);
  return i < 0 || i + 1 >= buf.length ? -1 : i;
}

/** An integer written in ASCII in buf[from, to) (lengths, counts, integer replies). */
function int(buf: Buffer, from: number, to: number): number {
  let neg = false;
  let n = 0;
  let i = from;
  if (buf[i] === 45) { neg = true; i++; }
  for (; i < to; i++) n = n * 10 + (buf[i] - 48);
  return neg ? -n : n;
}

/** The reply at c.at, with c.at moved past it; PARTIAL (c.at then meaningless) when it is not all there. */
function parseOne(buf: Buffer, c: Cursor): Reply | typeof PARTIAL {
  const at = c.at;
  if (at >= buf.length) return PARTIAL;
  const type = buf[at];
  const e = lineEnd(buf, at + 1);
  if (e < 0) return PARTIAL;
  switch (type) {
    case 43: // + simple string
      c.at = e + 2;
      return buf.toString('utf8', at + 1, e);
    case 45: // - error
      c.at = e + 2;
      return new RespError(buf.toString('utf8', at + 1, e));
    case 58: // : integer
      c.at = e + 2;
      return int(buf, at + 1, e);
    case 36: { // $ bulk string
      const n = int(buf, at + 1, e);
      if (n < 0) { c.at = e + 2; return null; }
      const from = e + 2;
      if (from + n + 2 > buf.length) return PARTIAL;
      c.at = from + n + 2;
      return buf.toString('utf8', from, from + n);
    }
    case 42: { // * array
      const n = int(buf, at + 1, e);
      c.at = e + 2;
      if (n < 0) return null;
      const out: Reply[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const v = parseOne(buf, c);
        if (v === PARTIAL) return PARTIAL;
        out[i] = v;
      }
      return out;
    }
    default:
      throw new Error(`not a RESP reply: byte ${type} at ${at}`);
  }
}

/**
 * Every whole reply in `buf` from `at`, in order, pushed to `out`; returns where the first reply
 * not whole yet starts (buf.length: none left). A reply split across reads is parsed again once
 * the rest has come (replies here are small: the cost is nothing next to a copy per read).
 */
export function parse(buf: Buffer, at: number, out: Reply[]): number {
  const c: Cursor = { at };
  while (c.at < buf.length) {
    const start = c.at;
    const v = parseOne(buf, c);
    if (v === PARTIAL) return start;
    out.push(v);
  }
  return c.at;
}

/** Where and how to connect: ioredis's parse of the URL (its `options`), the fields it uses for a plain connection. */
export interface RespTarget {
  host?: string; port?: number; path?: string; family?: number;
  username?: string; password?: string; db?: number; tls?: ConnectionOptions;
}

export interface RespOptions {
  /** CLIENT SETNAME. */
  name: string;
  /** A command unanswered this long (ms) resets the connection, failing everything in flight on it. */
  commandTimeoutMs: number;
  connectTimeoutMs?: number;
  /** Delay before reconnect attempt `times` (1, 2, ...). */
  retry?: (times: number) => number;
  /** Connect at the first command instead of at connect() (commands wait for that first attempt only). */
  lazy?: boolean;
}

interface Pending { resolve(v: unknown): void; reject(e: Error): void }

/** The command buffer's size (it grows for a larger turn: 64 admissions in flight are ~40 KB). */
const OUT_BYTES = 16 * 1024;

/** The read buffer's size (a read takes at most this much; a longer reply is put together from several). */
const IN_BYTES = 64 * 1024;

const NOOP: Pending = { resolve() {}, reject() {} };

/** An EVALSHA in flight (one object per call, not a closure and a catch promise): NOSCRIPT sends the script once by EVAL. */
class ScriptPending implements Pending {
  readonly conn: RespConnection;
  readonly lua: string;
  readonly args: Array<string | number>;
  readonly resolve: (v: unknown) => void;
  readonly done: (e: Error) => void;

  constructor(conn: RespConnection, lua: string, args: Array<string | number>, resolve: (v: unknown) => void, done: (e: Error) => void) {
    this.conn = conn;
    this.lua = lua;
    this.args = args;
    this.resolve = resolve;
    this.done = done;
  }

  reject(e: Error): void {
    if (!e.message.startsWith('NOSCRIPT')) { this.done(e); return; }
    this.args[0] = this.lua;
    this.conn.send('EVAL', this.args).then(this.resolve, this.done);
  }
}

/**
 * status as ioredis names it: 'wait' (not connected yet), 'connecting', 'ready', 'reconnecting',
 * 'end' (disconnect() called). Events: 'ready', 'close', 'end', 'error'.
 */
export class RespConnection extends EventEmitter {
  status: 'wait' | 'connecting' | 'ready' | 'reconnecting' | 'end' = 'wait';
  readonly #target: RespTarget;
  readonly #opts: RespOptions;
  #socket: Socket | null = null;
  /** Commands written (or to be written this turn) and not answered, oldest first: #queue[#head...]. */
  #queue: Pending[] = [];
  #head = 0;
  /**
   * This turn's commands, RESP in #buf[0, #len), written in one go at its check phase. The buffer
   * is used again next turn when the socket took the bytes at once (the usual case: a few KB to a
   * socket that is not backed up); else the socket keeps it and the next turn gets a new one.
   */
  #buf = Buffer.allocUnsafe(OUT_BYTES);
  #len = 0;
  #flushing = false;
  /** Every read's bytes (onread), parsed before the next read: replies are copied out as strings. */
  readonly #in = Buffer.allocUnsafeSlow(IN_BYTES);
  /** The unparsed tail of what was read (a reply split across reads). */
  #rest: Buffer | null = null;
  #replies: Reply[] = [];
  #attempts = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  #watch: NodeJS.Timeout | null = null;
  /** Commands sent before the first connection (lazy): they wait for its first attempt. */
  #early: Array<() => void> | null = null;
  #ready: Promise<void> | null = null;

  constructor(target: RespTarget, opts: RespOptions) {
    super();
    this.#target = target;
    this.#opts = opts;
  }

  /** Commands sent (or to be written this turn) and not answered yet: 0 when the connection is idle. */
  get unanswered(): number { return this.#queue.length - this.#head; }

  /** Connect (resolves once AUTH/SELECT/SETNAME are answered); a failed attempt rejects and keeps reconnecting in the background. */
  connect(): Promise<void> {
    if (this.status !== 'wait') return this.#ready ?? Promise.resolve();
    this.#ready = new Promise<void>((resolve, reject) => {
      this.once('ready', resolve);
      this.once('close', () => reject(new Error(`Redis connection (${this.#opts.name}) failed`)));
    });
    this.#ready.catch(() => {});
    this.#open();
    this.#startWatch();
    return this.#ready;
  }

  /** Send one command; its reply (an error reply rejects). `args` is written as it is when the call returns: the caller may reuse it after. */
  send(name: string, args: ReadonlyArray<string | number>): Promise<unknown> {
    if (this.status !== 'ready') return this.#notReady(name, args);
    return new Promise((resolve, reject) => {
      this.#queue.push({ resolve, reject });
      this.#write(name, args);
    });
  }

  /**
   * EVALSHA: `args` is [sha, numKeys, ...keys, ...argv]. A Redis that does not know the script
   * (restarted, flushed) gets it once by EVAL (args[0] becomes `lua`), within the same promise: the
   * caller must not reuse `args` until it settles. `now`: written at once, not at this turn's check
   * phase (the caller already waited for it: fleet-limits.ts sends the admissions of a turn then).
   */
  evalsha(lua: string, args: Array<string | number>, now = false): Promise<unknown> {
    if (this.status !== 'ready') return this.#notReady('EVALSHA', args).catch((e: unknown) => this.#noscript(e, lua, args));
    return new Promise((resolve, reject) => {
      this.#queue.push(new ScriptPending(this, lua, args, resolve, reject));
      this.#write('EVALSHA', args, now);
    });
  }

  #noscript(e: unknown, lua: string, args: Array<string | number>): Promise<unknown> {
    if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
    args[0] = lua;
    return this.send('EVAL', args);
  }

  #notReady(name: string, args: ReadonlyArray<string | number>): Promise<unknown> {
    if (this.status === 'wait' && this.#opts.lazy) {
      const early = (this.#early ??= []);
      const copy = args.slice();
      const p = new Promise((resolve, reject) => {
        early.push(() => {
          if (this.status !== 'ready') { reject(new Error(`Redis connection (${this.#opts.name}) is ${this.status}`)); return; }
          this.#queue.push({ resolve, reject });
          this.#write(name, copy);
        });
      });
      void this.connect().catch(() => {}).finally(() => { const e = this.#early ?? []; this.#early = null; for (const f of e) f(); });
      return p;
    }
    return Promise.reject(new Error(`Redis connection (${this.#opts.name}) is ${this.status}: command not sent`));
  }

  /**
   * The command is queued (its Pending pushed) first. On an idle connection (no other command
   * unanswered, none waiting for this turn's write) it is written at once: a request alone does
   * not wait for the rest of its loop turn. Otherwise it joins this turn's one write: commands of
   * concurrent requests share a write while earlier ones are in flight.
   */
  #write(name: string, args: ReadonlyArray<string | number>, now = false): void {
    const idle = this.#len === 0 && this.#queue.length - this.#head === 1;
    this.#encode(name, args);
    if (idle || now) this.#flush();
    else if (!this.#flushing) { this.#flushing = true; setImmediate(this.#flush); }
  }

  /** The command appended to this turn's (the buffer grown when it would not fit). */
  #encode(name: string, args: ReadonlyArray<string | number>): void {
    const need = this.#len + encodedBound(name, args);
    if (need > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, 2 * this.#buf.length));
      this.#buf.copy(bigger, 0, 0, this.#len);
      this.#buf = bigger;
    }
    this.#len = encodeInto(this.#buf, this.#len, name, args);
  }

  readonly #flush = (): void => {
    this.#flushing = false;
    const n = this.#len;
    const socket = this.#socket;
    this.#len = 0;
    if (n === 0 || !socket) return;
    socket.write(this.#buf.subarray(0, n));
    // Bytes the socket did not hand to the kernel at once are still in this buffer: leave it to the socket.
    if (socket.writableLength > 0) this.#buf = Buffer.allocUnsafe(OUT_BYTES);
  };

  #open(): void {
    const t = this.#target;
    this.status = 'connecting';
    const where: ConnectionOptions & { path?: string; family?: number } = t.path ? { path: t.path } : { host: t.host, port: t.port, family: t.family };
    // Replies are read into one buffer of this connection's (onread), not through the socket's
    // Readable stream (a Buffer, a push, a 'data' event and a read-more tick per read).
    const onread = { buffer: this.#in, callback: this.#onRead };
    const socket = t.tls ? tlsConnect({ ...where, ...t.tls, onread } as ConnectionOptions) : createConnection({ ...where, onread } as NetConnectOpts);
    this.#socket = socket;
    socket.setNoDelay(true);
    const timeout = this.#opts.connectTimeoutMs ?? 2000;
    socket.setTimeout(timeout, () => socket.destroy(new Error(`Redis connect timed out after ${timeout} ms`)));
    socket.once(t.tls ? 'secureConnect' : 'connect', () => {
      socket.setKeepAlive(true, 0);
      this.#handshake(socket);
    });
    socket.on('error', (e) => { if (this.listenerCount('error') > 0) this.emit('error', e); });
    socket.once('close', () => this.#closed(socket));
  }

  /** AUTH, SELECT and CLIENT SETNAME in one write, as ioredis sends them; ready once all are answered. */
  #handshake(socket: Socket): void {
    const t = this.#target;
    const steps: Array<Promise<unknown>> = [];
    const cmd = (name: string, args: Array<string | number>, ok?: (e: Error) => boolean): void => {
      steps.push(new Promise((resolve, reject) => {
        this.#queue.push({ resolve, reject: (e) => (ok?.(e) ? resolve(null) : reject(e)) });
        this.#encode(name, args);
      }));
    };
    // ioredis goes on when a password is given to a Redis that has none.
    if (t.password) cmd('AUTH', t.username ? [t.username, t.password] : [t.password], (e) => /no password is set|without any password configured/i.test(e.message));
    if (t.db) cmd('SELECT', [t.db]);
    cmd('CLIENT', ['SETNAME', this.#opts.name]);
    this.#flush();
    Promise.all(steps).then(() => {
      if (this.#socket !== socket || this.status !== 'connecting') return;
      socket.setTimeout(0);
      this.#attempts = 0;
      this.status = 'ready';
      this.emit('ready');
    }, (e: unknown) => {
      if (this.listenerCount('error') > 0) this.emit('error', e);
      socket.destroy();
    });
  }

  /** onread's callback: `n` bytes read into #in (used again by the next read: nothing may keep a view of it). */
  readonly #onRead = (n: number): boolean => {
    this.#data(this.#in.subarray(0, n));
    return true;
  };

  #data(chunk: Buffer): void {
    let buf = chunk;
    if (this.#rest) { buf = Buffer.concat([this.#rest, chunk]); this.#rest = null; }
    const replies = this.#replies;
    let at: number;
    try {
      at = parse(buf, 0, replies);
    } catch (e) {
      // Not RESP: nothing more on this socket can be trusted.
      this.#socket?.destroy(e as Error);
      return;
    }
    // A copy: `buf` may be #in, which the next read overwrites.
    if (at < buf.length) this.#rest = Buffer.from(buf.subarray(at));
    for (let i = 0; i < replies.length; i++) {
      const r = replies[i];
      const p = this.#head < this.#queue.length ? this.#queue[this.#head++] : NOOP;
      if (r instanceof RespError) p.reject(r);
      else p.resolve(r);
    }
    replies.length = 0;
    this.#compact();
  }

  #compact(): void {
    if (this.#head === this.#queue.length) { this.#queue.length = 0; this.#head = 0; }
    else if (this.#head > 1024) { this.#queue = this.#queue.slice(this.#head); this.#head = 0; }
  }

  /** Everything in flight fails with `e` (the socket is gone: no reply will come). */
  #failAll(e: Error): void {
    const q = this.#queue;
    const from = this.#head;
    this.#queue = [];
    this.#head = 0;
    this.#len = 0;
    for (let i = from; i < q.length; i++) q[i].reject(e);
  }

  #stallError: Error | null = null;

  #closed(socket: Socket): void {
    if (this.#socket !== socket) return;
    this.#socket = null;
    this.#rest = null;
    this.#failAll(this.#stallError ?? new Error(`Redis connection (${this.#opts.name}) closed`));
    this.#stallError = null;
    if (this.status === 'end') return;
    this.status = 'reconnecting';
    this.emit('close');
    const delay = (this.#opts.retry ?? ((n) => Math.min(50 * n, 500)))(++this.#attempts);
    this.#retryTimer = setTimeout(() => { this.#retryTimer = null; if (this.status === 'reconnecting') this.#open(); }, delay);
    this.#retryTimer.unref();
  }

  /**
   * The stall watchdog (see redis.ts's watchStalls): replies come in order, so only the oldest
   * command in flight is watched; when it has waited commandTimeoutMs of time this process's loop
   * was free to read, the socket is destroyed, failing everything in flight at once, and the
   * connection reconnects. No timer per command.
   */
  #startWatch(): void {
    const ms = this.#opts.commandTimeoutMs;
    const every = ms / 4;
    let oldest: Pending | undefined;
    let since = 0;
    let last = performance.now();
    this.#watch = setInterval(() => {
      const now = performance.now();
      const late = now - last - every;
      last = now;
      if (late > every) since += late;
      const head = this.#head < this.#queue.length ? this.#queue[this.#head] : undefined;
      if (head !== oldest) { oldest = head; since = now; return; }
      if (head === undefined || now - since < ms) return;
      oldest = undefined;
      if (!this.#socket || this.status !== 'ready') return;
      this.#stallError = new Error(`Redis did not answer within ${ms} ms (command timed out); the connection is reset`);
      // Not end(): a stalled server never closes its side.
      this.#socket.destroy();
    }, every);
    this.#watch.unref();
  }

  /** Close now: everything in flight fails, no reconnection. */
  disconnect(): void {
    if (this.status === 'end') return;
    const was = this.status;
    this.status = 'end';
    if (this.#retryTimer) { clearTimeout(this.#retryTimer); this.#retryTimer = null; }
    if (this.#watch) { clearInterval(this.#watch); this.#watch = null; }
    const socket = this.#socket;
    this.#socket = null;
    this.#failAll(new Error(`Redis connection (${this.#opts.name}) closed`));
    socket?.destroy();
    if (was !== 'wait') this.emit('close');
    this.emit('end');
  }
}
