// Per-request context and the small I/O helpers every handler uses.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SSE_KEEPALIVE } from '../providers/sse.ts';
import type { EgressResponse } from './egress.ts';
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type { AccessConfig, AccessRuntime } from './runtime-view.ts';
import type { Identity } from '../identity/types.ts';
import type { Span } from '../observability/tracing.ts';
import type { AccessRequest, Decision } from '../policy/types.ts';
import type { PolicySet } from '../policy/compile.ts';
import { AamError, anthropicErrorBody, errorHeaders, jsonRpcErrorBody, openaiErrorBody, toAamError } from './errors.ts';
import { jsonTooDeep, MAX_JSON_DEPTH } from './json-depth.ts';
import { keyCount, memberCount, scanJsonKeys } from './json-keys.ts';
import { JsonTooComplex, MAX_KEY_NAMES, parseJsonInTurns } from './json-turns.ts';

/**
 * A request's context. The access path sees the runtime and config through its own views; a plane
 * names the wider view it needs (e.g. gateway/plane.ts), and the server fills in the real runtime.
 */
export interface Ctx<R extends AccessRuntime = AccessRuntime, C extends AccessConfig = AccessConfig> {
  req: IncomingMessage;
  /** The egress door: everything written here is scrubbed first (see access/egress.ts). */
  res: EgressResponse;
  rt: R;
  /** Config snapshot for the whole request (a reload mid-request does not change it). */
  cfg: C;
  path: string;
  query: string;
  requestId: string;
  /** The caller's own x-request-id, if sane: kept beside aam's id in evidence, never in its place. */
  clientRequestId?: string;
  /** Monotonic start time (ms, fractional). */
  start: number;
  /** Error body format the caller understands. */
  wire: 'openai' | 'anthropic' | 'jsonrpc';
  identity?: Identity;
  /** RFC 8707: the absolute URL of the protected resource (route) this request is addressed to, where a route has one (/mcp, /mcp/<server>). */
  resource?: string;
  /** The access context opened by identify (model plane; access/context.ts): identity with its resolved policy set. */
  access?: { readonly identity: Identity; readonly set: PolicySet };
  /** Server span when tracing is on. */
  span?: Span;
  /** The request's trace id once asked for (requestTraceId in access/evidence.ts), when there is no span to carry it. */
  traceId?: string;
  /** The policy decision for this request, until an audit event has carried it. */
  decision?: { d: Decision; identity: Identity; req: AccessRequest; recorded: boolean };
  /** Credential name and version the upstream call used (for evidence). */
  credentialUsed?: { name: string; version: number };
  /** Bytes of the request body actually read (not the declared content-length, which chunked uploads omit). */
  bodyBytes?: number;
  /** Names of the guardrails applied to this request (evidence of their allow verdicts). */
  guardrails?: string[];
  /**
   * The upstream call to abort when the client goes away before its answer is finished: the
   * server's one close listener per request does it (a plane's own listener cost a second one).
   */
  call?: { abort(): void };
}

/** A route handler of the one HTTP server (src/server/http.ts); planes export these. */
export type Handler<C extends Ctx = Ctx> = (ctx: C) => Promise<void> | void;

export interface Routes<C extends Ctx = Ctx> {
  exact: Map<string, Handler<C>>;
  /** [prefix, handler] checked in order when no exact route matches. */
  prefixes: Array<[string, Handler<C>]>;
}


const PREFIX = randomBytes(4).toString('hex');
/**
 * aam's request id (cheap, unique, no crypto per request) and the caller's x-request-id when sane.
 * aam always owns the id evidence is keyed by: an agent-chosen one could collide with (and be
 * mistaken for) another request's trail. The client's id is kept as a separate field.
 */
export function requestIdFor(req: IncomingMessage, rt: AccessRuntime): { requestId: string; clientRequestId?: string } {
  const given = req.headers['x-request-id'];
  const requestId = `req_${PREFIX}${(++rt.requestSeq).toString(36).padStart(8, '0')}`;
  return typeof given === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? { requestId, clientRequestId: given } : { requestId };
}

export function sendJson(ctx: Ctx, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendText(ctx, status, typeof body === 'string' ? body : JSON.stringify(body), 'application/json', headers);
}

export function sendText(ctx: Ctx, status: number, text: string, contentType: string, headers: Record<string, string> = {}): void {
  ctx.res.send(status, text, anthropicRequestId({ 'content-type': contentType, 'x-request-id': ctx.requestId, ...headers }, ctx));
}

/**
 * On the Anthropic wire aam's request id also goes as `request-id`, the header Anthropic answers
 * with and its SDK reads (message._request_id, an error's requestID): null through aam before.
 */
export function anthropicRequestId(h: Record<string, string>, ctx: Pick<Ctx, 'wire' | 'requestId'>): Record<string, string> {
  if (ctx.wire === 'anthropic') h['request-id'] = ctx.requestId;
  return h;
}

