// One HTTP request through an undici dispatcher with precise timings, using the low-level
// handler API (no stream objects) so the client adds as little as possible to what it measures.
import type { Dispatcher } from 'undici';

export interface RequestSpec {
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface Timing {
  status: number;
  /** ms from dispatch to the response status line + headers */
  headersMs: number;
  /** ms from dispatch to the first body chunk (NaN if the body was empty) */
  firstChunkMs: number;
  /** ms from dispatch to the first chunk that carries a non-empty content delta (streams) */
  firstContentMs: number;
  /** ms from dispatch to the end of the body */
  totalMs: number;
  bytes: number;
  /** The body's first 300 bytes when the status is not 2xx (what the refusal said). */
  error?: string;
}

// A streamed chunk with real text: `"content":"` (chat), `"delta":"` (a Responses text delta) or
// `"text":"` (an Anthropic text delta; an A2A event's text part: the artifact of a stream, whose
// first event, the task, holds none) followed by anything but the closing quote. A callee's own
// serializer (A2A, passed on as written) may put spaces around the colon.
export const CONTENT_RE = /"(?:content|delta|text)"\s*:\s*"[^"]/;

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export function sendOnce(dispatcher: Dispatcher, spec: RequestSpec, scanContent: boolean): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const t: Timing = { status: 0, headersMs: NaN, firstChunkMs: NaN, firstContentMs: NaN, totalMs: NaN, bytes: 0 };
    // Content may straddle two chunks; keep a short tail of the previous chunk to scan across.
    let tail = '';
    dispatcher.dispatch({ path: spec.path, method: 'POST', headers: spec.headers, body: spec.body }, {
      onRequestStart() { /* required by undici's handler API */ },
      onResponseStart(_c, statusCode) { t.status = statusCode; t.headersMs = nowMs() - t0; },
      onResponseData(_c, chunk) {
        if (t.bytes === 0) t.firstChunkMs = nowMs() - t0;
        if ((t.status < 200 || t.status > 299) && (t.error ?? '').length < 300) t.error = ((t.error ?? '') + chunk.toString('utf8')).slice(0, 300);
        t.bytes += chunk.length;
        if (scanContent && Number.isNaN(t.firstContentMs)) {
          const s = tail + chunk.toString('latin1');
          if (CONTENT_RE.test(s)) t.firstContentMs = nowMs() - t0;
          else tail = s.slice(-24);
        }
      },
      onResponseEnd() { t.totalMs = nowMs() - t0; resolve(t); },
      onResponseError(_c, err) { reject(err); },
    });
  });
}
