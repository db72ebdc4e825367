// Webhook guardrail: POST the text to an external checker and obey its verdict. A timeout,
// network error, non-2xx or malformed answer is decided by on_error (block unless set to allow),
// so a broken checker fails closed by default.
import { request } from 'undici';
import type { CompiledGuardrail } from './engine-core.ts';
import type { Direction } from './types.ts';

export interface WebhookConfig { url: string; timeout_ms?: number; on_error?: 'block' | 'allow' }
export interface WebhookPayload { direction: Direction; text: string; agent: string; guardrail?: string }
export interface WebhookVerdict {
  verdict: 'allow' | 'block' | 'redact';
  /** Replacement text when the checker redacted. */
  text?: string;
  /** Why (from the checker, or the error that triggered on_error). Never contains the text. */
  reason?: string;
  /** True when the verdict came from on_error rather than the checker. */
  failed?: boolean;
}

const DEFAULT_TIMEOUT_MS = 1000;
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

function onError(cfg: WebhookConfig, reason: string): WebhookVerdict {
  return { verdict: cfg.on_error === 'allow' ? 'allow' : 'block', reason, failed: true };
}

function parseVerdict(body: unknown): WebhookVerdict | string {
  if (typeof body !== 'object' || body === null) return 'response is not a JSON object';
  const b = body as Record<string, unknown>;
  const v = b.verdict;
  if (v !== 'allow' && v !== 'block' && v !== 'redact') return 'response.verdict must be allow, block or redact';
  const out: WebhookVerdict = { verdict: v };
  if (typeof b.reason === 'string') out.reason = b.reason.slice(0, 500);
  if (v === 'redact') {
    if (typeof b.text !== 'string') return 'response.text must be a string when verdict is redact';
    out.text = b.text;
  }
  return out;
}

export async function callWebhookGuardrail(cfg: WebhookConfig, payload: WebhookPayload): Promise<WebhookVerdict> {
  const timeout = cfg.timeout_ms ?? DEFAULT_TIMEOUT_MS;
  const signal = AbortSignal.timeout(timeout);
  try {
    const res = await request(cfg.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(payload),
      signal,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
    if (res.statusCode < 200 || res.statusCode > 299) {
      await res.body.dump();
      return onError(cfg, `webhook answered HTTP ${res.statusCode}`);
    }
    const raw = await res.body.text();
    if (raw.length > MAX_RESPONSE_BYTES) return onError(cfg, 'webhook response too large');
    let parsed: unknown;
    try { parsed = JSON.parse(raw); } catch { return onError(cfg, 'webhook response is not JSON'); }
    const v = parseVerdict(parsed);
    return typeof v === 'string' ? onError(cfg, `webhook ${v}`) : v;
  } catch (err) {
    const timedOut = signal.aborted || (err as Error).name === 'TimeoutError' || /timeout/i.test((err as Error).message);
    return onError(cfg, timedOut ? `webhook timed out after ${timeout} ms` : `webhook call failed: ${(err as Error).message}`);
  }
}

export interface WebhookRun {
  verdict: 'allow' | 'flag' | 'redact' | 'block';
  text: string;
  blockedBy?: string;
  /** One entry per webhook guardrail that did not allow: guardrail name, verdict and reason. */
  results: Array<{ guardrail: string; verdict: WebhookVerdict['verdict']; reason?: string; failed?: boolean }>;
}

/**
 * Run the webhook guardrails that apply to `direction`, in order (a redaction feeds the next one).
 * A guardrail whose action is `flag` runs in shadow mode: its block/redact is recorded, not enforced.
 */
export async function runWebhookGuardrails(text: string, guardrails: readonly CompiledGuardrail[], direction: Direction, agent: string): Promise<WebhookRun> {
  const run: WebhookRun = { verdict: 'allow', text, results: [] };
  for (const g of guardrails) {
    if (g.webhook === undefined || !g.on.has(direction)) continue;
    const v = await callWebhookGuardrail(g.webhook, { direction, text: run.text, agent, guardrail: g.name });
    if (v.verdict === 'allow') continue;
    const entry: WebhookRun['results'][number] = { guardrail: g.name, verdict: v.verdict };
    if (v.reason !== undefined) entry.reason = v.reason;
    if (v.failed) entry.failed = true;
    run.results.push(entry);
    if (g.action === 'flag') { if (run.verdict === 'allow') run.verdict = 'flag'; continue; }
    if (v.verdict === 'block') { run.verdict = 'block'; run.blockedBy = g.name; return run; }
    run.text = v.text ?? run.text;
    run.verdict = 'redact';
  }
  return run;
}
