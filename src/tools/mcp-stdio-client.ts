// aam as a client of an upstream MCP server it runs itself (stdio transport, MCP 2025-11-25 and
// earlier): it spawns the process and speaks newline-delimited JSON-RPC over its stdin/stdout
// (basic/transports, "stdio"), with the initialize handshake, request timeouts (reset by
// progress), cancellation (notifications/cancelled) and the server's own requests (ping answered,
// anything else "Method not found", as a client declaring no capabilities). It behaves as the MCP
// SDK's Client + StdioClientTransport did for aam (errors, limits, closing), without loading the
// SDK (zod v4 + v3 schemas of the whole protocol, zod-to-json-schema: ~9 MB RSS under load).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type {
  CallToolResult, CompleteRequest, CompleteResult, GetPromptResult, ListPromptsResult, ListResourcesResult, ListResourceTemplatesResult, ListToolsResult, LoggingLevel, Progress, ReadResourceResult, ServerCapabilities,
} from '@modelcontextprotocol/sdk/types.js';
import type { ReqOptions, SessionClient } from './mcp-modern-client.ts';
import { MCP_CODE, McpError } from './mcp-error.ts';
import { schemaValidator } from './json-schema.ts';
import { SESSION_VERSION, SESSION_VERSIONS } from './mcp-headers.ts';
import { isObj } from '../lib/json.ts';

/** Unparsed output held at most (a line without its end this long): the connection is closed, as the SDK's ReadBuffer did. */
export const STDIO_MAX_BUFFER = 10 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 60_000;
/** How long close() waits for the process to exit after its stdin closed, then after SIGTERM, before SIGKILL. */
const EXIT_WAIT_MS = 2000;

/** Only these variables of aam's own environment reach the server (sudo's list, as the SDK's getDefaultEnvironment). */
const INHERITED_ENV = ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER'];
export function defaultEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of INHERITED_ENV) {
    const v = process.env[k];
    // A value starting with "()" is a shell function: never passed on.
    if (v !== undefined && !v.startsWith('()')) env[k] = v;
  }
  return env;
}

type Json = Record<string, unknown>;
type Settle = (r: { result: Json } | { error: Error }) => void;
interface Pending { settle: Settle; onprogress?: (p: Progress) => void; timer: NodeJS.Timeout; timeout: number; started: number; maxTotal?: number; resetOnProgress: boolean; onTimeout: () => void }

export interface StdioSpec {
  command: string;
  args: readonly string[];
  /** The whole environment of the process (defaultEnvironment() plus what config names). */
  env: Record<string, string>;
  /** Each line the process writes to stderr. */
  onStderr(line: string): void;
}

/** start() spawns the process and runs the initialize handshake (the process is stopped if either fails); onclose: its stdio closed (it exited, or close() stopped it). */
export interface StdioClient extends SessionClient {
  ping(o?: ReqOptions): Promise<Json>;
  readonly pid: number | null;
}

/** A tool definition as the SDK's ToolSchema parsed it: its known fields only (tool digests cover them), name and an object inputSchema required. */
function toolOf(t: unknown, i: number): Json {
  if (!isObj(t) || typeof t.name !== 'string') throw new Error(`tools/list result: tools[${i}] has no string name`);
  if (!isObj(t.inputSchema) || t.inputSchema.type !== 'object') throw new Error(`tools/list result: tool "${t.name}" has no inputSchema of type "object"`);
  if (t.outputSchema !== undefined && (!isObj(t.outputSchema) || t.outputSchema.type !== 'object')) throw new Error(`tools/list result: tool "${t.name}" has an outputSchema not of type "object"`);
  const out: Json = { name: t.name };
  if (t.title !== undefined) out.title = t.title;
  if (t.icons !== undefined) out.icons = t.icons;
  if (t.description !== undefined) out.description = t.description;
  out.inputSchema = t.inputSchema;
  if (t.outputSchema !== undefined) out.outputSchema = t.outputSchema;
  if (isObj(t.annotations)) {
    const a: Json = {};
    for (const k of ['title', 'readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint']) if (t.annotations[k] !== undefined) a[k] = t.annotations[k];
    out.annotations = a;
  }
  if (isObj(t.execution)) out.execution = t.execution.taskSupport !== undefined ? { taskSupport: t.execution.taskSupport } : {};
  if (isObj(t._meta)) out._meta = t._meta;
  return out;
}

