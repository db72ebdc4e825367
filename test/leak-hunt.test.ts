// The leak hunt: for every plane, every channel an upstream can answer through, and every form a
// credential can be echoed in, a leaky upstream echoes the credential aam injected, and the
// agent's bytes (bodies, stream chunks, headers, errors, notifications, as the SDKs decode them
// too), the gateway's log lines, every file under the data dir and /metrics must not contain it.
//
// The table is generated: rows = planes x their channels x forms. A new plane joins by adding an
// entry to PLANES (its channels, the forms that make sense there, and how an agent calls it).
// One gateway with every plane configured serves all rows.
import { test, before, after } from 'node:test';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { BINARY, SPLIT_DELTA, SPLIT_PARTS, SPLIT_TCP, TEXT_FORMS, agentViews, findLeaks, providerSecret, valueViews, type Leak, type Secret } from './helpers/leak-forms.ts';
import { startLeakUpstream, instruction, type Instruction, type LeakUpstream } from './helpers/leak-upstream.ts';
import { Capture, captureStderr, grepDir } from './helpers/leak-capture.ts';

// Secrets shaped like providers' (random per run; a failure prints the one it found).
// The Anthropic provider gets an opaque token with '+' and '/', so JSON escapes matter on a model plane too.
const SECRETS = {
  'llm-key': providerSecret('sk-proj-', 40),
  'ant-key': providerSecret('ak_', 44, true),
  'mcp-key': providerSecret('mcp_', 44, true),
  'tool-key': providerSecret('tok_', 44, true),
  'stdio-key': providerSecret('st_', 44, true),
  'agent-key': providerSecret('a2a_', 44, true),
  'query-key': providerSecret('qk_', 44, true),
  // Bedrock signs with SigV4: of an STS credential only the session token travels (the secret key never does).
  'aws-session': providerSecret('IQoJb3JpZ2luX2Vj', 64, true),
  'aws-secret': providerSecret('', 40, true),
  // Vertex: the access token aam obtains for its service account (the leaky upstream's token endpoint hands out this one).
  'gcp-token': providerSecret('ya29.', 60, true),
};
const ALL: Secret[] = Object.entries(SECRETS).map(([name, value]) => ({ name, value }));
const STDIO_SERVER = fileURLToPath(new URL('./helpers/leak-stdio-server.ts', import.meta.url));

const TEXT = Object.keys(TEXT_FORMS);
/** An A2A artifact streamed in chunks the caller appends, the secret cut across them (two chunks, the b64 form, three). */
const SPLIT_CHUNKS = [...SPLIT_DELTA, 'split-chunks3'];
/** A named marker, or (a base64 spelling, overwritten in place so the value stays base64) the filler. */
const MARKER = /\[REDACTED:[a-z-]+(,[a-z-]+)*\]|(REDACTED){2}/;

let up: LeakUpstream;
let gw: TestGateway;
let logs: ReturnType<typeof captureStderr>;
const cap = new Capture();
let openai: OpenAI;
let anthropic: Anthropic;
let mcp: Client;

// ---- how an agent calls each plane (every byte through cap.fetch) ----

/** Run an SDK call; what it returned or threw (a thrown error is what the agent sees). */
async function outcome(p: () => Promise<unknown>): Promise<unknown[]> {
  try { return [await p()]; } catch (e) { return [e]; }
}

/** Every event of an SDK stream, and the error that ended it, if any. */
async function drain(open: () => Promise<AsyncIterable<unknown>>): Promise<unknown[]> {
  const got: unknown[] = [];
  try { for await (const ev of await open()) got.push(ev); } catch (e) { got.push(e); }
  return got;
}

const user = (i: Instruction) => [{ role: 'user' as const, content: instruction(i) }];

const chat = (model: string) => (i: Instruction) => outcome(() => openai.chat.completions.create({ model, messages: user(i) }));
const chatStream = (model: string) => (i: Instruction) => drain(() => openai.chat.completions.create({ model, stream: true, stream_options: { include_usage: true }, messages: user(i) }));
const messages = (model: string) => (i: Instruction) => outcome(() => anthropic.messages.create({ model, max_tokens: 64, messages: user(i) }));
const messagesStream = (model: string) => (i: Instruction) => drain(() => anthropic.messages.create({ model, max_tokens: 64, stream: true, messages: user(i) }));
const responses = (model: string) => (i: Instruction) => outcome(() => openai.responses.create({ model, input: instruction(i) }));
const responsesStream = (model: string) => (i: Instruction) => drain(() => openai.responses.create({ model, stream: true, input: instruction(i) }));
/** OpenAI's Responses API asked for its reasoning items (as the Agents SDK and Codex do: stateless, include). */
const REASONING = { store: false, include: ['reasoning.encrypted_content' as const] };
const reasoning = (model: string) => (i: Instruction) => outcome(() => openai.responses.create({ model, input: instruction(i), ...REASONING }));
const reasoningStream = (model: string) => (i: Instruction) => drain(() => openai.responses.create({ model, stream: true, input: instruction(i), ...REASONING }));
/** An Anthropic client asking for extended thinking (a Gemini target then asks for its thought summaries). */
const THINK = { max_tokens: 2048, thinking: { type: 'enabled' as const, budget_tokens: 1024 } };
const thoughts = (model: string) => (i: Instruction) => outcome(() => anthropic.messages.create({ model, ...THINK, messages: user(i) }));
const thoughtsStream = (model: string) => (i: Instruction) => drain(() => anthropic.messages.create({ model, ...THINK, stream: true, messages: user(i) }));
const embeddings = (i: Instruction) => outcome(() => openai.embeddings.create({ model: 'leak-embed', input: instruction(i), encoding_format: 'float' }));

async function httpTool(i: Instruction): Promise<unknown[]> {
  const r = await cap.fetch(`${gw.url}/tools/leaky-api/echo`, { method: 'POST', headers: { authorization: `Bearer ${key()}`, 'content-type': 'application/json' }, body: JSON.stringify(i) });
  return [await r.text()];
}

/**
 * The artifacts of an A2A stream as its caller assembles them: each chunk's parts appended to the
 * artifact with its id (`append`), else replacing it; each artifact's text parts joined.
 */
function joinedArtifacts(sse: string): string[] {
  const parts = new Map<string, string[]>();
  for (const line of sse.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    let ev: { result?: { artifactUpdate?: unknown }; artifactUpdate?: unknown };
    try { ev = JSON.parse(line.slice('data: '.length)); } catch { continue; }
    const au = (ev.result?.artifactUpdate ?? ev.artifactUpdate) as { append?: boolean; artifact?: { artifactId?: string; parts?: Array<{ text?: unknown }> } } | undefined;
    if (!au?.artifact) continue;
    const id = String(au.artifact.artifactId);
    const texts = (au.artifact.parts ?? []).map((p) => (typeof p.text === 'string' ? p.text : ''));
    parts.set(id, au.append ? [...parts.get(id) ?? [], ...texts] : texts);
  }
  return [...parts.values()].map((t) => t.join(''));
}

