// Agent-side helpers for tool-plane tests against a real gateway (test/helpers/gateway.ts): the
// MCP SDK client over Streamable HTTP, the admin API, and the audit trail of tool calls.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { queryEvents } from '../../src/audit/query.ts';
import type { AuditEvent } from '../../src/audit/event.ts';
import type { TestGateway } from './gateway.ts';
import { until } from './e2e.ts';

export const ADMIN_TOKEN = 'admin-token-for-tool-tests-0123456789';

export async function connectClient(gw: TestGateway, key: string, path = '/mcp'): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(gw.url + path), { requestInit: { headers: { authorization: `Bearer ${key}` } } });
  await client.connect(transport);
  return { client, transport };
}

/** The first text content of a tools/call result. */
export const textOf = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;

/** The JSON-RPC error a call fails with (fails the test if it succeeds or fails otherwise). */
export async function rpcError(p: Promise<unknown>): Promise<McpError> {
  try { await p; } catch (e) { assert.ok(e instanceof McpError, `expected McpError, got ${String(e)}`); return e; }
  assert.fail('expected the call to fail');
}

/** Call the admin API with AAM_ADMIN_TOKEN (start the gateway with { AAM_ADMIN_TOKEN: ADMIN_TOKEN }). */
export async function admin<T = unknown>(gw: TestGateway, method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const res = await fetch(`${gw.url}/admin/v1${path}`, {
    method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as T };
}

/** Tool-plane audit events (committed), oldest first, optionally of one type and agent. */
export async function toolEvents(gw: TestGateway, q: { type?: string; agent?: string } = {}): Promise<AuditEvent[]> {
  const log = gw.g.rt.auditLog;
  if (!log) throw new Error('gateway has no audit log');
  await log.flush();
  return queryEvents(log.db, { ...q, order: 'asc', limit: 10_000 });
}

export type McpStatus = Record<string, { state: string; restarts: number; lastError?: string; pid?: number | null }>;

/** Upstream MCP servers as the admin API reports them. */
export async function mcpStatus(gw: TestGateway): Promise<McpStatus> {
  return (await admin<McpStatus>(gw, 'GET', '/mcp/status')).json;
}

/** Wait until every MCP server is ready, so no test depends on how fast a cold process starts. */
export async function serversReady(gw: TestGateway, ms = 90_000): Promise<void> {
  await until(async () => Object.values(await mcpStatus(gw)).every((s) => s.state === 'ready'), ms, 'all MCP servers ready');
}

/**
 * Validates a value against a definition of the MCP 2026-07-28 JSON Schema, e.g. check('CallToolRequest', body),
 * or, with a `tasks:` prefix, of the Tasks extension's (check('tasks:GetTaskResult', result)).
 */
export type SchemaCheck = (def: string, value: unknown) => void;

/**
 * A check against the spec's schema/2026-07-28/schema.json (the vendored copy in
 * test/fixtures/mcp-schema, or MCP_2026_SCHEMA=<path> to check against another) and the Tasks
 * extension's shapes transcribed from SEP-2663 beside it (tasks-extension.json, which refers to the former).
 */
export async function mcpSchemaCheck(): Promise<SchemaCheck> {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'mcp-schema');
  const path = process.env.MCP_2026_SCHEMA || join(dir, '2026-07-28.json');
  const { Ajv2020 } = await import('ajv/dist/2020.js') as unknown as { Ajv2020: new (o: object) => { addSchema(s: object, id: string): void; validate(ref: string, v: unknown): boolean; errorsText(): string } };
  const ajv = new Ajv2020({ strict: false, allErrors: true, logger: false });
  ajv.addSchema(JSON.parse(readFileSync(path, 'utf8')) as object, 'mcp');
  ajv.addSchema(JSON.parse(readFileSync(join(dir, 'tasks-extension.json'), 'utf8')) as object, 'mcp-tasks');
  return (def, value) => {
    const ref = def.startsWith('tasks:') ? `mcp-tasks#/$defs/${def.slice(6)}` : `mcp#/$defs/${def}`;
    assert.ok(ajv.validate(ref, value), `${def}: ${ajv.errorsText()}`);
  };
}

/** JSON-RPC messages of an SSE body, pushed to the returned array as they arrive (until the body ends or is aborted). */
export function sseMessages(body: ReadableStream<Uint8Array> | null): Array<Record<string, any>> {
  const messages: Array<Record<string, any>> = [];
  void (async () => {
    let buf = '';
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buf += Buffer.from(chunk).toString('utf8');
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const data = buf.slice(0, end).split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('');
          buf = buf.slice(end + 2);
          if (data) messages.push(JSON.parse(data) as Record<string, any>);
        }
      }
    } catch { /* aborted */ }
  })();
  return messages;
}