export function sendError(ctx: Ctx, err: unknown): void {
  const e = toAamError(err);
  if (e.status >= 500 && e.code === 'internal_error') ctx.rt.log.error({ requestId: ctx.requestId, err }, 'unhandled error');
  if (ctx.res.headersSent) { ctx.res.destroy(); return; }
  // The egress door scrubs the body: no error text reaches an agent unscrubbed.
  const body = ctx.wire === 'openai' ? openaiErrorBody(e) : ctx.wire === 'anthropic' ? anthropicErrorBody(e) : jsonRpcErrorBody(e);
  sendText(ctx, e.status, body, 'application/json', errorHeaders(e));
}

/**
 * Watches a body while it is read: `feed` sees each chunk once the body may exceed `from` bytes
 * and may refuse it; the error is then the answer, and the rest is not read (the connection closes).
 */
export interface BodyWatch {
  from: number;
  feed(chunk: Buffer): Error | undefined;
}

/** Bodies this large are paced while read: at most READ_TURN_MS of watching and decoding per loop turn. */
const PACE_FROM = 64 * 1024;
const READ_TURN_MS = 1;

/** Read the request body with a size cap (413 above it); `limit` below AAM_MAX_BODY_BYTES for small endpoints. */
export function readBody(ctx: Ctx, limit = ctx.rt.options.maxBodyBytes, watch?: BodyWatch): Promise<Buffer> {
  return readThen(ctx, limit, watch, bodyItself);
}

const bodyItself = (_ctx: Ctx, buf: Buffer): Buffer => buf;

/**
 * readBody, and `then` of the body run at its end inside the same promise: a reader of JSON
 * (readJsonBody) costs no async frames and promise layers of its own per request. A throw from
 * `then` rejects; a promise it returns is the result.
 */
function readThen<T>(ctx: Ctx, limit: number | undefined, watch: BodyWatch | undefined, then: (ctx: Ctx, buf: Buffer) => T | Promise<T>): Promise<T> {
  const max = limit ?? ctx.rt.options.maxBodyBytes;
  const declared = Number(ctx.req.headers['content-length']);
  // Refused unread: the answer closes the connection (EgressResponse.send, access/linger.ts).
  if (declared > max) return Promise.reject(tooLargeFor(ctx, max));
  // Small bodies (the usual case) are never watched: nothing is spent on them.
  let watching = watch !== undefined && declared > watch.from;
  return new Promise((resolve, reject) => {
    const req = ctx.req;
    let chunks: Buffer[] = [];
    let size = 0;
    let busy = 0; // ms spent on this body's chunks since reading last paused
    req.on('data', (c: Buffer) => {
      size += c.length;
      let err: Error | undefined;
      if (size > max) err = tooLargeFor(ctx, max);
      else {
        chunks.push(c);
        // A large body is watched as it arrives; one turn can bring megabytes of chunks.
        const t0 = size >= PACE_FROM ? performance.now() : -1;
        if (watch === undefined) { /* nothing to watch */ }
        else if (watching) err = watch.feed(c);
        else if (size > watch.from) {
          watching = true;
          for (const x of chunks) if ((err = watch.feed(x)) !== undefined) break;
        }
        if (err === undefined && t0 >= 0 && (busy += performance.now() - t0) >= READ_TURN_MS) {
          // Let other requests run before reading on: the socket waits (TCP backpressure), not they.
          busy = 0;
          req.pause();
          setImmediate(() => req.resume());
        }
      }
      if (err !== undefined) {
        reject(err);
        chunks = [];
        // Not read on: the answer closes the connection (EgressResponse.send, access/linger.ts).
        req.removeAllListeners('data');
        req.pause();
      }
    });
    req.on('end', () => {
      ctx.bodyBytes = size;
      try { resolve(then(ctx, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks))); } catch (e) { reject(e); }
    });
    req.on('error', reject);
  });
}

const tooLargeFor = (ctx: Ctx, limit: number): AamError => (limit === ctx.rt.options.maxBodyBytes ? tooLargeGeneral : tooLargeHere)(limit);

const tooLargeHere = (limit: number) => new AamError(413, 'body_too_large', `request body exceeds the ${limit} byte limit of this endpoint`);

function tooLargeGeneral(limit: number): AamError {
  return new AamError(413, 'body_too_large', `request body exceeds the ${limit} byte limit (AAM_MAX_BODY_BYTES)`);
}

export async function readJson(ctx: Ctx, limit?: number, watch?: BodyWatch): Promise<unknown> {
  const buf = await readBody(ctx, limit, watch);
  checkJsonBody(ctx, buf);
  refuseTooDeep(buf, jsonTooDeep(buf) !== null);
  const v = parseBody(buf);
  return v instanceof Promise ? await v : v;
}

/** A JSON body with its bytes, as the model plane reads it (see JsonBody); no async frame of its own (readThen). */
export function readJsonBody(ctx: Ctx, limit?: number, watch?: BodyWatch): Promise<JsonBody> {
  return readThen(ctx, limit, watch, jsonBodyOf);
}