/** An A2A SendMessage / SendStreamingMessage through /a2a/<agent>: the body, or every SSE event (and the artifacts they join to). */
const a2aCall = (agent: string) => async (i: Instruction): Promise<unknown[]> => {
  const stream = i.channel === 'stream';
  const r = await cap.fetch(`${gw.url}/a2a/${agent}`, {
    method: 'POST', headers: { authorization: `Bearer ${key()}`, 'content-type': 'application/json', 'a2a-version': '1.0', ...(stream ? { accept: 'text/event-stream' } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: stream ? 'SendStreamingMessage' : 'SendMessage', params: { message: { messageId: 'h1', role: 'ROLE_USER', parts: [{ text: instruction(i) }], metadata: { skill: 'echo' } } } }),
  });
  const text = await r.text();
  return stream ? [text, ...joinedArtifacts(text)] : [text];
};

/** An A2A callee's agent card through aam (fetched with aam's credential for the callee, rewritten). */
/** GET /v1/models: an openai-compatible `models: "*"` catalog lists what its upstream's GET /models answers. */
async function listModels(): Promise<unknown[]> {
  const r = await cap.fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key()}` } });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  assert.match(text, /"oai-any\/leaky-/, 'the upstream\'s ids are listed');
  return [text];
}

async function a2aCard(agent: string): Promise<unknown[]> {
  const r = await cap.fetch(`${gw.url}/a2a/${agent}/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${key()}` } });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return [text];
}

/** The same A2A call through the HTTP+JSON (REST) binding: POST /a2a/<agent>/message:send or :stream. */
async function a2aRestCall(i: Instruction): Promise<unknown[]> {
  const stream = i.channel === 'stream';
  const r = await cap.fetch(`${gw.url}/a2a/leaky-agent/message:${stream ? 'stream' : 'send'}`, {
    method: 'POST', headers: { authorization: `Bearer ${key()}`, 'content-type': 'application/json', 'a2a-version': '1.0', ...(stream ? { accept: 'text/event-stream' } : {}) },
    body: JSON.stringify({ message: { messageId: 'h1', role: 'ROLE_USER', parts: [{ text: instruction(i) }], metadata: { skill: 'echo' } } }),
  });
  const text = await r.text();
  return stream ? [text, ...joinedArtifacts(text)] : [text];
}

/** The caller's push webhook: what each row's notification delivered (headers and bytes), by row tag. */
let hook: Server;
let hookUrl = '';
/** Where the audit file sink writes (outside the data dir, as an operator would put it). */
let exportDir = '';
const hooked = new Map<string, Array<{ headers: string; body: Buffer }>>();

/**
 * An A2A SendMessage registering the caller's webhook: the agent notifies aam's push URL with the
 * echo; what aam posts on to the webhook is what this caller receives (with the answer).
 */
async function a2aPushCall(i: Instruction): Promise<unknown[]> {
  const r = await cap.fetch(`${gw.url}/a2a/leaky-agent`, {
    method: 'POST', headers: { authorization: `Bearer ${key()}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: {
      message: { messageId: 'h1', role: 'ROLE_USER', parts: [{ text: instruction(i) }], metadata: { skill: 'echo' } },
      configuration: { taskPushNotificationConfig: { url: `${hookUrl}/${i.tag}`, token: 'hunter-hook-token' } },
    } }),
  });
  const answer = await r.text();
  const got = hooked.get(i.tag) ?? [];
  assert.ok(got.length >= 1, `the webhook got no notification for ${i.tag}; the caller saw: ${answer.slice(0, 600)}`);
  // The artifact as the caller joins its notifications (append adds a chunk's parts), too.
  const joined = joinedArtifacts(got.map((h) => `data: ${h.body.toString('utf8')}`).join('\n'));
  return [answer, ...got.flatMap((h) => [h.headers, ...agentViews(h.body)]), ...joined];
}

/** tools/call, asking for progress (so the upstream's progress notifications are forwarded). */
async function toolCall(i: Instruction): Promise<unknown[]> {
  const progress: unknown[] = [];
  const r = await outcome(() => mcp.callTool({ name: 'leaky__leak', arguments: { ...i } }, undefined, { onprogress: (p) => { progress.push(p); } }));
  return [...r, ...progress];
}
const readResource = (i: Instruction) => outcome(() => mcp.readResource({ uri: `leak://${i.channel}/${encodeURIComponent(i.form)}/${i.tag}` }));
const getPrompt = (i: Instruction) => outcome(() => mcp.getPrompt({ name: 'leaky__leak', arguments: { channel: i.channel, form: i.form, tag: i.tag } }));
/** completion/complete of the leak prompt's argument, in a session or (channel 2026-07-28) statelessly; the upstream echoes the credential in a value. */
const complete = (i: Instruction) => {
  const params = { ref: { type: 'ref/prompt' as const, name: 'leaky__leak' }, argument: { name: 'tag', value: 'l' }, context: { arguments: { channel: 'body', form: i.form, tag: i.tag } } };
  return i.channel === '2026-07-28' ? modern('completion/complete', params) : outcome(() => mcp.complete(params));
};

/**
 * The same MCP calls in the stateless 2026-07-28 generation (no session; _meta and Mcp-* headers):
 * aam translates them for the 2025-11-25 leaky server, and answers on its own stateless egress.
 */
