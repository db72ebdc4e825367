// One HTTP attempt against one target, and the explicit table of what is worth another attempt.
import { request, errors as undiciErrors } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { UpstreamRequest } from '../providers/types.ts';
import type { Target } from './routes.ts';

export interface Injection { headers: Record<string, string>; query?: Record<string, string>; credential?: { name: string; version: number } }

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
export type AttemptOk = { ok: true; status: number; headers: IncomingHttpHeaders; body: Readable & { text(): Promise<string> } };

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
 * Signal for one attempt: aborted by the request's signal or after `ms` (the target's total
 * timeout). Cheaper than AbortSignal.any + AbortSignal.timeout, which keep weak references
 * alive per request; call done() when the attempt (or its stream) is over.
 */
export function attemptSignal(parent: AbortSignal, ms: number): { signal: AbortSignal; done(): void } {
  const ac = new AbortController();
  const onAbort = () => ac.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => ac.abort(new DOMException(`no complete answer within ${ms} ms`, 'TimeoutError')), ms);
  return { signal: ac.signal, done: () => { clearTimeout(timer); parent.removeEventListener('abort', onAbort); } };
}

function buildUrl(target: Target, up: UpstreamRequest, inj: Injection): string {
  let url = target.provider.baseUrl + up.path;
  if (inj.query) {
    const q = new URLSearchParams(inj.query).toString();
    url += (url.includes('?') ? '&' : '?') + q;
  }
  return url;
}

/** Send one request. Network errors and timeouts come back as a classified failure, never a throw. */
export async function sendAttempt(target: Target, up: UpstreamRequest, inj: Injection, signal: AbortSignal): Promise<AttemptOk | AttemptFailure> {
  const headers: Record<string, string> = { ...target.provider.headers, ...up.headers, ...inj.headers };
  if (up.method === 'POST') headers['content-type'] ??= 'application/json';
  try {
    const res = await request(buildUrl(target, up, inj), {
      method: up.method,
      headers,
      body: up.method === 'POST' ? up.body : undefined,
      dispatcher: target.provider.dispatcher ?? undefined,
      signal,
      headersTimeout: target.timeouts.firstByteMs,
      bodyTimeout: target.timeouts.firstByteMs,
    });
    if (res.statusCode < 400) return { ok: true, status: res.statusCode, headers: res.headers, body: res.body as AttemptOk['body'] };
    const text = await res.body.text().catch(() => '');
    let parsed: unknown = text;
    try { parsed = JSON.parse(text); } catch { /* plain-text error body */ }
    const { message } = target.provider.adapter ? target.provider.adapter.errorMessage(res.statusCode, parsed) : { message: text };
    const next = classifyStatus(res.statusCode);
    return {
      ok: false, next, status: res.statusCode,
      clientStatus: next === 'final' ? res.statusCode : res.statusCode === 429 ? 429 : 502,
      code: next === 'final' ? 'invalid_request' : 'upstream_error',
      message: `${target.label} returned ${res.statusCode}: ${truncate(message)}`,
      retryAfterMs: retryAfterMs(res.headers),
    };
  } catch (err) {
    return networkFailure(target, err, signal);
  }
}

export function networkFailure(target: Target, err: unknown, signal?: AbortSignal): AttemptFailure {
  const e = err as { code?: string; name?: string; message?: string };
  const timeout = e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError
    || e instanceof undiciErrors.ConnectTimeoutError || e?.name === 'TimeoutError' || (signal?.aborted && (signal.reason as Error | undefined)?.name === 'TimeoutError');
  if (timeout) return { ok: false, next: 'retry', status: 504, clientStatus: 504, code: 'upstream_timeout', message: `${target.label} timed out (${e.code ?? e.name})` };
  return { ok: false, next: 'retry', status: 502, clientStatus: 502, code: 'upstream_error', message: `${target.label} connection failed (${e.code ?? e.name ?? 'error'})` };
}

function truncate(s: string): string {
  return s.length > 500 ? s.slice(0, 500) + '...' : s;
}
