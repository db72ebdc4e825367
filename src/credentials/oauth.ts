// Token endpoint calls (OAuth 2.0 client credentials, RFC 8693 token exchange) with retry and
// backoff. Errors say which credential and what the endpoint answered (status and OAuth error
// code only): never the request, the response body or the client secret.
import { CredentialError } from './errors.ts';

export interface RetryPolicy {
  /** Total attempts (first try included). */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseMs: 200, maxMs: 2000 };

export interface TokenRequest {
  credential: string;
  tokenUrl: string;
  form: Record<string, string>;
  /** client_secret_basic: user and password for the Authorization header. */
  basic?: { user: string; password: string };
  timeoutMs: number;
}

export interface TokenResult { accessToken: string; expiresInSec?: number }

export type FetchLike = (url: string, init: { method: string; headers: Record<string, string>; body: string; signal: AbortSignal }) => Promise<{ status: number; headers: { get(name: string): string | null }; text(): Promise<string> }>;

const OAUTH_ERROR_CODE = /^[a-z_]{1,64}$/;

function basicAuth(user: string, password: string): string {
  // RFC 6749 2.3.1: client id and secret are form-urlencoded before base64.
  return 'Basic ' + Buffer.from(`${encodeURIComponent(user)}:${encodeURIComponent(password)}`).toString('base64');
}

class Attempt extends Error {
  readonly retry: boolean;
  readonly retryAfterMs?: number;
  constructor(reason: string, retry: boolean, retryAfterMs?: number) { super(reason); this.retry = retry; this.retryAfterMs = retryAfterMs; }
}

async function once(req: TokenRequest, fetchFn: FetchLike): Promise<TokenResult> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (req.basic) headers.authorization = basicAuth(req.basic.user, req.basic.password);
  let res;
  try {
    res = await fetchFn(req.tokenUrl, { method: 'POST', headers, body: new URLSearchParams(req.form).toString(), signal: AbortSignal.timeout(req.timeoutMs) });
  } catch (e) {
    const name = (e as Error).name;
    throw new Attempt(name === 'TimeoutError' || name === 'AbortError' ? `no answer within ${req.timeoutMs} ms` : 'connection failed', true);
  }
  const text = await res.text().catch(() => '');
  let body: unknown;
  try { body = JSON.parse(text); } catch { body = undefined; }
  const obj = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (res.status !== 200) {
    const code = typeof obj.error === 'string' && OAUTH_ERROR_CODE.test(obj.error) ? ` ${obj.error}` : '';
    const ra = Number(res.headers.get('retry-after'));
    const retry = res.status >= 500 || res.status === 429 || res.status === 408;
    throw new Attempt(`HTTP ${res.status}${code}`, retry, Number.isFinite(ra) && ra > 0 ? ra * 1000 : undefined);
  }
  if (typeof obj.access_token !== 'string' || obj.access_token === '') throw new Attempt('answer has no access_token', true);
  if (typeof obj.token_type === 'string' && obj.token_type.toLowerCase() !== 'bearer' && obj.token_type !== 'N_A') {
    throw new Attempt(`unsupported token_type "${obj.token_type.slice(0, 32).replace(/[^A-Za-z0-9_-]/g, '')}"`, false);
  }
  const exp = typeof obj.expires_in === 'number' ? obj.expires_in : typeof obj.expires_in === 'string' ? Number(obj.expires_in) : undefined;
  return { accessToken: obj.access_token, expiresInSec: exp !== undefined && Number.isFinite(exp) && exp > 0 ? exp : undefined };
}

/** POST the token request, retrying network errors, 5xx and 429 with exponential backoff and jitter. */
export async function requestToken(req: TokenRequest, fetchFn: FetchLike, retry: RetryPolicy, sleep: (ms: number) => Promise<void>): Promise<TokenResult> {
  let last = 'no attempt made';
  for (let i = 0; i < retry.attempts; i++) {
    try {
      return await once(req, fetchFn);
    } catch (e) {
      if (!(e instanceof Attempt)) throw e;
      last = e.message;
      if (!e.retry || i === retry.attempts - 1) break;
      const backoff = Math.min(retry.maxMs, retry.baseMs * 2 ** i);
      await sleep(Math.min(retry.maxMs, e.retryAfterMs ?? backoff / 2 + Math.random() * backoff / 2));
    }
  }
  let host = 'the token endpoint';
  try { host = new URL(req.tokenUrl).host; } catch { /* keep generic */ }
  throw new CredentialError('credential_unavailable',
    `could not obtain an upstream token for credential "${req.credential}" from ${host}: ${last}. Check the token endpoint and the client credentials configured in aam.`,
    { status: 502, credential: req.credential });
}
