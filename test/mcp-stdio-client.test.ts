// aam's own stdio MCP client (src/tools/mcp-stdio-client.ts) through a real Upstream, against a
// real SDK stdio server that misbehaves on request (test/fixtures/mcp-stdio-edge.ts): what the
// SDK's Client + StdioClientTransport did before, now pinned: bad JSON lines are skipped, a line
// over 10 MiB closes the connection (restart), a process that exits mid-call fails the call and
// is restarted, stderr is logged line by line (cut at 2000 characters), the server's ping is
// answered and other server requests get "Method not found", progress and cancellation reach the
// server, output schemas are checked, and tool definitions keep their known fields only.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createUpstream, type Upstream } from '../src/tools/upstream.ts';
import { GATEWAY_IDENTITY, ToolError, type ToolDeps } from '../src/tools/types.ts';
import { until } from './helpers/e2e.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'mcp-stdio-edge.ts');
const warnings: Array<Record<string, unknown>> = [];
const noop = () => {};
const deps = { log: { info: noop, warn: (o: Record<string, unknown>, msg: string) => warnings.push({ ...o, msg }), error: noop }, audit: { record: noop, recordDurable: async () => {} } } as unknown as ToolDeps;
const ups: Upstream[] = [];
after(async () => { await Promise.all(ups.map((u) => u.close())); });

function edge(timeoutMs = 20_000, ...flags: string[]): Upstream {
  const up = createUpstream('edge', { transport: 'stdio', command: process.execPath, args: [FIXTURE, ...flags], timeout_ms: timeoutMs }, deps, { restartMinMs: 50, restartMaxMs: 200 });
  ups.push(up);
  return up;
}
const textOf = (r: { content: unknown[] }) => (r.content[0] as { text: string }).text;
const call = (up: Upstream, tool: string, args: Record<string, unknown> = {}, o?: Parameters<Upstream['callTool']>[3]) => up.callTool(tool, args, GATEWAY_IDENTITY, o);
async function failure(p: Promise<unknown>): Promise<ToolError> {
  try { await p; } catch (e) { assert.ok(e instanceof ToolError, `a ToolError, not ${String(e)}`); return e; }
  assert.fail('expected the call to fail');
}

test('tool definitions keep the fields MCP defines (tool digests cover them); the server pings aam and is answered, other requests get Method not found', async () => {
  const up = edge();
  const tools = await up.tools();
  const typed = tools.find((t) => t.name === 'typed') as unknown as Record<string, unknown>;
  assert.deepEqual(typed, {
    name: 'typed', description: 'Structured content.', inputSchema: { type: 'object', properties: { good: { type: 'boolean' } } },
    outputSchema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] }, annotations: { readOnlyHint: true },
  });
  assert.equal(textOf(await call(up, 'ping')), 'pong {}; MCP error -32601: Method not found');
  assert.equal(up.status().state, 'ready');
});

test('lines that are not JSON-RPC messages are skipped; the connection and the call go on', async () => {
  const up = edge();
  await up.tools();
  assert.equal(textOf(await call(up, 'junk')), 'after junk');
  assert.deepEqual({ state: up.status().state, restarts: up.status().restarts }, { state: 'ready', restarts: 0 });
});

test('a 9 MB answer arrives whole; a line over 10 MiB closes the connection, the call fails and the server is restarted', async () => {
  const up = edge();
  await up.tools();
  const pid = up.status().pid;
  assert.equal(textOf(await call(up, 'big', { bytes: 9_000_000 })).length, 9_000_000);
  const e = await failure(call(up, 'big', { bytes: 11 * 1024 * 1024 }));
  assert.equal(e.errorCode, 'upstream_unavailable');
  assert.match(e.message, /closed the connection during tools\/call "big"/);
  await until(() => up.status().state === 'ready' && up.status().restarts === 1, 30_000, 'the condition');
  assert.notEqual(up.status().pid, pid);
  assert.equal(textOf(await call(up, 'junk')), 'after junk');
});

test('a server that exits mid-call: the call fails at once (502), the process is restarted and answers again', async () => {
  const up = edge();
  await up.tools();
  const pid = up.status().pid;
  assert.ok(pid);
  const e = await failure(call(up, 'exit'));
  assert.equal(e.errorCode, 'upstream_unavailable');
  assert.equal(e.status, 502);
  assert.match(e.message, /MCP server "edge" closed the connection during tools\/call "exit" \(process exited\?\); aam restarts it/);
  await until(() => up.status().state === 'ready' && up.status().restarts === 1, 30_000, 'the condition');
  assert.notEqual(up.status().pid, pid);
  assert.equal(textOf(await call(up, 'junk')), 'after junk');
});

