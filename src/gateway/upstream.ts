// One HTTP attempt against one target, and the explicit table of what is worth another attempt.
// Requests go straight to undici's dispatcher with a handler of our own (an Exchange): no
// Readable, no extra AbortController or abort-listener plumbing per call. One object per attempt
// holds the total-timeout timer, the client-abort listener and the response body.
import type { Dispatcher } from 'undici';
import { getGlobalDispatcher } from '../lib/http-client.ts';
import type { IncomingHttpHeaders } from 'node:http';
import type { UpstreamRequest } from '../providers/types.ts';

/** An adapter's request as sent: a long body may go as its UTF-8 bytes (gateway/long-body.ts). */
export type OutboundRequest = Omit<UpstreamRequest, 'body'> & { body: string | Buffer };
import type { Target } from './routes.ts';
import { Deadlines, type Timed } from './deadlines.ts';
import { AamError } from '../access/errors.ts';

export interface Injection {
  headers: Record<string, string>;
  query?: Record<string, string>;
  credential?: { name: string; version: number };
  /** Request signing (AWS SigV4): headers computed over the final request, just before it is sent. */
  sign?: (req: { method: string; url: string; headers: Readonly<Record<string, string>>; body: string | Uint8Array }, scope: { region: string; service: string }) => Promise<Record<string, string>>;
}

export type AttemptFailure = {
  ok: false;
  /** retry: same target again (after backoff) is worthwhile; fallback: only another target may help; final: give up, tell the client. */
  next: 'retry' | 'fallback' | 'final';
  status: number;
  /** Client-facing status if this failure is the last one. */
  clientStatus: number;
  code: 'upstream_error' | 'upstream_timeout' | 'invalid_request';
  message: string;
  retryAfterMs?: number;
};
/**
 * The client's error for the attempts' last failure (message scrubbed by the caller). A last
 * upstream 429 passes its retry-after on, in whole seconds, so an SDK waits as long as asked.
 */
export function failureError(f: AttemptFailure, message: string): AamError {
  const headers = f.clientStatus === 429 && f.retryAfterMs !== undefined ? { 'retry-after': String(Math.max(1, Math.ceil(f.retryAfterMs / 1000))) } : undefined;
  return new AamError(f.clientStatus, f.code, message, { headers });
}

/** A complete (non-streamed) answer. */
export type AttemptText = { ok: true; status: number; headers: IncomingHttpHeaders; text: string };
/** A streamed answer whose head has arrived; its body is read with `body`. */
export type AttemptStream = { ok: true; status: number; headers: IncomingHttpHeaders; body: UpstreamBody };

/**
 * A streamed response body: each next() gives what arrived since the last call (delivered as soon
 * as it arrives): one chunk, or the chunks in arrival order, not joined (a join copied every read
 * into a new ArrayBuffer, ~6.5 KB of external garbage per streamed answer). Reading stops the
 * upstream socket when more than HIGH_WATER_MARK bytes wait unread. Rejects on upstream failure or
 * timeout. destroy() aborts the upstream request.
 */
export interface UpstreamBody extends AsyncIterableIterator<Buffer | readonly Buffer[]> {
  destroy(err?: Error): void;
  /** The response ended and every byte of it was taken by next(): nothing more is to come. */
  readonly drained: boolean;
}

/**
 * Cancellation of one client call. The upstream attempt in flight registers itself in `inFlight`
 * (attempts of a call run one after another) and is aborted directly, instead of each attempt
 * adding an abort listener to a signal, which allocates an events map and listener records per
 * call. No AbortController per call either: `signal` is made when something first asks for one
 * (a retry's backoff), already aborted if the call was; `aborted` and `reason` need none.
 */
/** One failed upstream attempt, as a call's evidence names it (message scrubbed when recorded). */
export interface AttemptLog { target: string; status: number; message: string }

export class CallAbort {
  inFlight: { abort(reason: Error): void } | null = null;
  private done = false;
  private why: unknown = undefined;
  private controller: AbortController | null = null;

  get aborted(): boolean { return this.done; }
  get reason(): unknown { return this.why; }

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.done) this.controller.abort(this.why);
    }
    return this.controller.signal;
  }

  abort(reason?: unknown): void {
    if (this.done) return;
    this.done = true;
    // As AbortController.abort() with no reason: an AbortError.
    this.why = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
    this.controller?.abort(this.why);
    this.inFlight?.abort(this.why as Error);
  }
}

