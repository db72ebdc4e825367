// Batched OTLP/HTTP JSON export, shared by traces and logs. The request path only pushes into a
// bounded ring buffer (O(1), never blocks, never does I/O): when full, the oldest item is dropped
// and counted. Encoding and POSTs happen on an unref'd timer, or as soon as a full batch is
// waiting (then only full batches: the remainder waits for the timer). One export is in flight at a time; retryable failures (network, 429, 502, 503, 504 per
// the OTLP/HTTP spec; Retry-After honoured) back off exponentially until maxRetryMs, then the batch
// is counted as failed. Other 4xx/5xx answers are permanent: retrying cannot help.
import { createAgent, request } from '../lib/http-client.ts';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { ResolvedOtlp } from './otlp-config.ts';

const gzipAsync = promisify(gzip);

export interface ExportStats {
  /** Items waiting in the queue now. */
  queued: number;
  /** Items the collector accepted. */
  exported: number;
  /** Items dropped because the queue was full (oldest first) or pushed after shutdown. */
  dropped: number;
  /** Items given up on after a permanent error or after retrying for maxRetryMs. */
  failed: number;
  /** Items the collector reported as rejected in a partial success. */
  rejected: number;
  /** POST attempts that were retried. */
  retries: number;
  lastError?: string;
}

export interface BatchExporter<T> {
  push(item: T): void;
  /** Export everything queued now (resolves when done or given up on). */
  flush(): Promise<void>;
  /**
   * Send these items now in one POST, bypassing the queue: resolves when the collector accepted
   * them (items it rejected in a partial success are counted, not retried), rejects on failure.
   * For callers that keep their own durable cursor and retry (audit sinks).
   */
  send(items: readonly T[]): Promise<void>;
  /** Stop the timer, flush what is queued within timeoutMs, close connections. Idempotent. */
  shutdown(timeoutMs?: number): Promise<void>;
  stats(): ExportStats;
}

export interface BatchCodec<T> {
  encode(items: readonly T[]): string;
  /** partialSuccess field naming the rejected count (rejectedSpans, rejectedLogRecords). */
  rejectedField: string;
  /** For messages: "spans", "log records". */
  noun: string;
}

interface PostResult { ok: boolean; retryable: boolean; rejected: number; retryAfterMs?: number; error?: string }

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

