// Small shared helpers for the e2e-*.test.ts files: raw chat calls (status, headers, request id),
// audit lookups by request id, tiny local HTTP servers, free ports and CLI runs.
import { createServer, Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { flushCompileCache } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { queryEvents } from '../../src/audit/query.ts';
import type { AuditEvent } from '../../src/audit/event.ts';
import type { TestGateway } from './gateway.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const NODE_BIN = join(ROOT, 'node_modules', '.bin', 'node');
export const CLI = join(ROOT, 'src', 'cli', 'main.ts');

export interface ChatReply { status: number; headers: Headers; requestId: string; text: string; json: unknown }

/** POST /v1/chat/completions with fetch (so status, headers and x-request-id are visible). */
export async function chat(url: string, key: string, model: string, content: string, extra: { stream?: boolean; headers?: Record<string, string> } = {}): Promise<ChatReply> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...extra.headers },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], ...(extra.stream ? { stream: true } : {}) }),
  });
  const text = await r.text();
  let json: unknown = null;
  try { json = JSON.parse(text); } catch { /* SSE or not JSON */ }
  return { status: r.status, headers: r.headers, requestId: r.headers.get('x-request-id') ?? '', text, json };
}

/** Text content of an OpenAI SSE body (data: lines joined), and any error event. */
export function sseContent(body: string): { text: string; error: { message?: string; code?: string; type?: string } | null; done: boolean } {
  let text = '';
  let error: { message?: string; code?: string; type?: string } | null = null;
  let done = false;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const d = line.slice(6).trim();
    if (d === '[DONE]') { done = true; continue; }
    const o = JSON.parse(d) as { error?: { message?: string; code?: string; type?: string }; choices?: Array<{ delta?: { content?: string } }> };
    if (o.error) error = o.error;
    text += o.choices?.[0]?.delta?.content ?? '';
  }
  return { text, error, done };
}

/** Audit events of one request (committed first), optionally of one type. */
export async function auditOf(gw: TestGateway, requestId: string, type?: string): Promise<AuditEvent[]> {
  const log = gw.g.rt.auditLog;
  if (!log) throw new Error('gateway has no audit log');
  await log.flush();
  return queryEvents(log.db, { requestId, type, order: 'asc' });
}

export interface LocalServer { url: string; server: Server; close(): Promise<void> }

export async function localServer(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void | Promise<void>): Promise<LocalServer> {
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => { Promise.resolve(handler(req, res, Buffer.concat(parts).toString('utf8'))).catch(() => { if (!res.headersSent) res.writeHead(500); res.end(); }); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server,
    close: () => { server.closeAllConnections(); return new Promise<void>((r) => server.close(() => r())); },
  };
}

/** Start a test's own server on a free loopback port: its base URL, plus `path` (an upstream's '/mcp'). */
export async function listenLoopback(server: Server, path = ''): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
}

/**
 * A test's teardown: each in the order given (the gateway before the upstreams it holds streams
 * to), an HTTP server with its open connections (SSE streams) cut first; undefined ones (a
 * before() that failed early) are skipped.
 */
export async function closeAll(...things: Array<Server | { close(): unknown } | undefined>): Promise<void> {
  for (const t of things) {
    if (t instanceof Server) { t.closeAllConnections(); await new Promise((r) => t.close(r)); } else await t?.close();
  }
}

/** A port that was free a moment ago (listen on 0, close). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

/**
 * Before an `aam` child starts: what this process compiled so far goes to the compile cache
 * (NODE_COMPILE_CACHE, set by npm test), which Node writes only at exit otherwise, so the child
 * loads those sources ready instead of compiling them again (three replicas at once under load).
 */
export function warmChild(): void {
  flushCompileCache();
}

/** Run `aam ARGS` with Node 24 (optionally feeding stdin). */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<CliResult> {
  warmChild();
  return new Promise((resolve, reject) => {
    const p = spawn(NODE_BIN, [CLI, ...args], { cwd: ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(opts.stdin ?? '');
  });
}

/** Poll until cond() is true (or throw after ms). */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
