// A minimal OTLP/HTTP JSON collector for tests: records every POST (path, headers, parsed body) and
// answers with a configurable status. Listens on 127.0.0.1 only.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';

export interface Received { path: string; headers: IncomingHttpHeaders; body: unknown }

export interface Collector {
  url: string;
  port: number;
  received: Received[];
  /** Status for the next answers (200 by default); a body for 2xx answers. */
  respond: { status: number; body?: string; headers?: Record<string, string> };
  /** Don't parse or keep bodies (benchmarks). */
  discard: boolean;
  /** Never answer (a stuck collector). */
  hang: boolean;
  waitFor(pred: (c: Collector) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startCollector(port = 0): Promise<Collector> {
  const c: Collector = {
    url: '', port: 0, received: [], respond: { status: 200 }, discard: false, hang: false,
    async waitFor(pred, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      while (!pred(c)) {
        if (Date.now() > end) throw new Error(`collector: condition not met within ${timeoutMs} ms (${c.received.length} requests)`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => { if (!c.discard) chunks.push(d); });
    req.on('end', () => {
      if (c.hang) return;
      if (!c.discard) {
        let buf = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') buf = gunzipSync(buf);
        c.received.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(buf.toString('utf8')) });
      }
      res.writeHead(c.respond.status, { 'content-type': 'application/json', ...c.respond.headers });
      res.end(c.respond.body ?? '{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  // A failing test that skips close() must not keep the test process alive.
  server.unref();
  c.port = (server.address() as AddressInfo).port;
  c.url = `http://127.0.0.1:${c.port}`;
  return c;
}

/** A port that nothing listens on (bound then released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

// Shapes of what the exporter sends, for reading it back in assertions.
export interface OtlpKv { key: string; value: Record<string, unknown> }
export interface OtlpSpan {
  traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; flags: number;
  startTimeUnixNano: string; endTimeUnixNano: string; attributes: OtlpKv[]; status: { code?: number; message?: string };
  traceState?: string; droppedAttributesCount?: number;
}

/** All spans received so far, in order. */
export function spansOf(c: Collector): OtlpSpan[] {
  const out: OtlpSpan[] = [];
  for (const r of c.received) {
    const body = r.body as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
    for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans) out.push(...ss.spans);
  }
  return out;
}

/** Attributes as a plain object of their OTLP value objects. */
export function attrs(kvs: OtlpKv[]): Record<string, Record<string, unknown>> {
  return Object.fromEntries(kvs.map((kv) => [kv.key, kv.value]));
}