function jsonBodyOf(ctx: Ctx, bytes: Buffer): JsonBody | Promise<JsonBody> {
  const members = countedMembers(ctx, bytes);
  const parsed = parseBody(bytes);
  return parsed instanceof Promise ? parsed.then((value) => noRepeat(value, bytes, members)) : noRepeat(parsed, bytes, members);
}

/** After the parse: a body that is not JSON at all is told so first. Fewer keys than members: one repeats. */
function noRepeat(value: unknown, bytes: Buffer, members: number): JsonBody {
  const dup = keyCount(value) !== members ? scanJsonKeys(bytes).duplicate : null;
  if (dup) throw new AamError(400, 'invalid_json', `request body repeats the key "${dup.path}" (again at byte ${dup.offset}); send each key once per object`, { param: dup.path });
  return { value, bytes };
}

/**
 * A JSON body and, when no key repeats in any object and the bytes are UTF-8, its bytes: they
 * then say exactly what the parsed value says, so a plane may send them on as they are (an A2A
 * call whose body need not change). A repeated key is not refused here: the plane sends what it
 * parsed, re-serialised, instead.
 */
export function readJsonWithBytes(ctx: Ctx, limit?: number, watch?: BodyWatch): Promise<{ value: unknown; bytes: Buffer | null }> {
  return readThen(ctx, limit, watch, withBytesOf);
}

function withBytesOf(ctx: Ctx, bytes: Buffer): { value: unknown; bytes: Buffer | null } | Promise<{ value: unknown; bytes: Buffer | null }> {
  const members = countedMembers(ctx, bytes);
  const parsed = parseBody(bytes);
  const of = (value: unknown) => ({ value, bytes: keyCount(value) === members && isUtf8(bytes) ? bytes : null });
  return parsed instanceof Promise ? parsed.then(of) : of(parsed);
}

/** A JSON body checked (type, not empty, not too deep), and the members its bytes write (to tell a repeated key by). */
function countedMembers(ctx: Ctx, bytes: Buffer): number {
  checkJsonBody(ctx, bytes);
  const members = memberCount(bytes);
  refuseTooDeep(bytes, members < 0);
  return members;
}

/** A parsed body with no key repeated in any object, and its bytes: what aam read is what they say, so they may go upstream as they are. */
export interface JsonBody { value: unknown; bytes: Buffer }

function checkJsonBody(ctx: Ctx, buf: Buffer): void {
  const ct = ctx.req.headers['content-type'];
  if (ct && !/json/i.test(ct)) throw new AamError(415, 'unsupported_media_type', `content-type must be application/json (got ${ct})`);
  if (buf.length === 0) throw new AamError(400, 'invalid_json', 'request body is empty; send a JSON object');
}

function refuseTooDeep(buf: Buffer, tooDeep: boolean): void {
  const deep = tooDeep ? jsonTooDeep(buf) : null;
  if (deep) {
    const where = deep.field === null ? 'request body' : `field "${deep.field}"`;
    throw new AamError(400, 'invalid_json', `${where} nests JSON deeper than ${MAX_JSON_DEPTH} levels (at byte ${deep.offset}); flatten it`, { param: deep.field ?? undefined });
  }
}

/** The parsed body: a promise only for a large body decoded across loop turns. */
function parseBody(buf: Buffer): unknown {
  // A large body's long strings are decoded from its bytes across loop turns; a small body is parsed at once.
  try {
    const v = parseJsonInTurns(buf, { maxKeyNames: MAX_KEY_NAMES });
    return v instanceof Promise ? v.catch((e: unknown) => { throw notJson(e); }) : v;
  } catch (e) {
    throw notJson(e);
  }
}

const notJson = (e: unknown) => e instanceof JsonTooComplex ? new AamError(400, 'invalid_request', e.message) : new AamError(400, 'invalid_json', `request body is not valid JSON: ${(e as Error).message}`);

/**
 * Comment frames on an idle event stream so proxies and load balancers do not cut it: every `ms`,
 * if the response has begun as text/event-stream and its connection wrote nothing since the last
 * tick (so at most one comment per idle interval, never inside a frame: writes are whole frames).
 * Anything else (a JSON answer, a refusal) is never touched. Stops when the response ends or closes.
 */
export function keepSseAlive(res: ServerResponse, ms: number): void {
  if (!(ms > 0)) return;
  let seen = -1;
  const timer = setInterval(() => {
    if (res.writableEnded || res.destroyed) return stop();
    // The raw head, however the headers were set (writeHead with an object leaves getHeader empty).
    const head = (res as unknown as { _header?: string | null })._header;
    if (!head || !/\r\ncontent-type: *text\/event-stream/i.test(head)) return;
    const written = res.socket?.bytesWritten ?? 0;
    if (written === seen) res.write(SSE_KEEPALIVE);
    seen = res.socket?.bytesWritten ?? written;
  }, ms);
  timer.unref();
  const stop = () => clearInterval(timer);
  res.once('close', stop);
  res.once('finish', stop);
}