async function modern(method: string, params: Record<string, unknown>, o: { path?: string; caps?: Record<string, unknown>; meta?: Record<string, unknown> } = {}): Promise<unknown[]> {
  const version = '2026-07-28';
  const name = (params.name ?? params.uri ?? params.taskId) as string;
  const r = await cap.fetch(`${gw.url}${o.path ?? '/mcp'}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': version, 'mcp-method': method, 'mcp-name': name },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': version, 'io.modelcontextprotocol/clientInfo': { name: 'leak-hunter', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': o.caps ?? {}, ...o.meta } } }),
  });
  return [await r.text()];
}
/**
 * What only the 2026-07-28 generation has, against a 2026-07-28 leaky server (/mcp/leaky-modern):
 * an input_required answer and the retry's result; a task as created and its tasks/get, update and
 * cancel results; notifications/tasks on a subscriptions/listen stream; SSE progress.
 */
async function modernPaths(i: Instruction): Promise<unknown[]> {
  const TASKS = { elicitation: { form: {} }, extensions: { 'io.modelcontextprotocol/tasks': {} } };
  const call = (extra: Record<string, unknown> = {}, o: { caps?: Record<string, unknown>; meta?: Record<string, unknown> } = {}) =>
    modern('tools/call', { name: 'leak', arguments: { ...i }, ...extra }, { path: '/mcp/leaky-modern', ...o });
  if (i.channel === 'progress') return call({}, { meta: { progressToken: `p-${i.tag}` } });
  if (i.channel === 'input_required') {
    const [ask] = await call({}, { caps: TASKS });
    const state = (JSON.parse(String(ask)) as { result?: { requestState?: string } }).result?.requestState;
    return [ask, ...await call({ inputResponses: { q: { action: 'accept', content: {} } }, requestState: state }, { caps: TASKS })];
  }
  const [created] = await call({}, { caps: TASKS });
  const taskId = (JSON.parse(String(created)) as { result?: { taskId?: string } }).result?.taskId;
  if (i.channel === 'listen') return [created, await listenOnce(taskId)];
  // The created task does not echo here: what the agent sees of the echo came through tasks/get.
  if (i.channel === 'tasks/get') return [created, ...await modern('tasks/get', { taskId }, { path: '/mcp/leaky-modern', caps: TASKS })];
  const out: unknown[] = [created];
  for (const method of ['tasks/get', 'tasks/update', 'tasks/cancel']) out.push(...await modern(method, { taskId, ...(method === 'tasks/update' ? { inputResponses: {} } : {}) }, { path: '/mcp/leaky-modern', caps: TASKS }));
  return out;
}

/**
 * A 2025-11-25 session (raw JSON-RPC, every byte through cap.fetch) on /mcp/leaky-modern with its GET
 * stream open, so aam listens to the 2026-07-28 server for it: the server is made to send list_changed
 * on its listen streams with the echo in every field (params, _meta, fields beside method), until
 * the session has heard prompts and resources change (tools: aam lists them again; unchanged, nothing
 * to say). What the session hears must be aam's own notifications, with nothing of the upstream's.
 */
async function sessionListChanged(i: Instruction): Promise<unknown[]> {
  const url = `${gw.url}/mcp/leaky-modern`;
  const headers: Record<string, string> = { authorization: `Bearer ${key()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const init = await cap.fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'leak-hunter', version: '1.0.0' } } }) });
  const initialized = await init.text();
  const session = { ...headers, 'mcp-session-id': String(init.headers.get('mcp-session-id')), 'mcp-protocol-version': '2025-11-25' };
  await (await cap.fetch(url, { method: 'POST', headers: session, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
  const ac = new AbortController();
  const stream = await cap.fetch(url, { method: 'GET', headers: { ...session, accept: 'text/event-stream' }, signal: ac.signal });
  assert.equal(stream.status, 200, 'the session\'s GET stream');
  let heard = '';
  const reading = (async () => {
    try { for await (const chunk of stream.body as unknown as AsyncIterable<Uint8Array>) heard += Buffer.from(chunk).toString('utf8'); } catch { /* aborted */ }
  })();
  const events = () => heard.split('\n\n').map((e) => e.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('')).filter(Boolean).map((d) => JSON.parse(d) as Record<string, unknown>);
  const both = () => ['prompts', 'resources'].every((l) => events().some((e) => e.method === `notifications/${l}/list_changed`));
  const calls: unknown[] = [];
  try {
    // aam's listen stream to the server may still be opening: announce again until the session heard it.
    for (let n = 0; n < 40 && !both(); n++) {
      calls.push(...await modern('tools/call', { name: 'leak', arguments: { ...i } }, { path: '/mcp/leaky-modern' }));
      for (let w = 0; w < 10 && !both(); w++) await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    ac.abort();
    await reading;
    await (await cap.fetch(url, { method: 'DELETE', headers: session })).text();
  }
  assert.ok(both(), `the session heard no list_changed of prompts and resources: ${heard.slice(0, 600)}`);
  for (const e of events()) {
    assert.match(String(e.method), /^notifications\/(tools|prompts|resources)\/list_changed$/, JSON.stringify(e));
    assert.deepEqual(e, { jsonrpc: '2.0', method: e.method }, 'aam\'s own notification: no params, no field of the upstream\'s');
  }
  return [initialized, heard, ...calls];
}

/** A subscriptions/listen stream for one task: everything it carried up to its first notifications/tasks. */
async function listenOnce(taskId: unknown): Promise<string> {
  const version = '2026-07-28';
  const ac = new AbortController();
  const r = await cap.fetch(`${gw.url}/mcp/leaky-modern`, {
    method: 'POST', signal: ac.signal,
    headers: { authorization: `Bearer ${key()}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': version, 'mcp-method': 'subscriptions/listen' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'subscriptions/listen', params: { notifications: { taskIds: [taskId] }, _meta: { 'io.modelcontextprotocol/protocolVersion': version, 'io.modelcontextprotocol/clientInfo': { name: 'leak-hunter', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': { extensions: { 'io.modelcontextprotocol/tasks': {} } } } } }),
  });
  let text = '';
  const timer = setTimeout(() => ac.abort(), 10_000);
  try {
    for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
      text += Buffer.from(chunk).toString('utf8');
      // Abort before leaving the loop: the body is one branch of the capture's tee, and cancelling
      // one branch waits for the other, which reads until the stream ends (never, on a listen
      // stream), so a plain break held every row here for the whole 10 s. The capture's branch has
      // this chunk already (a tee hands each chunk to both branches at once).
      if (text.includes('notifications/tasks')) { ac.abort(); break; }
    }
  } catch { /* aborted */ } finally { clearTimeout(timer); ac.abort(); }
  return text;
}

const modernCall = (i: Instruction) => {
  // A request asking for log messages (_meta log level): the upstream's come on its event stream.
  if (i.channel === 'log') return modern('tools/call', { name: 'leaky__leak', arguments: { ...i } }, { meta: { 'io.modelcontextprotocol/logLevel': 'debug' } });
  if (i.channel === 'resources/read') return modern('resources/read', { uri: `leak://body/${encodeURIComponent(i.form)}/${i.tag}` });
  if (i.channel === 'prompts/get') return modern('prompts/get', { name: 'leaky__leak', arguments: { channel: 'body', form: i.form, tag: i.tag } });
  const upstream = i.channel.startsWith('rpc-error') ? 'rpc-error' : i.channel;
  return modern('tools/call', { name: 'leaky__leak', arguments: { ...i, channel: upstream } });
};

let agentKey = '';
const key = () => agentKey;

// ---- the table ----

interface Plane {
  name: string;
  /** Channel -> forms tried there. */
  channels: Record<string, readonly string[]>;
  /** One agent call for (channel, form, tag); returns what the SDK handed back (results, events, errors). */
  call(i: Instruction): Promise<unknown[]>;
  /** Where aam passes the echo on (so the agent must see a [REDACTED:...] marker, proving the row was not vacuous). */
  shows(channel: string, form: string): boolean;
  /** The channel (and caller) the truncation sweep uses, if this plane quotes upstream error text. */
  sweep?: string;
  /** Rows that do not make a request to the leaky upstream (listings, stdio). */
  noUpstreamCount?: boolean;
  /** The echo went to the log before the row began (a process's stderr): check the whole log, and the marker there. */
  wholeLog?: boolean;
  /** The marker the redacted echo shows (default: any credential's). */
  marker?: RegExp;
}

/** Model planes drop upstream headers, and refuse a 2xx body that is not their wire format (binary, gzip): nothing to show then. */
const modelShows = (channel: string, form: string) => channel !== 'header' && !(channel !== 'error' && (BINARY as readonly string[]).includes(form));
const ERRORS = { 'error-401': ['raw'], 'error-500': ['raw'] } as const;

const PLANES: Plane[] = [
  // Tool, resource and prompt listings whose descriptions echo the secret in every text form. First:
  // aam fetches the listings when it connects, so what they leave in the data dir is theirs.
  { name: 'mcp listings', shows: () => true, noUpstreamCount: true,
    channels: { 'tools/list': ['all-text-forms'], 'resources/list': ['all-text-forms'], 'prompts/list': ['all-text-forms'] },
    call: (i) => outcome(async () => {
      if (i.channel === 'tools/list') return (await mcp.listTools()).tools.filter((t) => t.name.startsWith('leaky-lists__'));
      if (i.channel === 'resources/list') return (await mcp.listResources()).resources.filter((r) => r.uri.startsWith('listing://'));
      return (await mcp.listPrompts()).prompts.filter((p) => p.name.startsWith('leaky-lists__'));
    }) },
  { name: 'chat completions', call: chat('leak-chat'), shows: modelShows, sweep: 'error',
    channels: { body: [...TEXT, ...SPLIT_TCP, ...BINARY], header: TEXT, error: [...TEXT, ...SPLIT_TCP, 'binary'], ...ERRORS } },
  { name: 'chat completions stream', call: chatStream('leak-stream'), shows: modelShows, sweep: 'error',
    channels: { stream: [...TEXT, ...SPLIT_DELTA, ...SPLIT_TCP, ...BINARY], 'tool-args': [...TEXT, ...SPLIT_DELTA], 'stream-error': [...TEXT, ...SPLIT_TCP], header: TEXT, error: TEXT, ...ERRORS } },
  { name: 'anthropic messages', call: messages('leak-claude'), shows: modelShows, sweep: 'error',
    channels: { body: [...TEXT, ...SPLIT_PARTS, ...SPLIT_TCP, ...BINARY], thinking: [...TEXT, ...SPLIT_PARTS, ...SPLIT_TCP], header: TEXT, error: [...TEXT, ...SPLIT_TCP, 'binary'], ...ERRORS } },
  { name: 'anthropic messages stream', call: messagesStream('leak-claude-stream'), shows: modelShows, sweep: 'error',
    channels: { stream: [...TEXT, ...SPLIT_DELTA, ...SPLIT_PARTS, ...SPLIT_TCP, ...BINARY], 'tool-args': [...TEXT, ...SPLIT_DELTA], thinking: [...TEXT, ...SPLIT_DELTA, ...SPLIT_PARTS, ...SPLIT_TCP], 'stream-error': [...TEXT, ...SPLIT_TCP], header: TEXT, error: TEXT, ...ERRORS } },
  // The Responses API, translated to a chat-completions upstream (and stored by aam: the data-dir row checks it at rest).
  { name: 'responses', call: responses('leak-responses'), shows: modelShows, sweep: 'error',
    channels: { body: [...TEXT, ...SPLIT_TCP, ...BINARY], header: TEXT, error: [...TEXT, ...SPLIT_TCP, 'binary'], ...ERRORS } },
  { name: 'responses stream', call: responsesStream('leak-responses-stream'), shows: modelShows, sweep: 'error',
    channels: { stream: [...TEXT, ...SPLIT_DELTA, ...SPLIT_TCP, ...BINARY], 'tool-args': [...TEXT, ...SPLIT_DELTA], 'stream-error': [...TEXT, ...SPLIT_TCP], header: TEXT, error: TEXT, ...ERRORS } },
  // Amazon Bedrock (Converse; ConverseStream event-stream frames) and Google Vertex (Gemini wire, a service-account token).
  { name: 'bedrock converse', call: chat('leak-bedrock'), shows: modelShows, sweep: 'error',
    channels: { body: [...TEXT, ...SPLIT_PARTS, ...SPLIT_TCP], header: ['raw', 'b64-std-1'], error: [...TEXT, 'split-tcp@mid'] } },
  { name: 'bedrock converse stream', call: chatStream('leak-bedrock-stream'), shows: modelShows,
    channels: { stream: [...TEXT, ...SPLIT_DELTA, ...SPLIT_PARTS, ...SPLIT_TCP], 'stream-error': [...TEXT, 'split-tcp@mid'], header: ['raw', 'b64-std-1'], error: ['raw'] } },
  { name: 'vertex gemini', call: chat('leak-vertex'), shows: modelShows, sweep: 'error',
    channels: { body: [...TEXT, ...SPLIT_PARTS, ...SPLIT_TCP], header: ['raw', 'b64-std-1'], error: [...TEXT, 'split-tcp@mid'] } },
  { name: 'vertex gemini stream', call: chatStream('leak-vertex-stream'), shows: modelShows,
    channels: { stream: [...TEXT, ...SPLIT_DELTA, ...SPLIT_PARTS, ...SPLIT_TCP], 'stream-error': [...TEXT, 'split-tcp@mid'], header: ['raw', 'b64-std-1'], error: ['raw'] } },
  { name: 'embeddings', call: embeddings, shows: modelShows, sweep: 'error',
    channels: { body: [...TEXT, ...SPLIT_TCP, ...BINARY], header: ['raw', 'b64-std-1'], error: TEXT } },
  // A route that fails over: the first target's 500 (echoing the secret) is retried on the second,
  // and the call's evidence names the failed attempt with its error (model.attempts: scrubbed).
  { name: 'chat completions failed over', call: chat('leak-fallback'), shows: modelShows, channels: { 'error-500': TEXT } },
  // A cached route: the second identical call is served from the cache (stored in the data dir).
  { name: 'chat completions cached', shows: modelShows, channels: { body: [...TEXT, 'split-tcp@mid'] },
    call: async (i) => [...await chat('leak-cached')(i), ...await chat('leak-cached')(i)] },
  { name: 'mcp tools/call', call: toolCall, shows: () => true,
    channels: { body: [...TEXT, ...SPLIT_PARTS, ...SPLIT_TCP, ...BINARY], 'tool-error': TEXT } },
  { name: 'mcp resources/read', call: readResource, shows: () => true, channels: { body: [...TEXT, 'split-parts@mid', 'binary', 'split-tcp@mid', 'gzip'] } },
  { name: 'mcp prompts/get', call: getPrompt, shows: () => true, channels: { body: [...TEXT, 'split-parts@mid', 'split-tcp@mid'] } },
  // Upstream notifications of the request: progress to a caller who asked for it, log messages to a session that set a level (this one: debug).
  { name: 'mcp notifications', call: toolCall, shows: () => true, channels: { progress: [...TEXT, 'split-tcp@mid'], log: [...TEXT, 'split-tcp@mid'] } },
  // completion/complete values, from a session and from a 2026-07-28 request.
  { name: 'mcp completion/complete', call: complete, shows: () => true, channels: { session: TEXT, '2026-07-28': TEXT } },
  // An upstream's own JSON-RPC error (message and data), for each request kind.
  { name: 'mcp upstream errors', shows: () => true, sweep: 'tools/call',
    channels: { 'tools/call': [...TEXT, 'split-tcp@mid', 'gzip'], 'resources/read': TEXT, 'prompts/get': TEXT },
    call: (i) => {
      const e = { ...i, channel: 'rpc-error' };
      return i.channel === 'resources/read' ? readResource(e) : i.channel === 'prompts/get' ? getPrompt(e) : toolCall(e);
    } },
  // The stateless 2026-07-28 generation on the same /mcp: results, tool errors, upstream JSON-RPC errors, resources and prompts.
  { name: 'mcp 2026-07-28 stateless', call: modernCall, shows: () => true,
    channels: { body: [...TEXT, 'split-parts@mid', 'split-tcp@mid', ...BINARY], 'tool-error': TEXT, 'rpc-error': TEXT, 'resources/read': TEXT, 'prompts/get': TEXT, log: [...TEXT, 'split-tcp@mid'] } },
  // What only 2026-07-28 has, from a 2026-07-28 server: input_required (the request and the retry's
  // result), task results (created, tasks/get|update|cancel), notifications/tasks on a listen stream, SSE progress.
  { name: 'mcp 2026-07-28 interim, tasks, listen, progress', call: modernPaths, shows: () => true,
    channels: { input_required: [...TEXT, 'split-parts@mid', 'split-tcp@mid'], task: [...TEXT, 'split-parts@mid', 'split-tcp@mid'], 'tasks/get': [...TEXT, 'split-parts@mid', 'split-tcp@mid'], listen: TEXT, progress: [...TEXT, 'split-tcp@mid'] } },
  // A 2026-07-28 server's list_changed (the echo in params, _meta and beside method) reaching a 2025-11-25
  // session through aam's listen stream: the session gets aam's own notification, so nothing to show.
  { name: 'mcp 2026-07-28 list_changed to a 2025-11-25 session', call: sessionListChanged, shows: () => false, channels: { list_changed: TEXT } },
  { name: 'http tools', call: httpTool, shows: () => true, sweep: 'error',
    channels: { body: [...TEXT, ...SPLIT_TCP, ...BINARY], text: TEXT, header: TEXT, error: [...TEXT, 'split-tcp@mid', 'gzip'] } },
  // An A2A agent echoing aam's credential for it: in its answer, its stream events, its JSON-RPC errors, its headers (not passed on).
  { name: 'a2a', call: a2aCall('leaky-agent'), shows: (c) => c !== 'header',
    channels: { body: [...TEXT, 'split-parts@mid', ...SPLIT_TCP], stream: [...TEXT, ...SPLIT_TCP, ...SPLIT_CHUNKS], error: [...TEXT, 'split-tcp@mid'], header: TEXT } },
  // The agent's push notification, posted on by aam to the caller's webhook (the door's request side).
  { name: 'a2a push notifications', call: a2aPushCall, shows: () => true,
    channels: { push: [...TEXT, ...SPLIT_PARTS, 'split-tcp@mid', ...SPLIT_CHUNKS] } },
  { name: 'a2a http+json', call: a2aRestCall, shows: (c) => c !== 'header',
    channels: { body: [...TEXT, 'split-parts@mid', ...SPLIT_TCP], stream: [...TEXT, ...SPLIT_TCP, ...SPLIT_CHUNKS], error: [...TEXT, 'split-tcp@mid'], header: TEXT } },
  // The same agent behind a query-style credential (kind: query, inject.query: on the URL of every
  // call aam makes for the caller): in its answer, stream events, errors, headers, and its agent card.
  { name: 'a2a query credential', call: a2aCall('leaky-query-agent'), shows: (c) => c !== 'header',
    channels: { body: [...TEXT, 'split-parts@mid', ...SPLIT_TCP], stream: [...TEXT, ...SPLIT_TCP, ...SPLIT_CHUNKS], error: [...TEXT, 'split-tcp@mid'], header: TEXT } },
  { name: 'model listing of a "*" catalog', call: listModels, shows: () => true, noUpstreamCount: true, channels: { '/v1/models': ['all-text-forms'] } },
  { name: 'a2a query credential card', call: () => a2aCard('leaky-query-agent'), shows: () => true, noUpstreamCount: true, channels: { card: ['all-text-forms'] } },
  // A stdio MCP server that prints its credential to stderr: aam logs those lines.
  { name: 'mcp stdio server', shows: () => true, noUpstreamCount: true, wholeLog: true, marker: /\[REDACTED:stdio-key\]/, channels: { 'stderr (log)': ['all-text-forms'] },
    call: async () => {
      await until(() => logs.lines.some((l) => l.includes('stdio done')), 30_000, 'the stdio server\'s stderr in the log');
      return [];
    } },
];

/**
 * Reasoning items through /v1/responses (OpenAI's Responses API, a `type: openai` provider): the
 * credential echoed in a reasoning item's summary or raw reasoning (reasoning_text), whole and streamed
 * in deltas, in one part or cut across two (split-parts: two summary parts, two thinking blocks). Kept apart
 * from PLANES (their own rows, tags and routes).
 */
const REASONING_PLANES: Plane[] = [
  // reasoning-content: the item's raw reasoning (content reasoning_text parts, gpt-oss) instead of its summary.
  { name: 'responses reasoning', call: reasoning('leak-reasoning'), shows: modelShows, channels: { reasoning: [...TEXT, ...SPLIT_PARTS, ...SPLIT_TCP], 'reasoning-content': [...TEXT, ...SPLIT_PARTS, 'split-tcp@mid'] } },
  { name: 'responses reasoning stream', call: reasoningStream('leak-reasoning-stream'), shows: modelShows, channels: { reasoning: [...TEXT, ...SPLIT_DELTA, ...SPLIT_PARTS, ...SPLIT_TCP], 'reasoning-content': [...TEXT, ...SPLIT_DELTA, ...SPLIT_PARTS, 'split-tcp@mid'] } },
  // A cached Claude route: thinking blocks (the secret cut across two, split-parts) stored, then replayed (the data-dir row checks the entry at rest).
  { name: 'anthropic messages cached thinking', shows: modelShows, channels: { thinking: ['raw', ...SPLIT_PARTS] },
    call: async (i) => [...await messages('leak-claude-cached')(i), ...await messages('leak-claude-cached')(i)] },
  // Gemini thought summaries (Vertex, `thought: true` parts, asked for with includeThoughts) to an
  // Anthropic client asking for thinking and a Responses client asking for reasoning items: one
  // thought part, or the secret cut across two (split-parts; streamed, split-delta: one chunk each).
  { name: 'vertex gemini thoughts to anthropic messages', call: thoughts('leak-vertex-thoughts'), shows: modelShows, channels: { thinking: [...TEXT, ...SPLIT_PARTS, ...SPLIT_TCP] } },
  { name: 'vertex gemini thoughts to anthropic messages stream', call: thoughtsStream('leak-vertex-thoughts-stream'), shows: modelShows, channels: { thinking: [...TEXT, ...SPLIT_DELTA, ...SPLIT_PARTS, ...SPLIT_TCP] } },
  { name: 'vertex gemini thoughts to responses reasoning', call: reasoning('leak-vertex-reasoning'), shows: modelShows, channels: { thinking: [...TEXT, ...SPLIT_PARTS, 'split-tcp@mid'] } },
  { name: 'vertex gemini thoughts to responses reasoning stream', call: reasoningStream('leak-vertex-reasoning-stream'), shows: modelShows, channels: { thinking: [...TEXT, ...SPLIT_DELTA, ...SPLIT_PARTS, 'split-tcp@mid'] } },
];

function report(where: string, leaks: readonly Leak[]): string {
  return `${where}: ${leaks.map((l) => `${l.secret} as ${l.form} in ${l.context}`).join('\n  ')}\n(secrets this run: ${JSON.stringify(SECRETS)})`;
}

/** Everything the agent got since the last take (bytes, headers, decoded values) and the log lines written since `logFrom`. */
async function seen(values: unknown[], logFrom: number): Promise<{ agent: string[]; log: string }> {
  const agent = [...await cap.take(), ...valueViews(values)];
  return { agent, log: logs.since(logFrom).join('\n') };
}

/** One agent call: nothing of any secret reaches the agent or the log; the upstream did echo it, and aam passed the echo on redacted. */
async function hunt(plane: Plane, channel: string, form: string, tag: string): Promise<void> {
  const from = plane.wholeLog ? 0 : logs.lines.length;
  const values = await plane.call({ channel, form, tag });
  const { agent, log } = await seen(values, from);
  const leaks = agent.flatMap((v) => findLeaks(v, ALL));
  assert.equal(leaks.length, 0, report('reached the agent', leaks));
  const logLeaks = findLeaks(log, ALL);
  assert.equal(logLeaks.length, 0, report('reached the log', logLeaks));
  if (!plane.noUpstreamCount) assert.ok(up.served(tag) >= 1, `the leaky upstream got no credentialed request for ${tag}; the agent saw: ${agent.join('\n').slice(0, 800)}`);
  const shown = plane.wholeLog ? log : agent.join('\n');
  if (plane.shows(channel, form)) assert.match(shown, plane.marker ?? MARKER, `the echo should arrive redacted; got: ${shown.slice(0, 1500)}`);
}

/** Truncate-then-scrub: the secret after 0..600 characters of text; no offset may reveal even its first 8 characters. */
async function sweep(plane: Plane, channel: string): Promise<void> {
  const tagOf = (n: number) => `sweep-${plane.name.replace(/\W/g, '')}-${n}`;
  const found: string[] = [];
  for (let i = 0; i < OFFSETS.length; i += SWEEP_CONCURRENCY) {
    const batch = OFFSETS.slice(i, i + SWEEP_CONCURRENCY);
    const from = logs.lines.length;
    const values = (await Promise.all(batch.map((n) => plane.call({ channel, form: `offset-${n}`, tag: tagOf(n) })))).flat();
    const { agent, log } = await seen(values, from);
    const leaks = [...agent.flatMap((v) => findLeaks(v, ALL)), ...findLeaks(log, ALL)];
    if (leaks.length) found.push(report(`offsets ${batch[0]}..${batch.at(-1)}`, leaks));
  }
  assert.equal(found.length, 0, `${found.length} batches of offsets revealed a secret; the first ones:\n${found.slice(0, 3).join('\n')}`);
  assert.deepEqual(OFFSETS.filter((n) => up.served(tagOf(n)) < 1), [], 'every offset reached the upstream');
}
const OFFSETS = Array.from({ length: 601 }, (_, n) => n);
const SWEEP_CONCURRENCY = 8;

/** Occurrences already blamed on an earlier plane (the data dir only grows). */
const onDisk = new Set<string>();

/** Every file under the data dir: what this plane's rows left there (audit segments, databases, WAL, cache). */
async function dataDir(plane: string): Promise<void> {
  await gw.g.rt.auditLog?.flush();
  gw.g.rt.usage.flush();
  const fresh = grepDir(gw.dataDir, ALL).filter((l) => {
    const k = `${l.secret}|${l.form}|${l.context}`;
    if (onDisk.has(k)) return false;
    onDisk.add(k);
    return true;
  });
  const shown = fresh.slice(0, 20).map((l) => `${l.file}: ${l.secret} as ${l.form} in ${l.context}`);
  assert.equal(fresh.length, 0, `${plane} left secrets in the data dir (${fresh.length} places, first ${shown.length}):\n${shown.join('\n')}`);
}

/** A row of the table: what the upstream does (plane, channel, form) and the check it runs. */
interface Row { plane: string; channel: string; form: string; run(): Promise<void> }

const ROWS: Row[] = [...PLANES, ...REASONING_PLANES].flatMap((plane, p) => [
  ...Object.entries(plane.channels).flatMap(([channel, forms]) => forms.map((form, f): Row => ({
    plane: plane.name, channel, form, run: () => hunt(plane, channel, form, `r${p}-${channel.replace(/\W/g, '')}-${f}`),
  }))),
  ...(plane.sweep ? [{ plane: plane.name, channel: `${plane.sweep} truncation`, form: 'offset-0..600', run: () => sweep(plane, plane.sweep as string) }] : []),
  { plane: plane.name, channel: 'data dir', form: 'all forms', run: () => dataDir(plane.name) },
]);

// ---- gateway ----

before(async () => {
  logs = captureStderr();
  exportDir = mkdtempSync(join(tmpdir(), 'aam-leak-export-'));
  up = await startLeakUpstream({ vertexToken: SECRETS['gcp-token'] });
  hook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const tag = (req.url ?? '/').slice(1);
      hooked.set(tag, [...hooked.get(tag) ?? [], { headers: JSON.stringify(req.headers), body: Buffer.concat(chunks) }]);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}`;
  const target = (provider: string, model: string, extra: Record<string, unknown> = {}) =>
    ({ targets: [{ provider, model }], retries: { attempts: 0 }, ...extra });
  const config = yaml(
    doc('Credential', 'llm-key', { env: 'LEAK_LLM_KEY' }),
    doc('Credential', 'ant-key', { env: 'LEAK_ANT_KEY' }),
    doc('Credential', 'mcp-key', { env: 'LEAK_MCP_KEY' }),
    doc('Credential', 'tool-key', { env: 'LEAK_TOOL_KEY' }),
    doc('Credential', 'stdio-key', { env: 'LEAK_STDIO_KEY' }),
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${up.url}/v1`, credential: 'llm-key' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${up.url}/v1`, credential: 'ant-key' }),
    doc('Provider', 'oai-any', { type: 'openai-compatible', baseUrl: `${up.url}/v1`, credential: 'llm-key', models: '*' }),
    doc('Provider', 'oai-native', { type: 'openai', baseUrl: `${up.url}/v1`, credential: 'llm-key' }),
    doc('Model', 'leak-reasoning', target('oai-native', 'leaky-reasoning')),
    doc('Model', 'leak-reasoning-stream', target('oai-native', 'leaky-reasoning-stream')),
    // One target per plane: failing rows of one plane never open another plane's circuit breaker.
    doc('Model', 'leak-chat', target('oai', 'leaky-chat')),
    doc('Model', 'leak-stream', target('oai', 'leaky-stream')),
    doc('Model', 'leak-claude', target('ant', 'leaky-claude')),
    doc('Model', 'leak-claude-stream', target('ant', 'leaky-claude-stream')),
    doc('Model', 'leak-responses', target('oai', 'leaky-responses')),
    doc('Model', 'leak-responses-stream', target('oai', 'leaky-responses-stream')),
    doc('Model', 'leak-embed', target('oai', 'leaky-embed', { kind: 'embeddings' })),
    doc('Model', 'leak-cached', target('oai', 'leaky-cached', { cache: { mode: 'exact' } })),
    doc('Model', 'leak-claude-cached', target('ant', 'leaky-claude-cached', { cache: { mode: 'exact' } })),
    doc('Model', 'leak-fallback', { targets: [{ provider: 'oai', model: 'leaky-fallback-a' }, { provider: 'oai', model: 'leaky-fallback-b' }], retries: { attempts: 0 }, breaker: { failures: 1000 } }),
    doc('Credential', 'aws-sts', { env: 'LEAK_AWS_STS', kind: 'aws_sigv4' }),
    doc('Credential', 'gcp-sa', { env: 'LEAK_GCP_SA', kind: 'google_service_account' }),
    doc('Provider', 'bedrock', { type: 'bedrock', baseUrl: up.url, credential: 'aws-sts', bedrock: { region: 'us-east-1' } }),
    doc('Provider', 'vertex', { type: 'vertex', baseUrl: up.url, credential: 'gcp-sa', vertex: { project: 'leak-project', region: 'us-central1' } }),
    doc('Model', 'leak-bedrock', target('bedrock', 'anthropic.leaky-v1:0')),
    doc('Model', 'leak-bedrock-stream', target('bedrock', 'anthropic.leaky-stream-v1:0')),
    doc('Model', 'leak-vertex', target('vertex', 'gemini-leaky')),
    doc('Model', 'leak-vertex-stream', target('vertex', 'gemini-leaky-stream')),
    doc('Model', 'leak-vertex-thoughts', target('vertex', 'gemini-leaky-thoughts')),
    doc('Model', 'leak-vertex-thoughts-stream', target('vertex', 'gemini-leaky-thoughts-stream')),
    doc('Model', 'leak-vertex-reasoning', target('vertex', 'gemini-leaky-reasoning')),
    doc('Model', 'leak-vertex-reasoning-stream', target('vertex', 'gemini-leaky-reasoning-stream')),
    doc('McpServer', 'leaky', { transport: 'streamable-http', url: `${up.url}/mcp`, credential: 'mcp-key', timeout_ms: 10_000 }),
    doc('McpServer', 'leaky-modern', { transport: 'streamable-http', url: `${up.url}/mcp-modern`, credential: 'mcp-key', timeout_ms: 10_000 }),
    doc('McpServer', 'leaky-lists', { transport: 'streamable-http', url: `${up.url}/mcp-lists`, credential: 'mcp-key', timeout_ms: 10_000 }),
    doc('McpServer', 'leaky-stdio', { transport: 'stdio', command: process.execPath, args: [STDIO_SERVER], env: { LEAK_ENV: 'STDIO_KEY' }, credential: 'stdio-key', timeout_ms: 30_000 }),
    doc('HttpTool', 'leaky-api', { baseUrl: `${up.url}/tool`, credential: 'tool-key', resource: 'leaky.api', actions: { echo: { method: 'GET', path: '/echo/{channel}/{form}' } } }),
    doc('Credential', 'agent-key', { env: 'LEAK_A2A_KEY' }),
    doc('Agent', 'leaky-agent', { workload: 'spiffe://test/agent/leaky-agent', a2a: { url: `${up.url}/a2a`, credential: 'agent-key' } }),
    doc('Credential', 'query-key', { kind: 'query', env: 'LEAK_QUERY_KEY', inject: { query: 'api_key' } }),
    doc('Agent', 'leaky-query-agent', { workload: 'spiffe://test/agent/leaky-query-agent', a2a: { url: `${up.url}/a2a-query?tenant=leak`, credential: 'query-key' } }),
    doc('Agent', 'hunter', { workload: 'spiffe://test/agent/hunter', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'hunter-policy', {
      identity: { workload: 'spiffe://test/agent/hunter' },
      models: { allow: ['oai-any/**', 'leak-chat', 'leak-stream', 'leak-claude', 'leak-claude-stream', 'leak-embed', 'leak-cached', 'leak-claude-cached', 'leak-fallback', 'leak-responses', 'leak-responses-stream', 'leak-reasoning', 'leak-reasoning-stream', 'leak-bedrock', 'leak-bedrock-stream', 'leak-vertex', 'leak-vertex-stream', 'leak-vertex-thoughts', 'leak-vertex-thoughts-stream', 'leak-vertex-reasoning', 'leak-vertex-reasoning-stream'] },
      tools: [{ resource: 'leaky', actions: ['*'] }, { resource: 'leaky-lists', actions: ['*'] }, { resource: 'leaky-modern', actions: ['*'] }, { resource: 'leaky-stdio', actions: ['*'] }, { resource: 'leaky.api', actions: ['*'] }],
      agents: [{ agent: 'leaky-agent' }, { agent: 'leaky-query-agent' }],
    }),
  );
  const sts = JSON.stringify({ Version: 1, AccessKeyId: 'ASIALEAKHUNTEXAMPLE1', SecretAccessKey: SECRETS['aws-secret'], SessionToken: SECRETS['aws-session'] });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const sa = JSON.stringify({ type: 'service_account', project_id: 'leak-project', private_key_id: 'k1', private_key: rsa, client_email: 'leak@leak-project.iam.gserviceaccount.com', token_uri: `${up.url}/token` });
  gw = await startTestGateway(config, { LEAK_AWS_STS: sts, LEAK_GCP_SA: sa, LEAK_LLM_KEY: SECRETS['llm-key'], LEAK_ANT_KEY: SECRETS['ant-key'], LEAK_MCP_KEY: SECRETS['mcp-key'], LEAK_TOOL_KEY: SECRETS['tool-key'], LEAK_STDIO_KEY: SECRETS['stdio-key'], LEAK_A2A_KEY: SECRETS['agent-key'], LEAK_QUERY_KEY: SECRETS['query-key'], AAM_A2A_PUSH_ALLOW: new URL(hookUrl).host,
    AAM_LOG_LEVEL: 'debug', // the gateway's logger at its most verbose: the most it would ever write
    // Every export: spans and audit log records (OTLP), the audit webhook and the audit file.
    OTEL_EXPORTER_OTLP_ENDPOINT: `${hookUrl}/otlp`, AAM_AUDIT_WEBHOOK_URL: `${hookUrl}/audit-webhook`, AAM_AUDIT_WEBHOOK_SECRET: 'leak-hunt-hmac',
    AAM_AUDIT_FILE: join(exportDir, 'audit.jsonl') });
  agentKey = gw.key('hunter');
  openai = new OpenAI({ apiKey: agentKey, baseURL: `${gw.url}/v1`, maxRetries: 0, fetch: cap.fetch });
  anthropic = new Anthropic({ apiKey: agentKey, baseURL: gw.url, maxRetries: 0, fetch: cap.fetch });
  const mcpServers = gw.g.rt.tools?.mcp;
  await until(() => Object.values(mcpServers?.status() ?? {}).every((s) => s.state === 'ready'), 30_000, 'MCP upstreams ready');
  mcp = new Client({ name: 'leak-hunter', version: '1.0.0' });
  await mcp.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${agentKey}` } }, fetch: cap.fetch }));
  // resources/read through /mcp needs the owner of a URI known: list the templates once.
  await mcp.listResourceTemplates();
  // Log messages of its requests are relayed to a session that set a level: the most there are.
  await mcp.setLoggingLevel('debug');
  await cap.take();
});

