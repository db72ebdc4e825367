// The audit trail's INSERT connection, without postgres.js: a serving replica's one PostgreSQL
// write per group commit cost the main thread ~14 us per request through postgres.js (its
// statement cache keyed by the whole multi-row text + every parameter's type, query objects and
// builders, its scheduler and promise chain). The statement is one and known (fleet-log.ts), so it
// goes out here as extended-protocol bytes: Parse once per text on this connection, then Bind +
// Execute + Sync per batch, every parameter as text (PostgreSQL types them from the statement), in
// one write; the reply is read only for its end (ReadyForQuery) and errors. As resp.ts is for Redis.
// Where to connect, TLS and the password are what postgres.js makes of the same URL (its parsed
// options, connectEvidence), and authentication is what it speaks to the fleet's servers:
// cleartext, MD5, SCRAM-SHA-256 (with channel binding, -PLUS, over TLS when the server offers it,
// as postgres.js's default 'prefer'). A URL asking for anything else (several hosts,
// target_session_attrs, require_auth, channel_binding=require, direct TLS, a password file) keeps
// postgres.js for this connection too. A query PostgreSQL does not answer within the deadline
// closes the connection (its reply is then lost: the caller retries, fleet-log's ON CONFLICT path);
// the next query connects again after reconnectBackoff, as the pool does.
import { createHash, createHmac, pbkdf2Sync, randomBytes, X509Certificate } from 'node:crypto';
import { createConnection, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket, type ConnectionOptions } from 'node:tls';
import { connectPostgres, reconnectBackoff, type PostgresOptions, type Sql } from './postgres.ts';

/** What the audit trail's writer needs of a connection: postgres.js's unsafe() and end(), or PgWire's. */
export interface EventWriter {
  unsafe(text: string, values: Array<string | number | null>, opts: { prepare: boolean }): PromiseLike<unknown>;
  end(opts?: { timeout?: number }): Promise<void>;
  /** True when unsafe() writes its bytes to the socket before it returns (postgres.js: after its microtasks and a nextTick). */
  readonly writesAtOnce?: boolean;
}

/** An ErrorResponse (its fields: code is SQLSTATE, as postgres.js's PostgresError has it). */
export class PgWireError extends Error {
  override name = 'PostgresError';
  readonly code: string;
  readonly severity: string;
  constructor(message: string, code: string, severity: string) { super(message); this.code = code; this.severity = severity; }
}

/** postgres.js's parsed options this connection reads (sql.options). */
interface ParsedOptions {
  host: string[]; port: number[]; path: string | false; database: string; user: string | (() => unknown); pass: string | (() => unknown);
  ssl: boolean | string | ConnectionOptions; sslnegotiation: string | null; channel_binding: string; require_auth: string | null;
  target_session_attrs: string | null; connection: Record<string, string>; connect_timeout: number; socket?: unknown;
}

export interface WireTarget {
  host: string; port: number; path?: string; database: string; user: string; pass: string;
  /** false: plain; else the TLS options to upgrade with after SSLRequest ('prefer'/'allow': plain if the server says no). */
  tls: false | ConnectionOptions; tlsOptional: boolean;
  /** SCRAM-SHA-256-PLUS when TLS and the server offers it ('prefer'), or never ('disable'). */
  binding: boolean;
  /** StartupMessage parameters besides user and database. */
  params: Record<string, string>;
  connectTimeoutMs: number;
}

/**
 * The target postgres.js would connect to for these options, or why this connection cannot speak
 * for it (then postgres.js keeps the writer). TLS as postgres.js's secureOptions(): require, allow
 * and prefer encrypt without checking the server; verify-ca, verify-full and true check chain and
 * name; an object (AAM_DATABASE_*_FILE, fleet-tls.ts) is Node's TLS options as given.
 */