/** Upstream error text shown to an agent is clipped to this, after scrubbing (never before). */
export const UPSTREAM_MESSAGE_MAX = 600;

/** Unread streamed bytes at which the upstream socket is paused (a slow client must not make us buffer a whole answer). */
const HIGH_WATER_MARK = 64 * 1024;
const NO_HEADERS: IncomingHttpHeaders = Object.freeze({}) as IncomingHttpHeaders;

/**
 * What to do after an upstream HTTP status. 429/408/5xx: the same target may recover (retry, then
 * fall back). 401/403/404: this provider will not serve us (bad credential, unknown model): try the
 * next target, no retry. Other 4xx: the request itself is wrong; another provider would refuse it too.
 */
export function classifyStatus(status: number): AttemptFailure['next'] {
  if (status === 408 || status === 409 || status === 425 || status === 429 || status >= 500) return 'retry';
  if (status === 401 || status === 403 || status === 404) return 'fallback';
  return 'final';
}

export function retryAfterMs(h: IncomingHttpHeaders): number | undefined {
  const ms = h['retry-after-ms'];
  if (typeof ms === 'string' && /^\d+$/.test(ms)) return Number(ms);
  const ra = h['retry-after'];
  if (typeof ra !== 'string') return undefined;
  if (/^\d+(\.\d+)?$/.test(ra)) return Math.round(Number(ra) * 1000);
  const at = Date.parse(ra);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * Send one request and read its whole answer. Network errors, timeouts and error statuses come
 * back as a classified failure, never a throw. Aborting `call` (the client went away) cancels it.
 */
export function sendAttempt(target: Target, up: OutboundRequest, inj: Injection, call: CallAbort): Promise<AttemptText | AttemptFailure> {
  return new Exchange(target, call, false).send(up, inj) as Promise<AttemptText | AttemptFailure>;
}

/**
 * Send one streamed request; resolves when the response head arrives. A 2xx/3xx answer that is
 * not text/event-stream is a failure. The target's total timeout and the client's abort keep
 * applying while the body is read.
 */
export function sendStreamAttempt(target: Target, up: OutboundRequest, inj: Injection, call: CallAbort): Promise<AttemptStream | AttemptFailure> {
  return new Exchange(target, call, true).send(up, inj) as Promise<AttemptStream | AttemptFailure>;
}

/** The target answered, but not with something we can use. */
export function unusable(target: Target, what: string): AttemptFailure {
  return { ok: false, next: 'retry', status: 502, clientStatus: 502, code: 'upstream_error', message: `${target.label} returned an unusable response (${what})` };
}

const UNDICI_TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

export function networkFailure(target: Target, err: unknown): AttemptFailure {
  const e = err as { code?: unknown; name?: string } | undefined;
  // A DOMException's code is a legacy number (TimeoutError is 23): name it instead.
  const code = typeof e?.code === 'string' ? e.code : undefined;
  // undici's timeout errors by their codes: classifying a failure does not load undici.
  const timeout = UNDICI_TIMEOUTS.has(code ?? '') || e?.name === 'TimeoutError';
  if (timeout) return { ok: false, next: 'retry', status: 504, clientStatus: 504, code: 'upstream_timeout', message: `${target.label} timed out (${code ?? e?.name})` };
  return { ok: false, next: 'retry', status: 502, clientStatus: 502, code: 'upstream_error', message: `${target.label} connection failed (${code ?? e?.name ?? 'error'})` };
}

function statusFailure(target: Target, status: number, headers: IncomingHttpHeaders, text: string): AttemptFailure {
  let parsed: unknown = text;
  try { parsed = JSON.parse(text); } catch { /* plain-text error body */ }
  const { message } = target.provider.adapter ? target.provider.adapter.errorMessage(status, parsed) : { message: text };
  const next = classifyStatus(status);
  return {
    ok: false, next, status,
    clientStatus: next === 'final' ? status : status === 429 ? 429 : 502,
    code: next === 'final' ? 'invalid_request' : 'upstream_error',
    // Not clipped here: the message is scrubbed first and clipped after (UPSTREAM_MESSAGE_MAX).
    message: `${target.label} returned ${status}: ${message}`,
    retryAfterMs: retryAfterMs(headers),
  };
}

/**
 * The attempt's merged headers and path. While the provider's, the request's and the injection's
 * header objects are the very ones of the target's last attempt (shared, frozen objects: no
 * credential, the adapter's constant headers), the method and path are the same (content-type
 * depends on the method) and no query is injected, the last merge is reused,
 * frozen (it is only read: the dispatcher serializes a frozen header object once, lib/h1-agent.ts), instead of one merge per attempt.
 */
function sentHead(target: Target, up: OutboundRequest, inj: Injection): { headers: Readonly<Record<string, string>>; path: string } {
  const base = target.provider.headers;
  const last = target.sent;
  if (last !== undefined && last.base === base && last.up === up.headers && last.inj === inj.headers && last.upPath === up.path && last.method === up.method && inj.query === undefined) return last;
  const headers: Record<string, string> = { ...base, ...up.headers, ...inj.headers };
  if (up.method === 'POST') headers['content-type'] ??= 'application/json';
  const path = requestPath(target, up, inj);
  // Only merges of frozen parts are kept: a part that can change is merged anew each time.
  if (inj.query === undefined && Object.isFrozen(base) && Object.isFrozen(up.headers) && Object.isFrozen(inj.headers)) {
    target.sent = { base, up: up.headers, inj: inj.headers, headers: Object.freeze(headers), method: up.method, upPath: up.path, path };
  }
  return { headers, path };
}

function requestPath(target: Target, up: OutboundRequest, inj: Injection): string {
  let path = target.provider.basePath + up.path;
  if (inj.query) path += (path.includes('?') ? '&' : '?') + new URLSearchParams(inj.query).toString();
  return path;
}

function onTotalTimeout(x: Exchange): void {
  x.abort(new DOMException(`no complete answer within ${x.target.timeouts.totalMs} ms`, 'TimeoutError'));
}


type Head = AttemptText | AttemptStream | AttemptFailure;

/**
 * One attempt: undici dispatch handler, the call's in-flight attempt and, for streams, the body
 * iterator. A non-streamed answer (and any error body) is collected and settles `head` at
 * its end; a streamed 2xx settles `head` at the response head and is then read through next().
 */
class Exchange implements Dispatcher.DispatchHandler, UpstreamBody, Timed {
  readonly target: Target;
  private readonly call: CallAbort;
  private readonly stream: boolean;
  private settle: ((h: Head) => void) | null = null;
  private controller: Dispatcher.DispatchController | null = null;
  // On the target's total-timeout clock (gateway/deadlines.ts) while in flight.
  clock: Deadlines | null = null;
  deadline = 0;
  older: Timed | null = null;
  newer: Timed | null = null;
  private status = 0;
  private headers = NO_HEADERS;
  private chunks: Buffer[] = [];
  private bytes = 0;
  /** The body goes to a reader (streamed 2xx) rather than being collected. */
  private piping = false;
  /** Response ended or failed: timer and in-flight slot are released, nothing more arrives. */
  private over = false;
  private ended = false;
  private error: Error | null = null;
  private waiting: { resolve(r: IteratorResult<Buffer | readonly Buffer[]>): void; reject(e: Error): void } | null = null;

  constructor(target: Target, call: CallAbort, stream: boolean) {
    this.target = target;
    this.call = call;
    this.stream = stream;
  }

  send(up: OutboundRequest, inj: Injection): Promise<Head> {
    const head = new Promise<Head>((resolve) => { this.settle = resolve; });
    if (this.call.aborted) {
      this.over = true;
      this.resolveHead(networkFailure(this.target, this.call.reason));
      return head;
    }
    const { provider } = this.target;
    this.call.inFlight = this;
    (this.target.deadlines ??= new Deadlines(this.target.timeouts.totalMs)).add(this);
    const { headers, path } = sentHead(this.target, up, inj);
    if (!inj.sign) this.dispatch(path, headers, up);
    else if (!provider.signing) {
      this.release();
      this.resolveHead({ ok: false, next: 'final', status: 500, clientStatus: 500, code: 'upstream_error', message: `${this.target.label}: its credential signs AWS requests (aws_sigv4), which only a Provider of type bedrock can use` });
    } else {
      inj.sign({ method: up.method, url: provider.origin + path, headers, body: up.body }, provider.signing).then(
        (signed) => { if (!this.over) this.dispatch(path, { ...headers, ...signed }, up); },
        (err: unknown) => this.fail(err as Error),
      );
    }
    return head;
  }

  private dispatch(path: string, headers: Readonly<Record<string, string>>, up: OutboundRequest): void {
    const { provider, timeouts } = this.target;
    try {
      (provider.dispatcher ?? getGlobalDispatcher()).dispatch({
        origin: provider.origin,
        path,
        method: up.method,
        headers,
        body: up.method === 'POST' ? up.body : undefined,
        headersTimeout: timeouts.firstByteMs,
        bodyTimeout: timeouts.firstByteMs,
      }, this);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** Its total timeout passed (the target's clock calls this). */
  expire(): void { onTotalTimeout(this); }

  abort(reason: Error): void {
    if (this.over) return;
    this.fail(reason);
    // Before onRequestStart there is no controller yet: onRequestStart aborts then.
    this.controller?.abort(reason);
  }

  // ---- undici dispatch handler ----

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.error) controller.abort(this.error);
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    if (status < 200 || this.over) return;
    this.status = status;
    this.headers = headers;
    if (!this.stream || status >= 400) return;
    const ct = String(headers['content-type'] ?? '');
    if (!ct.includes('event-stream') && !ct.includes('vnd.amazon.eventstream')) {
      this.resolveHead(unusable(this.target, `expected text/event-stream, got ${ct || 'no content-type'}`));
      this.abort(new Error('unexpected content-type'));
      return;
    }
    this.piping = true;
    this.resolveHead({ ok: true, status, headers, body: this });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.over) return;
    const w = this.waiting;
    if (w) {
      this.waiting = null;
      w.resolve({ value: chunk, done: false });
      return;
    }
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (this.piping && this.bytes >= HIGH_WATER_MARK) controller.pause();
  }

  onResponseEnd(): void {
    if (this.over) return;
    this.release();
    this.ended = true;
    if (this.piping) {
      const w = this.waiting;
      this.waiting = null;
      w?.resolve({ value: undefined, done: true });
      return;
    }
    const text = this.take().toString();
    this.resolveHead(this.status >= 400 ? statusFailure(this.target, this.status, this.headers, text) : { ok: true, status: this.status, headers: this.headers, text });
  }

  onResponseError(_c: Dispatcher.DispatchController | null, err: Error): void {
    this.fail(err);
  }

  // ---- body iterator (streamed answers) ----

  get drained(): boolean { return this.ended && this.bytes === 0; }

  next(): Promise<IteratorResult<Buffer | readonly Buffer[]>> {
    if (this.bytes > 0) {
      const c = this.chunks;
      const value = c.length === 1 ? c[0] : c;
      this.chunks = [];
      this.bytes = 0;
      if (this.controller?.paused) this.controller.resume();
      return Promise.resolve({ value, done: false });
    }
    if (this.error) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => { this.waiting = { resolve, reject }; });
  }

  return(): Promise<IteratorResult<Buffer | readonly Buffer[]>> {
    this.destroy();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  destroy(err?: Error): void {
    if (!this.over) this.abort(err ?? new Error('upstream response abandoned'));
  }

  // ---- internals ----

  private fail(err: Error): void {
    if (this.over) return;
    this.release();
    this.error = err;
    // An error body cut short still yields its status (with whatever message arrived).
    if (this.settle) this.resolveHead(this.status >= 400 ? statusFailure(this.target, this.status, this.headers, '') : networkFailure(this.target, err));
    const w = this.waiting;
    this.waiting = null;
    w?.reject(err);
  }

  private release(): void {
    this.over = true;
    this.clock?.remove(this);
    if (this.call.inFlight === this) this.call.inFlight = null;
  }

  private resolveHead(h: Head): void {
    const s = this.settle;
    this.settle = null;
    s?.(h);
  }

  /** Everything received and not yet handed out, as one buffer. */
  private take(): Buffer {
    const c = this.chunks;
    const out = c.length === 1 ? c[0] : Buffer.concat(c, this.bytes);
    this.chunks = [];
    this.bytes = 0;
    return out;
  }
}