after(async () => {
  await mcp?.close().catch(() => {});
  await gw?.close();
  await up?.close();
  hook?.closeAllConnections();
  await new Promise((r) => hook?.close(r));
  logs?.restore();
  if (exportDir) rmSync(exportDir, { recursive: true, force: true });
});

for (const row of ROWS) test(`${row.plane} | ${row.channel} | ${row.form}`, row.run);

// ---- a key inside base64 content: redacted, and the message still valid for the agent's SDK ----

test('mcp tools/call and resources/read | base64 image and blob holding the key | the MCP SDK accepts the result; the decoded bytes hold no key', async () => {
  // No outcome() wrapper: a scrub that broke the base64 makes the SDK throw ("Invalid Base64 string").
  const call = await mcp.callTool({ name: 'leaky__leak', arguments: { channel: 'body', form: 'binary', tag: 'b64-valid-call' } });
  const image = (call.content as Array<{ type: string; data?: string }>).find((c) => c.type === 'image');
  const read = await mcp.readResource({ uri: 'leak://body/binary/b64-valid-read' });
  const blob = (read.contents[0] as { blob?: string }).blob;
  for (const data of [image?.data, blob]) {
    assert.ok(typeof data === 'string' && data.length > 0);
    assert.match(data, /(REDACTED){2}/, 'the key\'s base64 is overwritten in place');
    const bytes = Buffer.from(data, 'base64');
    assert.equal(bytes.toString('base64'), data, 'still canonical base64');
    const leaks = [...findLeaks(bytes.toString('latin1'), ALL), ...findLeaks(data, ALL)];
    assert.equal(leaks.length, 0, report('the decoded content', leaks));
  }
  assert.ok(up.served('b64-valid-call') >= 1 && up.served('b64-valid-read') >= 1);
  await cap.take();
});