export function wireTarget(o: ParsedOptions): WireTarget | string {
  if (o.host.length > 1) return 'several hosts';
  if (o.target_session_attrs) return 'target_session_attrs';
  if (o.require_auth) return 'require_auth';
  if (o.channel_binding === 'require') return 'channel_binding=require';
  if (o.sslnegotiation === 'direct') return 'sslnegotiation=direct';
  if (o.socket) return 'a socket factory';
  if (typeof o.user !== 'string' || typeof o.pass !== 'string') return 'a user or password function';
  if (o.pass === '') return 'no password in the URL (a password file)';
  const ssl = o.ssl;
  const secured = !!ssl && ssl !== 'disable';
  const tls: false | ConnectionOptions = !secured ? false
    : ssl === 'require' || ssl === 'allow' || ssl === 'prefer' ? { rejectUnauthorized: false }
      : typeof ssl === 'object' ? ssl : {};
  return {
    host: o.host[0], port: o.port[0], ...(o.path ? { path: o.path } : {}), database: o.database || o.user, user: o.user, pass: o.pass,
    tls, tlsOptional: ssl === 'prefer' || ssl === 'allow', binding: o.channel_binding !== 'disable',
    params: { client_encoding: 'UTF8', ...o.connection }, connectTimeoutMs: (o.connect_timeout || 30) * 1000,
  };
}

/**
 * The audit writer's connection for this URL: a PgWire when it can speak for what postgres.js
 * makes of the URL (wireTarget), else postgres.js's one-connection pool as before.
 */
export function connectEvidence(url: string, opts: PostgresOptions & { queryTimeout: number }): EventWriter {
  const sql = connectPostgres(url, 1, opts);
  const target = wireTarget((sql as Sql & { options: ParsedOptions }).options);
  if (typeof target === 'string') return sql;
  void sql.end({ timeout: 0 }); // never connected: it only parsed the URL
  return new PgWire(target, { queryTimeoutMs: opts.queryTimeout * 1000 });
}

// ---- Frontend messages -----------------------------------------------------------------------

/** A plain connection's read buffer (its replies are small: one read takes many). */
const READ_BYTES = 16 * 1024;

/** A growable output buffer, reused: messages are written into it and sent as one write. */
class Out {
  buf = Buffer.allocUnsafe(16384);
  at = 0;
  ensure(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }
  byte(b: number): void { this.ensure(1); this.buf[this.at++] = b; }
  i16(n: number): void { this.ensure(2); this.buf.writeInt16BE(n, this.at); this.at += 2; }
  i32(n: number): void { this.ensure(4); this.buf.writeInt32BE(n, this.at); this.at += 4; }
  /** A NUL-terminated string. */
  cstr(s: string): void { this.ensure(3 * s.length + 1); this.at += this.buf.write(s, this.at); this.buf[this.at++] = 0; }
  /** Starts a message of this type; end() fills in its length. */
  begin(type: number): number { this.byte(type); const at = this.at; this.i32(0); return at; }
  end(lengthAt: number): void { this.buf.writeInt32BE(this.at - lengthAt, lengthAt); }
  take(): Buffer { const b = Buffer.from(this.buf.subarray(0, this.at)); this.at = 0; return b; }
}

const sslRequest = (): Buffer => { const b = Buffer.allocUnsafe(8); b.writeInt32BE(8, 0); b.writeInt32BE(80877103, 4); return b; };

function startupMessage(t: WireTarget): Buffer {
  const o = new Out();
  o.i32(0); o.i32(196608);
  for (const [k, v] of Object.entries({ user: t.user, database: t.database, ...t.params })) { o.cstr(k); o.cstr(String(v)); }
  o.byte(0);
  o.buf.writeInt32BE(o.at, 0);
  return o.take();
}

function passwordMessage(type: number, body: (o: Out) => void): Buffer {
  const o = new Out();
  const l = o.begin(type);
  body(o);
  o.end(l);
  return o.take();
}

// ---- Backend messages -------------------------------------------------------------------------

