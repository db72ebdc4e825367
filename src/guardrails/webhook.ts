// Webhook guardrail: POST every text leaf of what the agent sends or receives (the guardrail
// walker's leaves: `texts`, and `text` = them joined by newlines) to an external checker and obey
// its verdict; a redaction answers `texts` (one per leaf) or, for a single leaf, `text`. A timeout,
// network error, non-2xx or malformed answer is decided by on_error (block unless set to allow),
// so a broken checker fails closed by default.
import { request } from '../lib/http-client.ts';
import type { CompiledGuardrail } from './engine-core.ts';
import type { Direction } from './types.ts';

export interface WebhookConfig { url: string; timeout_ms?: number; on_error?: 'block' | 'allow' }
export interface WebhookPayload { direction: Direction; text: string; texts?: string[]; agent: string; guardrail?: string; where?: string }
export interface WebhookVerdict {
  verdict: 'allow' | 'block' | 'redact';
  /** Replacement text when the checker redacted (single-leaf payloads). */
  text?: string;
  /** Replacement per leaf when the checker redacted. */
  texts?: string[];
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
    if (Array.isArray(b.texts) && b.texts.every((t) => typeof t === 'string')) out.texts = b.texts as string[];
    else if (typeof b.text === 'string') out.text = b.text;
    else return 'response.texts (one string per request text) or response.text must be given when verdict is redact';
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
  /** The leaves after redaction (the input array when nothing was redacted). */
  texts: string[];
  blockedBy?: string;
  /** One entry per webhook guardrail that did not allow: guardrail name, verdict and reason. */
  results: Array<{ guardrail: string; verdict: WebhookVerdict['verdict']; reason?: string; failed?: boolean }>;
}

/** A checker's redaction as one text per leaf, or null when it does not fit the leaves it was sent. */
function redactedLeaves(v: WebhookVerdict, texts: readonly string[]): string[] | null {
  if (v.texts !== undefined) return v.texts.length === texts.length ? v.texts : null;
  if (v.text !== undefined && texts.length === 1) return [v.text];
  return null;
}

/**
 * Run the webhook guardrails that apply to `direction` over the walker's leaves, in order (a
 * redaction feeds the next one). A guardrail whose action is `flag` runs in shadow mode: its
 * block/redact is recorded, not enforced. No leaves: nothing to ask.
 */
export async function runWebhookGuardrails(texts: string[], guardrails: readonly CompiledGuardrail[], direction: Direction, agent: string, where?: string): Promise<WebhookRun> {
  const run: WebhookRun = { verdict: 'allow', texts, results: [] };
  if (texts.length === 0) return run;
  for (const g of guardrails) {
    if (g.webhook === undefined || !g.on.has(direction)) continue;
    let v = await callWebhookGuardrail(g.webhook, { direction, text: run.texts.join('\n'), texts: run.texts, agent, guardrail: g.name, ...(where ? { where } : {}) });
    const replaced = v.verdict === 'redact' ? redactedLeaves(v, run.texts) : null;
    if (v.verdict === 'redact' && replaced === null) v = onError(g.webhook, `webhook redaction must answer texts with ${run.texts.length} strings`);
    if (v.verdict === 'allow') continue;
    const entry: WebhookRun['results'][number] = { guardrail: g.name, verdict: v.verdict };
    if (v.reason !== undefined) entry.reason = v.reason;
    if (v.failed) entry.failed = true;
    run.results.push(entry);
    if (g.action === 'flag') { if (run.verdict === 'allow') run.verdict = 'flag'; continue; }
    if (v.verdict === 'block') { run.verdict = 'block'; run.blockedBy = g.name; return run; }
    run.texts = replaced as string[];
    run.verdict = 'redact';
  }
  return run;
}