export function createStdioClient(spec: StdioSpec): StdioClient {
  let child: ChildProcess | undefined;
  let capabilities: ServerCapabilities | undefined;
  let closed = false;
  // The SDK numbered requests from 0 (initialize); servers see the same ids.
  let nextId = 0;
  const pending = new Map<number, Pending>();
  const handlers = new Map<string, (params: Json) => void | Promise<void>>();
  /** Output schemas (compiled on a tool's first call) and task-only tools of the last listing. */
  const outputSchemas = new Map<string, { schema: Json; check?: (v: unknown) => string | undefined }>();
  const taskOnly = new Set<string>();
  let buffered: Buffer[] = [];
  let bufferedBytes = 0;

  const write = (msg: Json): Promise<void> => new Promise((resolve, reject) => {
    const stdin = child?.stdin;
    if (!stdin || closed) return reject(new Error('Not connected'));
    if (stdin.write(JSON.stringify(msg) + '\n')) resolve(); else stdin.once('drain', resolve);
  });

  function onLine(line: string): void {
    let msg: unknown;
    // A line that is not a JSON-RPC message is skipped (the SDK reported it to no one).
    try { msg = JSON.parse(line.endsWith('\r') ? line.slice(0, -1) : line); } catch { return; }
    if (!isObj(msg) || msg.jsonrpc !== '2.0') return;
    if (typeof msg.method === 'string') {
      if (msg.params !== undefined && !isObj(msg.params)) return;
      if (typeof msg.id === 'string' || typeof msg.id === 'number') return onRequest(msg.id, msg.method);
      if (msg.id === undefined) return onNotificationMsg(msg.method, (msg.params ?? {}) as Json);
      return;
    }
    if (typeof msg.id !== 'string' && typeof msg.id !== 'number') return;
    if (isObj(msg.error) && Number.isInteger(msg.error.code) && typeof msg.error.message === 'string') {
      return settle(Number(msg.id), { error: new McpError(msg.error.code as number, msg.error.message, msg.error.data) });
    }
    if (isObj(msg.result)) settle(Number(msg.id), { result: msg.result });
  }

  function settle(id: number, r: { result: Json } | { error: Error }): void {
    const p = pending.get(id);
    if (!p) return; // an answer to a request given up (timed out, cancelled)
    pending.delete(id);
    clearTimeout(p.timer);
    p.settle(r);
  }

  /** The server's own requests: a client that declares no capabilities answers ping only. */
  function onRequest(id: string | number, method: string): void {
    const reply = method === 'ping' ? { jsonrpc: '2.0', id, result: {} } : { jsonrpc: '2.0', id, error: { code: MCP_CODE.methodNotFound, message: 'Method not found' } };
    write(reply).catch(() => {});
  }

  function onNotificationMsg(method: string, params: Json): void {
    if (method === 'notifications/progress') return onProgress(params);
    const h = handlers.get(method);
    if (h) Promise.resolve().then(() => h(params)).catch(() => {});
  }

  function onProgress(params: Json): void {
    const { progressToken, ...progress } = params;
    const id = Number(progressToken);
    const p = pending.get(id);
    if (!p?.onprogress) return;
    if (p.resetOnProgress) {
      const elapsed = Date.now() - p.started;
      if (p.maxTotal && elapsed >= p.maxTotal) {
        return settle(id, { error: new McpError(MCP_CODE.requestTimeout, 'Maximum total timeout exceeded', { maxTotalTimeout: p.maxTotal, totalElapsed: elapsed }) });
      }
      clearTimeout(p.timer);
      p.timer = setTimeout(p.onTimeout, p.timeout);
    }
    p.onprogress(progress as unknown as Progress);
  }

  function onStdout(chunk: Buffer): void {
    if (bufferedBytes + chunk.length > STDIO_MAX_BUFFER) {
      // A message larger than the buffer (or output that never ends a line): the connection is closed and the process restarted.
      buffered = [];
      bufferedBytes = 0;
      void stop();
      return;
    }
    let start = 0;
    let nl: number;
    while ((nl = chunk.indexOf(10, start)) >= 0) {
      const part = chunk.subarray(start, nl);
      const line = buffered.length ? Buffer.concat([...buffered, part]).toString('utf8') : part.toString('utf8');
      buffered = [];
      bufferedBytes = 0;
      start = nl + 1;
      onLine(line);
      if (closed) return;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      buffered.push(rest);
      bufferedBytes += rest.length;
    }
  }

  /** The process's stdio closed: every request in flight fails as the SDK's did ("Connection closed"). */
  function onClosed(): void {
    if (closed && !child) return;
    closed = true;
    child = undefined;
    buffered = [];
    bufferedBytes = 0;
    const all = [...pending.values()];
    pending.clear();
    for (const p of all) { clearTimeout(p.timer); p.settle({ error: new McpError(MCP_CODE.connectionClosed, 'Connection closed') }); }
    client.onclose?.();
  }

  /** Stop the process: stdin closed, then SIGTERM, then SIGKILL, each after EXIT_WAIT_MS without an exit. */
  async function stop(): Promise<void> {
    const proc = child;
    if (!proc) return;
    const exited = new Promise<void>((resolve) => { if (proc.exitCode !== null || proc.signalCode !== null) resolve(); else proc.once('close', () => resolve()); });
    const wait = () => Promise.race([exited, new Promise<void>((resolve) => { setTimeout(resolve, EXIT_WAIT_MS).unref(); })]);
    try { proc.stdin?.end(); } catch { /* already closed */ }
    await wait();
    if (proc.exitCode === null && proc.signalCode === null) {
      try { proc.kill('SIGTERM'); } catch { /* gone */ }
      await wait();
    }
    if (proc.exitCode === null && proc.signalCode === null) {
      try { proc.kill('SIGKILL'); } catch { /* gone */ }
    }
  }

  function request<T>(method: string, params: Json | undefined, o?: ReqOptions): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (!child || closed) return reject(new Error('Not connected'));
      const signal = o?.signal;
      if (signal?.aborted) return reject(signal.reason);
      const id = nextId++;
      let sent: Json | undefined = params;
      if (o?.onprogress) sent = { ...params, _meta: { ...(isObj(params?._meta) ? params._meta : {}), progressToken: id } };
      const onAbort = () => cancel(signal!.reason);
      const cancel = (reason: unknown) => {
        if (!pending.delete(id)) return;
        clearTimeout(p.timer);
        signal?.removeEventListener('abort', onAbort);
        write({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: String(reason) } }).catch(() => {});
        reject(reason instanceof McpError ? reason : new McpError(MCP_CODE.requestTimeout, String(reason)));
      };
      const timeout = o?.timeout ?? DEFAULT_TIMEOUT_MS;
      const onTimeout = () => cancel(new McpError(MCP_CODE.requestTimeout, 'Request timed out', { timeout }));
      const p: Pending = {
        settle: (r) => {
          signal?.removeEventListener('abort', onAbort);
          if ('error' in r) reject(r.error); else resolve(r.result as T);
        },
        onprogress: o?.onprogress, timer: setTimeout(onTimeout, timeout), timeout, started: Date.now(), maxTotal: o?.maxTotalTimeout, resetOnProgress: o?.resetTimeoutOnProgress ?? false, onTimeout,
      };
      pending.set(id, p);
      signal?.addEventListener('abort', onAbort, { once: true });
      write({ jsonrpc: '2.0', id, method, ...(sent !== undefined ? { params: sent } : {}) }).catch((e: unknown) => {
        if (pending.delete(id)) { clearTimeout(p.timer); signal?.removeEventListener('abort', onAbort); reject(e); }
      });
    });
  }

  async function callTool(params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> }, o?: ReqOptions): Promise<CallToolResult> {
    if (taskOnly.has(params.name)) throw new McpError(MCP_CODE.invalidRequest, `Tool "${params.name}" requires task-based execution, which aam does not ask of MCP servers before 2026-07-28`);
    const r = await request<CallToolResult>('tools/call', params, o);
    // CallToolResult's content defaults to [] (as the SDK's schema filled it in).
    if (r.content === undefined && !('task' in r)) r.content = [];
    else if (r.content !== undefined && !Array.isArray(r.content)) throw new Error('tools/call result: content is not an array');
    const out = outputSchemas.get(params.name);
    if (out) {
      // A tool with an output schema must return structured content (unless it failed), and content that matches.
      if (!r.structuredContent && !r.isError) throw new McpError(MCP_CODE.invalidRequest, `Tool ${params.name} has an output schema but did not return structured content`);
      if (r.structuredContent) {
        let problem: string | undefined;
        try {
          out.check ??= schemaValidator(out.schema);
          problem = out.check(r.structuredContent);
        } catch (e) {
          throw new McpError(MCP_CODE.invalidParams, `Failed to validate structured content: ${e instanceof Error ? e.message : String(e)}`);
        }
        if (problem !== undefined) throw new McpError(MCP_CODE.invalidParams, `Structured content does not match the tool's output schema: ${problem}`);
      }
    }
    return r;
  }

  const client: StdioClient = {
    get pid() { return child?.pid ?? null; },
    async start(timeoutMs) {
      const proc = spawn(spec.command, [...spec.args], { env: spec.env, stdio: ['pipe', 'pipe', 'pipe'], shell: false });
      child = proc;
      createInterface({ input: proc.stderr! }).on('line', (line) => spec.onStderr(line));
      // Errors after the start (a pipe the process closed) end in 'close' like any exit.
      proc.stdin!.on('error', () => {});
      proc.stdout!.on('error', () => {});
      proc.stdout!.on('data', onStdout);
      proc.on('close', onClosed);
      await new Promise<void>((resolve, reject) => {
        proc.once('spawn', resolve);
        proc.once('error', reject);
      });
      proc.on('error', () => {});
      try {
        const r = await request<Json>('initialize', { protocolVersion: SESSION_VERSION, capabilities: {}, clientInfo: { name: 'aam-gateway', version: '0.1.0' } }, { timeout: timeoutMs });
        if (!SESSION_VERSIONS.includes(r.protocolVersion as string)) throw new Error(`Server's protocol version is not supported: ${String(r.protocolVersion)}`);
        if (!isObj(r.capabilities)) throw new Error('initialize result without capabilities');
        capabilities = r.capabilities as ServerCapabilities;
        await write({ jsonrpc: '2.0', method: 'notifications/initialized' });
      } catch (e) {
        void stop();
        throw e;
      }
    },
    onNotification(method, handler) { handlers.set(method, handler); },
    ping: (o) => request<Json>('ping', undefined, o),
    getServerCapabilities: () => capabilities,
    async listTools(params, o) {
      const r = await request<ListToolsResult>('tools/list', params, o);
      if (!Array.isArray(r.tools)) throw new Error('tools/list result without a tools array');
      r.tools = r.tools.map((t, i) => toolOf(t, i)) as unknown as ListToolsResult['tools'];
      // Each listing replaces what the previous one said about output schemas and task-only tools (a next page adds to its first).
      if (!params?.cursor) { outputSchemas.clear(); taskOnly.clear(); }
      for (const t of r.tools) {
        if (t.outputSchema) outputSchemas.set(t.name, { schema: t.outputSchema as Json });
        if (t.execution?.taskSupport === 'required') taskOnly.add(t.name);
      }
      return r;
    },
    callTool: (params, _schema, o) => callTool(params, o),
    listResources: (params, o) => request<ListResourcesResult>('resources/list', params, o),
    readResource: (params, o) => request<ReadResourceResult>('resources/read', params, o),
    listResourceTemplates: (params, o) => request<ListResourceTemplatesResult>('resources/templates/list', params, o),
    listPrompts: (params, o) => request<ListPromptsResult>('prompts/list', params, o),
    getPrompt: (params, o) => request<GetPromptResult>('prompts/get', params, o),
    complete: (params: CompleteRequest['params'], o) => request<CompleteResult>('completion/complete', params as Json, o),
    setLoggingLevel: (level: LoggingLevel, o) => request<Json>('logging/setLevel', { level }, o),
    subscribeResource: (params, o) => request<Json>('resources/subscribe', params, o),
    unsubscribeResource: (params, o) => request<Json>('resources/unsubscribe', params, o),
    close: () => stop(),
  };
  return client;
}