/** An ErrorResponse's fields (S/V severity, C code, M message, D detail) as an error. */
function errorOf(b: Buffer, start: number, end: number): PgWireError {
  const f: Record<string, string> = {};
  let at = start;
  while (at < end && b[at] !== 0) {
    const k = String.fromCharCode(b[at]);
    const z = b.indexOf(0, at + 1);
    f[k] = b.toString('utf8', at + 1, z);
    at = z + 1;
  }
  return new PgWireError(f.M ?? 'unknown PostgreSQL error', f.C ?? '', f.V ?? f.S ?? 'ERROR');
}

/** RFC 5929 tls-server-end-point: the server certificate hashed with its signature's hash (SHA-256 for MD5/SHA-1), or null (e.g. Ed25519). */
function endPoint(cert: Buffer): Buffer | null {
  const alg = /sha-?(1|224|256|384|512)\b|md5/i.exec(new X509Certificate(cert).signatureAlgorithm ?? '');
  if (!alg) return null;
  const bits = alg[1];
  return createHash(!bits || bits === '1' ? 'sha256' : `sha${bits}`).update(cert).digest();
}

const hmac = (key: Buffer, text: string): Buffer => createHmac('sha256', key).update(text).digest();
const xor = (a: Buffer, b: Buffer): Buffer => { const o = Buffer.allocUnsafe(a.length); for (let i = 0; i < a.length; i++) o[i] = a[i] ^ b[i]; return o; };