// ---- what aam exposes or keeps beyond one plane ----

test('metrics | /metrics | all forms', async () => {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  assert.match(text, /aam_/);
  const leaks = findLeaks(text, ALL);
  assert.equal(leaks.length, 0, report('/metrics', leaks));
});

// ---- what aam sends out of band: spans, audit log records, the audit webhook and file ----

/** What the hook server received on a path (OTLP posts to <endpoint>/v1/traces, /v1/logs). */
const exported = (path: string) => hooked.get(path) ?? [];

/** Everything recorded so far has left through each export (the sinks wake on each commit; spans on flush). */
async function exportsCaughtUp(): Promise<void> {
  await gw.g.rt.auditLog?.flush();
  await gw.g.rt.tracer?.flush();
  const head = gw.g.rt.auditLog?.stats().lastSeq ?? 0;
  // Each delivery names its seq range (x-aam-seq-range: first-last); the sinks deliver in order.
  const last = (path: string) => Math.max(0, ...exported(path).map((r) => Number(/"x-aam-seq-range":"\d+-(\d+)"/.exec(r.headers)?.[1] ?? 0)));
  await until(() => existsSync(join(exportDir, 'audit.jsonl')) && last('audit-webhook') >= head && exported('otlp/v1/logs').length > 0, 30_000, `the audit sinks delivered up to seq ${head}`);
}

