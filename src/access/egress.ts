// The one egress door: every byte aam sends to an agent passes a scrubbing writer first.
//
// The HTTP server is created with EgressResponse as its response class, so every handler, every
// plane and every library handed the response (the MCP SDK's transport) writes through it: there
// is no other way to write. Header values, bodies, stream chunks (strings and binary) are
// scrubbed of every active credential in every known encoding, with a stream scrubber that holds
// back only what could be the start of a secret split across writes. Scrub first, then truncate.
// Bytes aam posts to an agent on a connection it opens itself (an A2A push notification to the
// caller's webhook) leave through postToAgent below: the same scrubbing, on the request side;
// texts a guardrail webhook judges are scrubbed by scrubForCheck before they are sent.
import type { Dispatcher } from 'undici';
import type { IncomingMessage, OutgoingHttpHeaders, OutgoingHttpHeader } from 'node:http';
import { ServerResponse } from '../lib/node-http.ts';
import type { Scrubber, StreamScrubber } from '../credentials/scrub.ts';
import { LEAF_MAX_DEPTH, mapLeaves, textLeavesUpTo, textPartOf } from '../guardrails/structured.ts';
import { bodyUnread, closeAfterAnswer } from './linger.ts';
import { request } from '../lib/http-client.ts';

/** Where the door gets the current scrubber and reports a hit (a hit is evidence). */
export interface ScrubSource {
  scrubber(): Scrubber;
  /** requestId: the request whose answer held them (the door knows it), so the leak's evidence joins that request's trail. */
  leaked(names: readonly string[], requestId?: string): void;
}

type Cb = (err?: Error | null) => void;
type Chunk = string | Buffer | Uint8Array;

export class EgressResponse<Req extends IncomingMessage = IncomingMessage> extends ServerResponse<Req> {
  /** null: no credential is active (pass-through, zero cost) — or the door was never opened (see open). */
  #sc: Scrubber | null = null;
  #src: ScrubSource | null = null;
  #requestId: string | undefined = undefined;
  #stream: StreamScrubber | null = null;
  /** Last chunk kind written, so a held-back tail is flushed in the same form. */
  #binary = false;
  #opened = false;
  /** send() knows the exact scrubbed length: its content-length must survive node's setHeader pass. */
  #exact = false;

  /** Called by the request listener before any handler runs (snapshot of the active secrets). */
  open(src: ScrubSource, requestId?: string): void {
    this.#opened = true;
    this.#src = src;
    this.#requestId = requestId;
    const sc = src.scrubber();
    this.#sc = sc.size > 0 ? sc : null;
  }

  /**
   * Take the source's scrubber as it is now, until a stream starts (its held-back text belongs to
   * one scrubber): a token fetched while this request ran (OAuth, service account) is a secret of
   * this very response. The source returns the same object unless something changed.
   */
  #refresh(): void {
    if (this.#stream !== null || this.#src === null) return;
    const sc = this.#src.scrubber();
    this.#sc = sc.size > 0 ? sc : null;
  }

  /** Scrub one text for this response (error messages, header values); a hit is reported. */
  clean(text: string): string {
    return this.#sc === null ? text : scrubbed(this.#src, this.#sc, text, this.#requestId);
  }

  /** A whole body at once: scrubbed first, so content-length is exact. */
  send(status: number, text: string, headers: OutgoingHttpHeaders): void {
    this.#guardOpened();
    if (this.headersSent) { super.end(); return; }
    this.#refresh();
    const body = this.clean(text);
    this.#exact = true;
    // Answered before the body was all read (a refusal, a 401): close rather than read on.
    const close = bodyUnread(this.req) ? 'close' : undefined;
    if (close !== undefined) closeAfterAnswer(this.req);
    // The head as [name, value, ...] pairs, in order (the caller's headers, then the exact length and
    // a close): node writes such an array as it is. A fresh object filled per answer, with keys in
    // each answer's own order, made megamorphic stores and map transitions, then node's for-in over it.
    const h = this.#cleanHeaders(headers);
    h.push('content-length', Buffer.byteLength(body));
    if (close !== undefined) h.push('connection', close);
    super.writeHead(status, h);
    this.#exact = false;
    super.end(body);
  }