export function createBatchExporter<T>(cfg: ResolvedOtlp, codec: BatchCodec<T>): BatchExporter<T> {
  const cap = cfg.maxQueue;
  const ring: Array<T | undefined> = new Array(cap);
  let head = 0;
  let size = 0;
  const st: ExportStats = { queued: 0, exported: 0, dropped: 0, failed: 0, rejected: 0, retries: 0 };
  let draining: Promise<void> | null = null;
  let kickScheduled = false;
  let stopped = false;
  /** Set during shutdown: nothing (request, backoff) may wait past it. */
  let deadline = Infinity;
  let failing = false;
  /** The running drain sends partial batches too (timer, flush, shutdown). */
  let drainAll = false;
  /** Callers awaiting flush(): backoff sleeps keep the process up for them. */
  let waiters = 0;
  /** Ends a backoff sleep early (shutdown). */
  let wake: (() => void) | null = null;
  /** Aborts a POST still in flight when the shutdown deadline passes. */
  const stop = new AbortController();
  let stopping: Promise<void> | null = null;
  // Credentials in the URL's userinfo never reach logs or stats.
  const shownUrl = redactUrl(cfg.url);
  const agent = createAgent({ keepAliveTimeout: 30_000, connections: 4 });
  const headers: Record<string, string> = { ...cfg.headers, 'content-type': 'application/json' };
  if (cfg.compression === 'gzip') headers['content-encoding'] = 'gzip';

  const timer = setInterval(() => { if (size > 0) void kick(); }, cfg.flushIntervalMs);
  timer.unref();

  function push(item: T): void {
    if (stopped) { st.dropped++; return; }
    ring[(head + size) % cap] = item;
    if (size < cap) size++;
    else { head = (head + 1) % cap; st.dropped++; }
    // A full batch goes out without waiting for the timer, but never from inside the caller's stack.
    if (size >= cfg.batchSize && !kickScheduled) {
      kickScheduled = true;
      setImmediate(() => { kickScheduled = false; void kick(true); });
    }
  }

  function take(n: number): T[] {
    const k = Math.min(n, size);
    const out = new Array<T>(k);
    for (let i = 0; i < k; i++) {
      const idx = (head + i) % cap;
      out[i] = ring[idx] as T;
      ring[idx] = undefined;
    }
    head = (head + k) % cap;
    size -= k;
    return out;
  }

  /** Start draining unless a drain runs. fullOnly: a size trigger sends only full batches and leaves the rest to the timer. */
  function kick(fullOnly = false): Promise<void> {
    if (!fullOnly) drainAll = true;
    draining ??= drain().finally(() => { draining = null; drainAll = false; });
    return draining;
  }

  async function drain(): Promise<void> {
    while (size > 0 && (drainAll || size >= cfg.batchSize) && Date.now() < deadline) {
      await exportBatch(take(cfg.batchSize));
    }
  }

  async function exportBatch(batch: T[]): Promise<void> {
    let body: string | Buffer;
    try {
      body = codec.encode(batch);
      if (cfg.compression === 'gzip') body = await gzipAsync(body);
    } catch (e) {
      giveUp(batch.length, `encoding failed: ${(e as Error).message}`);
      return;
    }
    const giveUpAt = Math.min(Date.now() + cfg.maxRetryMs, deadline);
    for (let attempt = 0; ; attempt++) {
      const r = await post(body);
      if (r.ok) {
        st.exported += batch.length - r.rejected;
        st.rejected += r.rejected;
        if (r.rejected > 0) note(`collector rejected ${r.rejected} ${codec.noun}: ${r.error ?? ''}`);
        if (failing) { failing = false; cfg.logger?.info({ url: shownUrl }, `OTLP export of ${codec.noun} recovered`); }
        return;
      }
      const backoff = Math.min(cfg.maxBackoffMs, cfg.minBackoffMs * 2 ** attempt) * (0.5 + Math.random() / 2);
      const wait = Math.max(backoff, r.retryAfterMs ?? 0);
      if (!r.retryable || Date.now() + wait >= Math.min(giveUpAt, deadline)) {
        giveUp(batch.length, r.error ?? 'export failed');
        return;
      }
      st.retries++;
      note(r.error ?? 'export failed');
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { wake = null; resolve(); }, wait);
        // Never keeps the process up in normal running; during shutdown it must, or exit cuts the flush.
        if (!stopped && waiters === 0) t.unref();
        wake = () => { clearTimeout(t); wake = null; resolve(); };
      });
    }
  }

  async function post(body: string | Buffer): Promise<PostResult> {
    const timeout = Math.max(1, Math.min(cfg.timeoutMs, deadline - Date.now()));
    try {
      const res = await request(cfg.url, {
        method: 'POST', headers, body, dispatcher: agent,
        headersTimeout: timeout, bodyTimeout: timeout, signal: AbortSignal.any([AbortSignal.timeout(timeout), stop.signal]),
      });
      const text = await res.body.text().catch(() => '');
      if (res.statusCode >= 200 && res.statusCode < 300) {
        return { ok: true, retryable: false, ...partialSuccess(text, codec.rejectedField) };
      }
      return {
        ok: false, retryable: RETRYABLE_STATUS.has(res.statusCode), rejected: 0,
        retryAfterMs: retryAfter(res.headers['retry-after']),
        error: `collector answered ${res.statusCode}${text ? ': ' + text.slice(0, 200) : ''}`,
      };
    } catch (e) {
      const err = e as { code?: string; name?: string; message?: string };
      return { ok: false, retryable: true, rejected: 0, error: `cannot reach ${shownUrl} (${err.code ?? err.name ?? 'error'})` };
    }
  }

  function note(error: string): void {
    st.lastError = error;
    if (!failing) {
      failing = true;
      cfg.logger?.warn({ url: shownUrl, error }, `OTLP export of ${codec.noun} failing; retrying with backoff`);
    }
  }

  function giveUp(n: number, error: string): void {
    st.failed += n;
    st.lastError = error;
    cfg.logger?.warn({ url: shownUrl, error, count: n }, `OTLP export gave up on ${n} ${codec.noun}`);
  }

  return {
    push,
    async send(items: readonly T[]): Promise<void> {
      if (items.length === 0) return;
      if (stopped) throw new Error(`OTLP ${codec.noun} exporter is shut down`);
      let body: string | Buffer = codec.encode(items);
      if (cfg.compression === 'gzip') body = await gzipAsync(body);
      const r = await post(body);
      if (!r.ok) {
        st.lastError = r.error;
        throw new Error(`OTLP export of ${items.length} ${codec.noun} failed: ${r.error ?? 'unknown error'}`);
      }
      st.exported += items.length - r.rejected;
      st.rejected += r.rejected;
    },
    async flush(): Promise<void> {
      waiters++;
      // Let a running drain finish first: it may be about to stop without taking a partial batch.
      try { await draining; await kick(); } finally { waiters--; }
    },
    shutdown(timeoutMs = 5000): Promise<void> {
      stopping ??= (async () => {
        stopped = true;
        deadline = Date.now() + timeoutMs;
        clearInterval(timer);
        const killer = setTimeout(() => stop.abort(), timeoutMs);
        wake?.();
        await draining;
        await kick();
        clearTimeout(killer);
        // Whatever could not be sent before the deadline is lost: count it.
        if (size > 0) giveUp(take(size).length, 'shutdown deadline reached');
        await agent.close().catch(() => {});
      })();
      return stopping;
    },
    stats: () => ({ ...st, queued: size }),
  };
}

function partialSuccess(text: string, field: string): { rejected: number; error?: string } {
  if (!text) return { rejected: 0 };
  try {
    const body = JSON.parse(text) as { partialSuccess?: Record<string, unknown> };
    const ps = body.partialSuccess;
    const n = Number(ps?.[field] ?? 0);
    return { rejected: Number.isFinite(n) && n > 0 ? n : 0, error: typeof ps?.errorMessage === 'string' ? ps.errorMessage : undefined };
  } catch {
    return { rejected: 0 };
  }
}

function retryAfter(h: string | string[] | undefined): number | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function redactUrl(url: string): string {
  const u = new URL(url);
  if (u.username || u.password) { u.username = '***'; u.password = ''; }
  return u.toString();
}