/** The client side of SCRAM-SHA-256(-PLUS), RFC 5802/7677, as postgres.js speaks it (user name in the startup message, n=*). */
class Scram {
  nonce = randomBytes(18).toString('base64');
  header = 'n,,';
  bound: Buffer | null = null;
  signature = '';
  /** SASLInitialResponse for the mechanisms the server offers. */
  first(offered: string[], socket: Socket | TLSSocket, binding: boolean): Buffer {
    const cert = binding && socket instanceof TLSSocket ? socket.getPeerCertificate(false)?.raw : undefined;
    const hash = cert ? endPoint(cert) : null;
    const plus = !!hash && offered.includes('SCRAM-SHA-256-PLUS');
    if (!plus && !offered.includes('SCRAM-SHA-256')) throw new Error(`PostgreSQL offered no SASL mechanism aam speaks (${offered.join(', ')})`);
    // y: this client binds but the server did not offer it (a downgrade the server then detects).
    this.header = plus ? 'p=tls-server-end-point,,' : hash ? 'y,,' : 'n,,';
    this.bound = plus ? hash : null;
    const msg = Buffer.from(`${this.header}n=*,r=${this.nonce}`);
    return passwordMessage(0x70, (o) => { o.cstr(plus ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256'); o.i32(msg.length); o.ensure(msg.length); msg.copy(o.buf, o.at); o.at += msg.length; });
  }
  /** SASLResponse (client-final-message) to the server-first-message. */
  final(serverFirst: string, password: string): Buffer {
    const r: Record<string, string> = {};
    for (const part of serverFirst.split(',')) r[part[0]] = part.slice(2);
    if (!r.r?.startsWith(this.nonce)) throw new Error('SCRAM: the server nonce does not start with the client nonce');
    const salted = pbkdf2Sync(password, Buffer.from(r.s, 'base64'), Number(r.i), 32, 'sha256');
    const clientKey = hmac(salted, 'Client Key');
    const channel = (this.bound ? Buffer.concat([Buffer.from(this.header), this.bound]) : Buffer.from(this.header)).toString('base64');
    const auth = `n=*,r=${this.nonce},r=${r.r},s=${r.s},i=${r.i},c=${channel},r=${r.r}`;
    this.signature = hmac(hmac(salted, 'Server Key'), auth).toString('base64');
    const proof = xor(clientKey, hmac(createHash('sha256').update(clientKey).digest(), auth)).toString('base64');
    return passwordMessage(0x70, (o) => { const t = `c=${channel},r=${r.r},p=${proof}`; o.ensure(3 * t.length); o.at += o.buf.write(t, o.at); });
  }
  verify(serverFinal: string): void {
    if (!this.signature || serverFinal.split('\0', 1)[0].slice(2) !== this.signature) throw new Error('SCRAM: the server did not prove it knows the password');
    this.signature = 'verified';
  }
}

// ---- The connection ---------------------------------------------------------------------------

interface Pending { resolve: () => void; reject: (e: Error) => void; error?: Error; parse?: string; parsed?: boolean }

/**
 * One PostgreSQL connection for one kind of statement: unsafe(text, values, { prepare }) sends it
 * (Parse once per text when prepare, unnamed otherwise) and resolves at its ReadyForQuery. Queries
 * are answered in order; a connection lost fails every query in flight and the next one connects
 * again (after reconnectBackoff while attempts keep failing).
 */
export class PgWire implements EventWriter {
  #socket: Socket | TLSSocket | null = null;
  #connecting: Promise<Socket | TLSSocket> | null = null;
  #pending: Pending[] = [];
  /** Statement names by text, on this connection (cleared when it is lost). */
  #statements = new Map<string, string>();
  #named = 0;
  #out = new Out();
  #in: Buffer = Buffer.alloc(0);
  #retries = 0;
  #nextAttempt = 0;
  /** The query deadline's watchdog (one interval, not a timer per query) and when the oldest query in flight was sent, or became the oldest. */
  #watchdog: NodeJS.Timeout | undefined;
  #since = 0;
  #ended = false;

  readonly target: WireTarget;
  readonly opts: { queryTimeoutMs: number };
  constructor(target: WireTarget, opts: { queryTimeoutMs: number }) {
    this.target = target;
    this.opts = opts;
    const limit = opts.queryTimeoutMs;
    if (limit > 0) {
      // The oldest query unanswered this long closes the connection: its reply is lost, the caller retries.
      this.#watchdog = setInterval(() => {
        if (this.#pending.length && performance.now() - this.#since > limit) this.#socket?.destroy(new Error(`PostgreSQL did not answer within ${limit} ms`));
      }, Math.max(20, Math.min(500, limit / 4)));
      this.#watchdog.unref();
    }
  }

  /** Connected: unsafe() writes its batch before it returns (else it waits for the connection). */
  get writesAtOnce(): boolean { return this.#socket !== null; }

  unsafe(text: string, values: Array<string | number | null>, opts: { prepare: boolean }): Promise<void> {
    if (this.#ended) return Promise.reject(new Error('the evidence connection is closed'));
    const socket = this.#socket;
    if (socket === null) return (this.#connecting ??= this.#connect()).then(() => this.unsafe(text, values, opts));
    return new Promise<void>((resolve, reject) => {
      const q: Pending = { resolve, reject };
      const out = this.#out;
      let name = '';
      if (opts.prepare) {
        const known = this.#statements.get(text);
        if (known === undefined) { name = `a${++this.#named}`; q.parse = text; this.#statements.set(text, name); } else name = known;
      }
      if (!opts.prepare || q.parse !== undefined) {
        const l = out.begin(0x50); // Parse: name, text, no parameter types (the statement's casts and columns type them)
        out.cstr(name); out.cstr(text); out.i16(0);
        out.end(l);
      }
      const l = out.begin(0x42); // Bind: unnamed portal, every parameter as text, no result columns
      out.byte(0); out.cstr(name); out.i16(0); out.i16(values.length);
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (v === null) { out.i32(-1); continue; }
        const s = typeof v === 'string' ? v : String(v);
        out.ensure(4 + 3 * s.length);
        const n = out.buf.write(s, out.at + 4);
        out.buf.writeInt32BE(n, out.at);
        out.at += 4 + n;
      }
      out.i16(0);
      out.end(l);
      out.ensure(20);
      out.buf.write('E\0\0\0\x09\0\0\0\0\0S\0\0\0\x04', out.at, 'latin1'); // Execute (unnamed portal, all rows), Sync
      out.at += 15;
      if (this.#pending.push(q) === 1) this.#since = performance.now();
      socket.write(out.take());
    });
  }

  async end(_opts?: { timeout?: number }): Promise<void> {
    this.#ended = true;
    clearInterval(this.#watchdog);
    const s = this.#socket;
    if (s) { s.end(Buffer.from([0x58, 0, 0, 0, 4])); } // Terminate
    this.#lost(new Error('the evidence connection is closed'));
  }

  #lost(error: Error): void {
    this.#socket = null;
    this.#statements.clear();
    this.#in = Buffer.alloc(0);
    const failed = this.#pending;
    this.#pending = [];
    for (const q of failed) q.reject(q.error ?? error);
  }

  async #connect(): Promise<Socket | TLSSocket> {
    try {
      const wait = this.#nextAttempt - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (this.#ended) throw new Error('the evidence connection is closed');
      const socket = await this.#open();
      this.#retries = 0;
      if (this.#ended) { socket.destroy(); throw new Error('the evidence connection is closed'); }
      this.#socket = socket;
      if (this.#plain === socket) this.#deliver = (d) => this.#read(d);
      else socket.on('data', (d: Buffer) => this.#read(d));
      socket.setKeepAlive(true, 60_000);
      let why = new Error('the connection to PostgreSQL was closed');
      socket.on('error', (e) => { why = e; });
      socket.on('close', () => { if (this.#socket === socket) this.#lost(why); });
      return socket;
    } catch (e) {
      this.#retries++;
      this.#nextAttempt = Date.now() + 1000 * reconnectBackoff(this.#retries);
      throw e;
    } finally {
      this.#connecting = null;
    }
  }

  /**
   * A connection without TLS reads into one buffer of its own (onread), not through the socket's
   * Readable stream: that allocates 64 KB per read, which with npm start's MALLOC_MMAP_THRESHOLD_
   * (32 KB) is an mmap and a munmap per reply (strace, c=64: ~700 of each per 8,000 requests over
   * embedded's). Its bytes go to #deliver; nothing may keep a view of them (#read copies the rest).
   */
  #plain: Socket | null = null;
  #deliver: (d: Buffer) => void = () => {};

  /** TCP (or the Unix socket), TLS per the target, startup and authentication, until ReadyForQuery. */
  #open(): Promise<Socket | TLSSocket> {
    const t = this.target;
    return new Promise((resolve, reject) => {
      const input = t.tls ? null : Buffer.allocUnsafeSlow(READ_BYTES);
      const onread = input ? { buffer: input, callback: (n: number) => { this.#deliver(input.subarray(0, n)); return true; } } : undefined;
      let socket: Socket | TLSSocket = t.path ? createConnection({ path: t.path, onread }) : createConnection({ host: t.host, port: t.port, onread });
      this.#plain = input ? socket : null;
      let buf: Buffer = Buffer.alloc(0);
      let scram: Scram | null = null;
      let done = false;
      const timer = setTimeout(() => fail(new Error(`could not connect to PostgreSQL within ${t.connectTimeoutMs} ms`)), t.connectTimeoutMs);
      const fail = (e: Error) => { if (done) return; done = true; clearTimeout(timer); socket.destroy(); reject(e); };
      const onError = (e: Error) => fail(e);
      const onClose = () => fail(new Error('PostgreSQL closed the connection during startup'));
      const listen = (s: Socket | TLSSocket) => { s.on('error', onError); s.on('close', onClose); };
      const startup = () => {
        // Startup keeps views of what it read: a copy of each read (a few, once per connection).
        if (this.#plain === socket) this.#deliver = (d) => onData(Buffer.from(d));
        else socket.on('data', onData);
        socket.write(startupMessage(t));
      };
      const onData = (d: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, d]) : d;
        try {
          while (buf.length >= 5) {
            const len = buf.readInt32BE(1);
            if (buf.length < len + 1) break;
            const type = buf[0];
            const body = buf.subarray(5, len + 1);
            buf = buf.subarray(len + 1);
            if (type === 0x45) throw errorOf(body, 0, body.length); // ErrorResponse: e.g. 28P01 password authentication failed
            if (type === 0x52) auth(body);
            else if (type === 0x5a) {
              if (scram && scram.signature !== 'verified') throw new Error('SCRAM: the server was ready before it proved it knows the password');
              if (done) return;
              done = true;
              clearTimeout(timer);
              if (this.#plain === socket) this.#deliver = () => {};
              socket.off('data', onData); socket.off('error', onError); socket.off('close', onClose);
              socket.setNoDelay(true);
              if (buf.length) this.#in = Buffer.from(buf);
              resolve(socket);
              return;
            }
            // ParameterStatus, BackendKeyData, NoticeResponse: nothing this connection needs.
          }
        } catch (e) { fail(e as Error); }
      };
      const auth = (b: Buffer) => {
        const kind = b.readInt32BE(0);
        if (kind === 0) return;
        if (kind === 3) socket.write(passwordMessage(0x70, (o) => o.cstr(t.pass)));
        else if (kind === 5) {
          const inner = createHash('md5').update(t.pass + t.user).digest('hex');
          socket.write(passwordMessage(0x70, (o) => o.cstr('md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), b.subarray(4, 8)])).digest('hex'))));
        } else if (kind === 10) {
          scram = new Scram();
          socket.write(scram.first(b.toString('utf8', 4).split('\0').filter(Boolean), socket, t.binding));
        } else if (kind === 11 && scram) socket.write(scram.final(b.toString('utf8', 4), t.pass));
        else if (kind === 12 && scram) scram.verify(b.toString('utf8', 4));
        else throw new Error(`PostgreSQL asked for authentication method ${kind}, which this connection does not speak`);
      };
      listen(socket);
      socket.once('connect', () => {
        if (!t.tls) return startup();
        socket.write(sslRequest());
        socket.once('data', (d: Buffer) => {
          if (d[0] !== 0x53) { // 'N': no TLS here
            if (t.tlsOptional) return startup();
            return fail(new Error('The server does not support SSL connections'));
          }
          socket.off('error', onError); socket.off('close', onClose);
          const host = t.path ? undefined : t.host;
          const secure = tlsConnect({ socket: socket as Socket, host, servername: host && !isIP(host) ? host : undefined, ...t.tls as ConnectionOptions });
          socket = secure;
          listen(secure);
          secure.once('secureConnect', startup);
        });
      });
    });
  }

  /** Backend messages after startup: each query ends at its ReadyForQuery, failed if an ErrorResponse came before it. */
  #read(d: Buffer): void {
    let b = this.#in.length ? Buffer.concat([this.#in, d]) : d;
    let at = 0;
    while (b.length - at >= 5) {
      const len = b.readInt32BE(at + 1);
      if (b.length - at < len + 1) break;
      const type = b[at];
      const q = this.#pending[0];
      if (type === 0x5a) { // ReadyForQuery
        this.#pending.shift();
        this.#since = performance.now();
        if (q) {
          if (q.error) {
            if (q.parse !== undefined && !q.parsed) this.#statements.delete(q.parse);
            q.reject(q.error);
          } else q.resolve();
        }
      } else if (type === 0x31) { if (q) q.parsed = true; } // ParseComplete
      else if (type === 0x45) {
        const e = errorOf(b, at + 5, at + 1 + len);
        if (q && !q.error) q.error = e;
        else if (!q) this.#socket?.destroy(e); // an error outside a query (e.g. the server shutting down): the connection ends
      }
      at += len + 1;
    }
    this.#in = at === b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(at));
  }
}