  override writeHead(status: number, a?: string | OutgoingHttpHeaders | OutgoingHttpHeader[], b?: OutgoingHttpHeaders | OutgoingHttpHeader[]): this {
    this.#guardOpened();
    this.#refresh();
    if (this.#sc === null) return super.writeHead(status, a as string, b);
    const message = typeof a === 'string' ? this.clean(a) : undefined;
    const headers = typeof a === 'string' ? b : a;
    return message === undefined ? super.writeHead(status, this.#cleanAny(headers)) : super.writeHead(status, message, this.#cleanAny(headers));
  }

  override setHeader(name: string, value: number | string | readonly string[]): this {
    if (this.#sc === null || this.#exact) return super.setHeader(name, value);
    // The body may shrink or grow when scrubbed: let node frame it (chunked) instead.
    if (name.toLowerCase() === 'content-length') return this;
    return super.setHeader(name, typeof value === 'number' ? value : typeof value === 'string' ? this.clean(value) : value.map((v) => this.clean(v)));
  }

  override appendHeader(name: string, value: string | readonly string[]): this {
    // #exact: send()'s own head, already scrubbed (node appends it when headers were set before).
    if (this.#sc === null || this.#exact) return super.appendHeader(name, value);
    if (name.toLowerCase() === 'content-length') return this;
    return super.appendHeader(name, typeof value === 'string' ? this.clean(value) : value.map((v) => this.clean(v)));
  }

  override write(chunk: Chunk, a?: BufferEncoding | Cb, b?: Cb): boolean {
    this.#guardOpened();
    this.#refresh();
    const cb = typeof a === 'function' ? a : b;
    const encoding = typeof a === 'string' ? a : undefined;
    // Node's write(chunk, encoding, cb) takes an undefined encoding or callback as not given.
    if (this.#sc === null) return super.write(chunk, encoding as BufferEncoding, cb);
    return super.write(this.#push(chunk, encoding), cb);
  }

  override end(a?: Chunk | Cb, b?: BufferEncoding | Cb, c?: Cb): this {
    this.#guardOpened();
    this.#refresh();
    if (this.#sc === null) return super.end(a as string, b as BufferEncoding, c);
    const cb = typeof a === 'function' ? a : typeof b === 'function' ? b : c;
    let out: Chunk = '';
    if (a !== undefined && a !== null && typeof a !== 'function') out = this.#push(a, typeof b === 'string' ? b : undefined);
    const tail = this.#stream?.end() ?? '';
    if (tail) out = this.#binary ? Buffer.concat([toBuffer(out), Buffer.from(tail, 'latin1')]) : (typeof out === 'string' ? out : toBuffer(out).toString('latin1')) + tail;
    return super.end(out, cb);
  }

  /** Strings are scrubbed as text; bytes as latin1 (one char per byte), so binary bodies are covered too. */
  #push(chunk: Chunk, encoding: BufferEncoding | undefined): Chunk {
    this.#stream ??= (this.#sc as Scrubber).stream((names) => this.#src?.leaked(names, this.#requestId));
    if (typeof chunk === 'string' && (encoding === undefined || encoding === 'utf8' || encoding === 'utf-8')) {
      this.#binary = false;
      return this.#stream.push(chunk);
    }
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : toBuffer(chunk);
    this.#binary = true;
    const text = bytes.toString('latin1');
    const out = this.#stream.push(text);
    return out === text ? bytes : Buffer.from(out, 'latin1');
  }

  #cleanAny(h: OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined): OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined {
    if (h === undefined) return h;
    if (Array.isArray(h)) {
      // Raw [name, value, name, value, ...] pairs.
      const out: OutgoingHttpHeader[] = [];
      for (let i = 0; i + 1 < h.length; i += 2) {
        if (String(h[i]).toLowerCase() === 'content-length') continue;
        out.push(h[i], cleanValue(h[i + 1], (s) => this.clean(s)));
      }
      return out;
    }
    return this.#sc === null ? h : this.#cleanObject(h);
  }

  /**
   * writeHead's headers object with its values scrubbed, content-length and undefined values left
   * out: the object itself when that changes nothing (a stream's head, every SendStreamingMessage's
   * and chat stream's: no copy of it per response), else a copy from the first header that changes.
   */
  #cleanObject(h: OutgoingHttpHeaders): OutgoingHttpHeaders {
    const sc = this.#sc as Scrubber;
    let out: OutgoingHttpHeaders | null = null;
    for (const k in h) {
      const v = h[k];
      const c = v === undefined || k.toLowerCase() === 'content-length' ? undefined : this.#scrubValue(sc, v);
      if (out === null) {
        if (c === v && c !== undefined) continue;
        // The headers before this one, as they were (unchanged).
        out = {};
        for (const j in h) { if (j === k) break; out[j] = h[j]; }
      }
      if (c !== undefined) out[k] = c;
    }
    return out ?? h;
  }

  /**
   * The headers as [name, value, ...] pairs, values scrubbed (with no active credential, as they
   * are), undefined values left out. No closure per header: every answer's head passes here.
   */
  #cleanHeaders(h: OutgoingHttpHeaders): Array<string | number | string[]> {
    const sc = this.#sc;
    const out: Array<string | number | string[]> = [];
    for (const k in h) {
      const v = h[k];
      if (v === undefined) continue;
      out.push(k, sc === null ? v : this.#scrubValue(sc, v));
    }
    return out;
  }

  /** A header value scrubbed (a number as it is; a string unchanged is the same string). */
  #scrubValue(sc: Scrubber, v: number | string | string[]): number | string | string[] {
    return typeof v === 'number' ? v : typeof v === 'string' ? scrubbed(this.#src, sc, v, this.#requestId) : v.map((x) => scrubbed(this.#src, sc, String(x), this.#requestId));
  }

  /** A response the listener never opened is a bug, not a reason to send unscrubbed bytes. */
  #guardOpened(): void {
    if (!this.#opened) throw new Error('EgressResponse used before open(): the request listener must open the egress door first');
  }
}

function cleanValue<T extends OutgoingHttpHeader>(v: T, clean: (s: string) => string): T {
  if (typeof v === 'string') return clean(v) as T;
  if (Array.isArray(v)) return v.map((x) => clean(String(x))) as T;
  return v;
}

function toBuffer(c: Chunk): Buffer {
  return Buffer.isBuffer(c) ? c : typeof c === 'string' ? Buffer.from(c, 'utf8') : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

/**
 * The door sees bytes; an agent reassembles values. A secret an upstream splits across content
 * parts (each half harmless on the wire) is redacted here, across the value's `text` leaves (MCP
 * and chat content parts, resource contents, prompt messages) in walker order, before the value
 * is written out.
 */
export function scrubAcross<T>(src: ScrubSource, value: T): T {
  const sc = src.scrubber();
  // Fewer than two text parts cannot split a secret (each alone goes through the door whole).
  if (sc.size === 0 || textLeavesUpTo(value, 2) < 2) return value;
  const parts: string[] = [];
  mapLeaves(value, { leaf(t, path) { if (path.endsWith('.text')) parts.push(t); return t; }, deep() { /* not rebuilt */ } });
  if (parts.length < 2) return value;
  const r = sc.scrubJoined(parts);
  if (r.leaked.length === 0) return value;
  src.leaked(r.leaked);
  let k = 0;
  return mapLeaves(value, { leaf: (t, path) => (path.endsWith('.text') ? r.texts[k++] : t), deep() { /* not rebuilt */ } }) as T;
}

/**
 * Texts an agent joins back together that leave in one body with JSON between them (an answer's
 * thinking blocks, a reasoning item's summary parts): scrubbed across their boundaries, a secret's
 * marker where it starts, the leak reported. The same array when none holds a secret.
 */
export function scrubJoinedTexts(src: ScrubSource, texts: readonly string[], requestId?: string): readonly string[] {
  const sc = src.scrubber();
  if (sc.size === 0 || texts.length < 2) return texts;
  const r = sc.scrubJoined(texts);
  if (r.leaked.length === 0) return texts;
  src.leaked(r.leaked, requestId);
  return r.texts;
}

/**
 * How scrubAcross reads a string of a value, for a walk gathering its text parts (structured.ts
 * textPartOf: 1 a part as it is, 0 none, -1 read otherwise: let scrubAcross gather them).
 */
export function acrossPartOf(key: string, s: string, member: boolean): -1 | 0 | 1 {
  return textPartOf(key, s, member);
}

/** The depth (the value's own is 0) from which scrubAcross gathers no text part (its walker's limit). */
export const ACROSS_MAX_DEPTH = LEAF_MAX_DEPTH;

/**
 * scrubAcross for a value whose text parts a walk of its own gathered (a2a/event-walk.ts: exactly
 * those scrubAcross joins, in its order; guardrails/structured.ts textPartOf): the value itself
 * when their join holds no secret (one search; no path built per leaf), else scrubAcross. A secret
 * split across parts is in their join, so this skips scrubAcross only where it would change nothing.
 */
export function scrubAcrossParts<T>(src: ScrubSource, value: T, parts: readonly string[]): T {
  if (parts.length < 2 || !holdsSecret(src, parts.join(''))) return value;
  return scrubAcross(src, value);
}

/**
 * Texts aam sends a third party to judge (the leaves a guardrail webhook gets): scrubbed as the
 * door scrubs what an agent gets, across the leaves too (a checker may join them), so a credential
 * an upstream echoed, or an agent sent, never reaches the checker. The answer still leaves through
 * the door, which records the leak.
 */
export function scrubForCheck(src: ScrubSource, texts: string[]): string[] {
  const sc = src.scrubber();
  if (sc.size === 0 || texts.length === 0) return texts;
  const r = sc.scrubJoined(texts);
  return r.leaked.length === 0 ? texts : [...r.texts];
}

/** True when the text holds an active credential (in any known encoding). */
export function holdsSecret(src: ScrubSource, text: string): boolean {
  const sc = src.scrubber();
  return sc.size > 0 && sc.scan(text).hit;
}

/** Scrub first, then truncate: a clipped secret would no longer match its pattern. */
export function clipAfterScrub(scrubbed: string, max: number): string {
  return scrubbed.length > max ? scrubbed.slice(0, max) + '...' : scrubbed;
}

/** One text scrubbed with the source's current scrubber; a hit is reported. */
function scrubbed(src: ScrubSource | null, sc: Scrubber, text: string, requestId?: string): string {
  const r = sc.scrub(text);
  if (r.leaked.length) src?.leaked(r.leaked, requestId);
  return r.text;
}

export interface AgentPost {
  headers: Record<string, string>;
  /** A dispatcher pinned to the address the SSRF check saw (a2a/push.ts), if any. */
  dispatcher?: Dispatcher;
  timeoutMs: number;
}

/**
 * The door's request side: `value` posted as JSON to an agent's own URL (an A2A push notification
 * to the caller's webhook). Scrubbed across its text parts, then as the whole body, and every
 * header value, before a byte leaves; the answer's body is discarded. Returns the HTTP status.
 * Planes never post to an agent otherwise (test/architecture-trust.test.ts lists every outbound call).
 */
export async function postToAgent(src: ScrubSource, url: string, value: unknown, opts: AgentPost): Promise<number> {
  const sc = src.scrubber();
  let body = JSON.stringify(scrubAcross(src, value));
  let headers = opts.headers;
  if (sc.size > 0) {
    body = scrubbed(src, sc, body);
    headers = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, scrubbed(src, sc, v)]));
  }
  const up = await request(url, {
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    method: 'POST', body, headers: { 'content-type': 'application/json', ...headers }, headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs,
  });
  await up.body.dump();
  return up.statusCode;
}