for (const [name, path] of [['OTLP traces', 'otlp/v1/traces'], ['OTLP audit logs', 'otlp/v1/logs'], ['audit webhook', 'audit-webhook']] as const) {
  test(`export | ${name} | all forms`, async () => {
    await exportsCaughtUp();
    const bodies = exported(path);
    assert.ok(bodies.length > 0, `${name} received something`);
    const leaks = bodies.flatMap((b) => [...agentViews(b.body).flatMap((v) => findLeaks(v, ALL, { stride: 6 })), ...findLeaks(b.headers, ALL)]);
    assert.equal(leaks.length, 0, report(name, leaks));
  });
}

test('export | audit file (AAM_AUDIT_FILE) | all forms', async () => {
  await exportsCaughtUp();
  const leaks = grepDir(exportDir, ALL);
  assert.ok(statSync(join(exportDir, 'audit.jsonl')).size > 0);
  assert.equal(leaks.length, 0, report('the audit file', leaks));
});

test('log | every line written | all forms', () => {
  const leaks = findLeaks(logs.lines.join('\n'), ALL, { stride: 6 });
  assert.equal(leaks.length, 0, report('the log', leaks));
  assert.ok(logs.lines.some((l) => l.includes('credential_leak')), 'redactions are logged (names only)');
  gw.g.rt.log.debug({ event: 'leak_hunt_level_probe' });
  assert.ok(logs.lines.some((l) => l.includes('leak_hunt_level_probe')), 'the gateway logs at debug: the hunt read everything it would ever write');
});