test('stderr is logged line by line, each cut at 2000 characters', async () => {
  const up = edge();
  await up.tools();
  warnings.length = 0;
  await call(up, 'stderr');
  await until(() => warnings.filter((w) => w.msg === 'mcp server stderr').length >= 2, 10_000, 'the condition');
  const lines = warnings.filter((w) => w.msg === 'mcp server stderr');
  assert.deepEqual(lines[0], { mcp_server: 'edge', stderr: 'edge says hello', msg: 'mcp server stderr' });
  assert.equal(lines[1].stderr, 'e'.repeat(2000));
});

test('progress reaches the caller; a timeout (504) and a cancellation (499) are sent on to the server as notifications/cancelled', async () => {
  const up = edge(600, 'slow-start');
  // A start slower than the call timeout (the fixture waits 1.5 s): the caller is told how long it has been starting.
  const early = await failure(up.tools());
  assert.equal(early.errorCode, 'upstream_unavailable');
  const secs = Number(/still starting \((\d+) s so far/.exec(early.message)?.[1]);
  assert.ok(secs >= 0 && secs < 60, early.message);
  await until(() => up.status().state === 'ready', 30_000, 'the condition');
  const seen: unknown[] = [];
  assert.equal(textOf(await call(up, 'progress', {}, { onprogress: (p) => seen.push(p) })), 'progressed');
  assert.deepEqual(seen, [{ progress: 1, total: 2 }, { progress: 2, total: 2 }]);
  warnings.length = 0;
  const slow = await failure(call(up, 'hang'));
  assert.equal(slow.errorCode, 'upstream_timeout');
  assert.equal(slow.status, 504);
  await until(() => warnings.some((w) => String(w.stderr).startsWith('hang cancelled')), 10_000, 'the condition');
  const ac = new AbortController();
  const p = call(up, 'hang', {}, { signal: ac.signal });
  setTimeout(() => ac.abort(), 100);
  const cancelled = await failure(p);
  assert.equal(cancelled.errorCode, 'cancelled');
  assert.equal(cancelled.status, 499);
  await until(() => warnings.filter((w) => String(w.stderr).startsWith('hang cancelled')).length >= 2, 10_000, 'the condition');
  assert.equal(up.status().state, 'ready');
});

test('structured content is checked against the tool\'s output schema', async () => {
  const up = edge();
  await up.tools();
  assert.deepEqual((await call(up, 'typed', { good: true })).structuredContent, { n: 1 });
  const e = await failure(call(up, 'typed', { good: false }));
  assert.equal(e.errorCode, 'upstream_error');
  assert.match(e.message, /Structured content does not match the tool's output schema: data\/n must be number/);
});

test('close() stops the process', async () => {
  const up = edge();
  await up.tools();
  const pid = up.status().pid as number;
  await up.close();
  await until(() => { try { process.kill(pid, 0); return false; } catch { return true; } }, 10_000, 'the condition');
  assert.equal(up.status().state, 'closed');
});

test('a command that does not exist: unavailable with the spawn error, retried with backoff', async () => {
  const up = createUpstream('nope', { transport: 'stdio', command: '/nonexistent/mcp-server' }, deps, { restartMinMs: 50, restartMaxMs: 100 });
  ups.push(up);
  const e = await failure(up.tools());
  assert.equal(e.errorCode, 'upstream_unavailable');
  assert.match(e.message, /spawn \/nonexistent\/mcp-server ENOENT/);
  await until(() => up.status().restarts >= 2, 10_000, 'the condition');
});

test('the session-generation versions and logging levels aam keeps match the SDK it was checked against', async () => {
  const sdk = await import('@modelcontextprotocol/sdk/types.js');
  const { SESSION_VERSION, SESSION_VERSIONS, LOG_LEVEL_NAMES } = await import('../src/tools/mcp-headers.ts');
  assert.equal(SESSION_VERSION, sdk.LATEST_PROTOCOL_VERSION);
  assert.deepEqual(SESSION_VERSIONS, sdk.SUPPORTED_PROTOCOL_VERSIONS);
  assert.deepEqual(LOG_LEVEL_NAMES, sdk.LoggingLevelSchema.options);
});
