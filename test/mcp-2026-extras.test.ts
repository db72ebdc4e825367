// MCP 2026-07-28 extras end to end through the real gateway: RFC 8707 resource indicators per
// route, the upstream catalog honouring cacheScope / ttlMs, and multi-round-trip (input_required)
// requests relayed with the caller's identity bound. The upstream is a small 2026-07-28 server
// written from the spec (basic/patterns/mrtr, server/utilities/caching); the client is a
// conformant request builder (it sends what the SDK never would), and for input_required also the
// MCP SDK's own 2026-07-28 client (@modelcontextprotocol/client v2). The messages aam sends
// for these features (input_required, listen acknowledgements and notifications, progress) are also
// validated against the spec's JSON Schema (vendored in test/fixtures/mcp-schema), and every Tasks
// extension message the tests and the upstream send or receive against the extension's schema
// transcribed from SEP-2663 beside it (the spec's schema.json does not contain the extension).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { connectClient, mcpSchemaCheck, serversReady, sseMessages, textOf, toolEvents, ADMIN_TOKEN, type SchemaCheck } from './helpers/mcp.ts';
import { issueAgentSvid } from '../src/identity/issue.ts';
import { stdioServerDoc } from './fixtures/mcp-accounts/upstream.ts';
import { listenLoopback, closeAll } from './helpers/e2e.ts';
import { Client as ModernClient, StreamableHTTPClientTransport as ModernTransport } from '@modelcontextprotocol/client';

const VERSION = '2026-07-28';
const SECRET = 'extras-upstream-secret-NEEDLE-7a6b5c';

type Body = { id: number; method: string; params: Record<string, unknown> & { _meta?: Record<string, unknown>; arguments?: Record<string, unknown> } };
/** What the upstream saw: each POST's server (?s=), Authorization header, caller (sub of an on-behalf-of token) and body. */
const seen: Array<{ server: string; auth: string; sub: string; body: Body }> = [];
/** What the shared (public) tools/list answers: its ttlMs and extra tools. */
const listing = { ttlMs: 0, extra: [] as string[] };
const TOOLS = ['whoami', 'confirm', 'pushy', 'longjob', 'pushytask', 'oddjob'];
/** The upstream's one task; `caps`: the client capabilities each tasks/* request declared. */
const job = { status: 'none', answer: undefined as unknown, seen: [] as string[], caps: [] as unknown[] };
/** A Task's common fields (SEP-2663) as the upstream gives them. */
const upTask = (taskId: string, status: string) => ({ taskId, status, createdAt: '2026-08-01T10:00:00Z', lastUpdatedAt: new Date().toISOString() });
/**
 * Tasks extension messages the spec-written upstream got from aam or sent it, checked against the
 * extension's schema (test/fixtures/mcp-schema/tasks-extension.json); a mismatch is kept for the
 * tests to fail on (an assertion thrown in the server would not reach them).
 */
const upstreamFaults: string[] = [];
const conform = (def: string, v: unknown) => { try { check(def, v); } catch (e) { upstreamFaults.push(String(e)); } };
/** gamma's list is private: what it lists depends on the caller its on-behalf-of token names. */
const PRIVATE_TTL_MS = 600_000;
const privateTools = (sub: string): string[] => (sub.endsWith('/navigator') ? ['whoami', 'nav-only'] : sub.endsWith('/intruder') ? ['whoami', 'intruder-only'] : ['whoami', 'nav-only', 'intruder-only']);
const subOf = (auth: string): string => {
  const m = /^Bearer ([\w-]+)\.([\w-]+)\.[\w-]+$/.exec(auth);
  return m ? String((JSON.parse(Buffer.from(m[2], 'base64url').toString('utf8')) as { sub?: string }).sub) : '';
};
/** subscriptions/listen streams the upstream has open (aam's, on behalf of its callers). */
const upstreamStreams: Array<{ server: string; sub: string; notifications: Record<string, unknown>; write(msg: Record<string, unknown>): void; end(): void; closed: boolean }> = [];
const pushUpstream = (server: string, msg: Record<string, unknown>) => { for (const st of upstreamStreams) if (st.server === server && !st.closed) st.write({ jsonrpc: '2.0', ...msg }); };
const listsOf = (server: string, from = 0) => seen.slice(from).filter((x) => x.server === server && x.body.method === 'tools/list');

let check: SchemaCheck = () => {};
/** While true, server delta (?s=delta) answers every request with 503 (it is down). */
let deltaDown = false;
/** When aam tried to open a listen stream to delta while it was down. */
const deltaListenTries: number[] = [];

let upstream: HttpServer;
let gw: TestGateway;
let key: string;
let otherKey: string;

async function startUpstream(): Promise<string> {
  upstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Body;
    const auth = String(req.headers.authorization ?? '');
    const server = new URL(req.url ?? '/', 'http://x').searchParams.get('s') ?? '';
    if (server === 'delta' && deltaDown) {
      if (body.method === 'subscriptions/listen') deltaListenTries.push(Date.now());
      res.writeHead(503).end();
      return;
    }
    const sub = subOf(auth);
    seen.push({ server, auth, sub, body });
    const reply = (status: number, msg: Record<string, unknown>) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, ...msg })); };
    const ok = (result: Record<string, unknown>) => reply(200, { result: { resultType: 'complete', ...result } });
    if (body.params?._meta?.['io.modelcontextprotocol/protocolVersion'] !== VERSION) return reply(400, { error: { code: -32022, message: 'Unsupported protocol version' } });
    const name = body.params.name;
    if (body.method === 'subscriptions/listen') {
      const notifications = (body.params.notifications ?? {}) as Record<string, unknown>;
      if ('taskIds' in notifications) conform('tasks:SubscriptionsListenRequest', body);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const st = { server, sub, notifications, closed: false, write: (msg: Record<string, unknown>) => { res.write(`data: ${JSON.stringify(msg)}\n\n`); }, end: () => { res.end(); } };
      upstreamStreams.push(st);
      res.on('close', () => { st.closed = true; });
      st.write({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications, _meta: { 'io.modelcontextprotocol/subscriptionId': body.id } } });
      return;
    }
    if (body.method === 'server/discover') return ok({ supportedVersions: [VERSION], capabilities: { tools: {} }, ttlMs: 0, cacheScope: 'public' });
    const defs = (names: string[]) => names.map((n) => ({ name: n, inputSchema: { type: 'object', properties: {} } }));
    if (body.method === 'tools/list' && sub) return ok({ tools: defs(privateTools(sub)), ttlMs: PRIVATE_TTL_MS, cacheScope: 'private' });
    if (body.method === 'tools/list') return ok({ tools: defs([...TOOLS, ...listing.extra]), ttlMs: listing.ttlMs, cacheScope: 'public' });
    if (body.method === 'tools/call' && name === 'whoami') return ok({ content: [{ type: 'text', text: `called with ${auth}` }] });
    // Tasks extension (SEP-2663): a task when the client declared the extension, else done at once.
    const caps = body.params._meta?.['io.modelcontextprotocol/clientCapabilities'] as { extensions?: Record<string, unknown> } | undefined;
    const ext = caps?.extensions;
    const taskReply = (r: Record<string, unknown>) => { conform(r.resultType === 'task' ? 'tasks:CreateTaskResult' : 'tasks:GetTaskResult', r); reply(200, { result: r }); };
    if (body.method === 'tools/call' && name === 'longjob') {
      if (!ext?.['io.modelcontextprotocol/tasks']) return ok({ content: [{ type: 'text', text: 'done at once' }] });
      job.status = 'working';
      return taskReply({ resultType: 'task', ...upTask('up-task-1', 'working'), statusMessage: 'queued', ttlMs: 60_000, pollIntervalMs: 50 });
    }
    // Not conformant: a task whatever the client declared.
    if (body.method === 'tools/call' && name === 'pushytask') return reply(200, { result: { resultType: 'task', ...upTask('up-task-pushy', 'working'), ttlMs: 60_000 } });
    // A task with no ttl (aam honours it for its default), and shapes that are not the extension's (aam refuses them).
    if (body.method === 'tools/call' && name === 'oddjob') {
      const kind = body.params.arguments?.kind;
      if (kind === 'running') return reply(200, { result: { resultType: 'task', ...upTask('up-task-odd', 'working'), status: `running ${SECRET}` } });
      if (kind === 'undated') return reply(200, { result: { resultType: 'task', taskId: 'up-task-odd', status: 'working', ttlMs: 1000 } });
      return taskReply({ resultType: 'task', ...upTask('up-task-odd', 'working'), ttlMs: null });
    }
    if (body.method.startsWith('tasks/')) {
      const kind = body.method === 'tasks/get' ? 'Get' : body.method === 'tasks/update' ? 'Update' : 'Cancel';
      conform(`tasks:${kind}TaskRequest`, body);
      const taskId = String(body.params.taskId);
      if (!['up-task-1', 'up-task-odd'].includes(taskId) || req.headers['mcp-name'] !== taskId) return reply(200, { error: { code: -32602, message: `unknown task ${taskId}` } });
      job.caps.push(caps ?? {});
      // Not a DetailedTask: completed without its result.
      if (taskId === 'up-task-odd') return body.method === 'tasks/get' ? reply(200, { result: { resultType: 'complete', ...upTask(taskId, 'completed'), ttlMs: null } }) : ok({});
      job.seen.push(body.method);
      // Acknowledgements with a field of the upstream's own: aam relays the empty acknowledgement only.
      if (body.method === 'tasks/update') { job.answer = body.params.inputResponses; job.status = 'completed'; return ok({ note: `ack from ${SECRET}` }); }
      if (body.method === 'tasks/cancel') { job.status = 'cancelled'; return ok({ note: `ack from ${SECRET}` }); }
      // A ttl longer than the task was created with: aam still honours the id only for the first.
      const polled = (status: string, more: Record<string, unknown> = {}) => taskReply({ resultType: 'complete', ...upTask('up-task-1', status), ttlMs: 86_400_000, pollIntervalMs: 50, ...more });
      if (job.status === 'working') { job.status = 'input_required'; return polled('working'); }
      if (job.status === 'input_required') return polled('input_required', { inputRequests: { size: { method: 'elicitation/create', params: { mode: 'form', message: 'How big?', requestedSchema: { type: 'object', properties: { n: { type: 'integer' } } } } } } });
      return polled(job.status, job.status === 'completed' ? { result: { content: [{ type: 'text', text: `job done with ${JSON.stringify(job.answer)} using ${SECRET}` }] } } : {});
    }
    // Not conformant: a task for a read (the extension allows one for tools/call only).
    if (body.method === 'resources/read' && body.params.uri === 'memo://tasky') return reply(200, { result: { resultType: 'task', ...upTask('up-task-read', 'working'), ttlMs: 1000 } });
    // MRTR on reads: the resource and the prompt ask for input (requestState only), then answer.
    if (body.method === 'resources/read' || body.method === 'prompts/get') {
      if (body.params.requestState !== `rs-${body.method}`) return reply(200, { result: { resultType: 'input_required', requestState: `rs-${body.method}` } });
      return ok(body.method === 'resources/read' ? { contents: [{ uri: body.params.uri, text: 'the guarded memo' }], ttlMs: 0, cacheScope: 'private' } : { messages: [{ role: 'user', content: { type: 'text', text: 'the guarded prompt' } }] });
    }
    // Not conformant: asks for input whatever the client declared.
    if (body.method === 'tools/call' && name === 'pushy') return reply(200, { result: { resultType: 'input_required', requestState: 'x' } });
    if (body.method === 'tools/call' && name === 'confirm') {
      // MRTR: first ask (elicitation) with an opaque state; on the retry, answer from inputResponses.
      const caps = body.params._meta?.['io.modelcontextprotocol/clientCapabilities'] as Record<string, unknown> | undefined;
      if (!caps?.elicitation) return reply(200, { error: { code: -32021, message: 'Missing required client capability: elicitation' } });
      const answer = (body.params.inputResponses as Record<string, { action?: string; content?: { ok?: boolean } }> | undefined)?.approve;
      if (!answer) return reply(200, { result: { resultType: 'input_required', inputRequests: { approve: { method: 'elicitation/create', params: { mode: 'form', message: 'Really?', requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } } } } } }, requestState: 'upstream-state-1' } });
      return ok({ content: [{ type: 'text', text: `confirmed=${String(answer.content?.ok)} state=${String(body.params.requestState)}` }] });
    }
    return reply(404, { error: { code: -32601, message: `Method not found: ${body.method}` } });
  });
  return listenLoopback(upstream, '/mcp');
}

interface Sent { status: number; body: { id?: unknown; result?: Record<string, unknown>; error?: { code: number; message: string; data?: Record<string, unknown> } } }

/** A conformant 2026-07-28 request (headers mirrored from the body). */
async function modern(method: string, params: Record<string, unknown> = {}, o: { path?: string; token?: string; caps?: Record<string, unknown> } = {}): Promise<Sent> {
  const body = { jsonrpc: '2.0', id: Math.floor(Math.random() * 1e9), method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'spec-client', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': o.caps ?? { elicitation: { form: {} } } } } };
  const headers: Record<string, string> = {
    'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${o.token ?? key}`,
    'mcp-protocol-version': VERSION, 'mcp-method': method,
  };
  if (typeof params.name === 'string') headers['mcp-name'] = params.name;
  if (typeof params.uri === 'string') headers['mcp-name'] = params.uri;
  if (typeof params.taskId === 'string') headers['mcp-name'] = params.taskId;
  // Every Tasks extension message sent and received is checked against the extension's schema.
  const task = TASK_DEFS[method];
  if (task) check(`tasks:${task}TaskRequest`, body);
  const r = await fetch(`${gw.url}${o.path ?? '/mcp'}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await r.text();
  const sent: Sent = { status: r.status, body: text ? JSON.parse(text) as Sent['body'] : {} };
  if (task) check(sent.body.error ? 'JSONRPCErrorResponse' : `tasks:${task}TaskResultResponse`, sent.body);
  else if (sent.body.result?.resultType === 'task') check('tasks:CreateTaskResultResponse', sent.body);
  return sent;
}
const TASK_DEFS: Record<string, string> = { 'tasks/get': 'Get', 'tasks/update': 'Update', 'tasks/cancel': 'Cancel' };

async function tokenFor(secret: string, body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${gw.url}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() as Record<string, unknown> };
}

const toolNames = (r: Sent, prefix = ''): string[] => ((r.body.result?.tools ?? []) as Array<{ name: string }>).map((t) => t.name).filter((n) => n.startsWith(prefix)).sort();

/**
 * The config; `denyLongjob`: navigator's policy now denies alpha's longjob (for the Tasks test's reload); `navCrm`: navigator's crm actions;
 * `navGamma`: navigator may use gamma; `delta`: a fourth 2026-07-28 server (?s=delta), navigator's.
 */
function config(url: string, denyLongjob = false, navCrm: string[] = ['*'], o: { navGamma?: boolean; delta?: boolean } = {}): string {
  // crm (the accounts fixture, 2025-11-25 over stdio): navigator may read its resources, intruder may only call mutate.
  const servers = (agent: string) => ['alpha', 'beta', 'gamma', 'delta'].filter((r) => (r !== 'gamma' || agent !== 'navigator' || o.navGamma !== false) && (r !== 'delta' || (o.delta === true && agent === 'navigator')));
  const policy = (agent: string, crm: string[]) => doc('AgentPolicy', `${agent}-policy`, { identity: { workload: `spiffe://prod/agent/${agent}` }, tools: [
    ...servers(agent).map((resource) => ({ resource, actions: ['*'], ...(denyLongjob && resource === 'alpha' && agent === 'navigator' ? { deny: ['longjob'] } : {}) })), { resource: 'crm', actions: crm }] });
  return yaml(
    doc('Credential', 'up-token', { env: 'TEST_UP_TOKEN' }),
    doc('Agent', 'navigator', { workload: 'spiffe://prod/agent/navigator', team: 'ops', environment: 'prod' }),
    doc('Agent', 'intruder', { workload: 'spiffe://prod/agent/intruder', team: 'ops', environment: 'prod' }),
    policy('navigator', navCrm), policy('intruder', ['mutate']),
    stdioServerDoc('crm'),
    doc('Credential', 'gamma-obo', { kind: 'on_behalf_of', obo: { audience: 'mcp://gamma', ttl_seconds: 60 } }),
    // Input guardrail on alpha: whatever a client sends it (arguments, inputResponses, any tasks/* field) has e-mail addresses masked.
    doc('Guardrail', 'mask-email-in', { on: ['input'], detect: ['email'], action: 'redact' }),
    doc('McpServer', 'alpha', { transport: 'streamable-http', url: `${url}?s=alpha`, credential: 'up-token', timeout_ms: 60_000, guardrails: ['mask-email-in'] }),
    doc('McpServer', 'beta', { transport: 'streamable-http', url: `${url}?s=beta`, credential: 'up-token', timeout_ms: 60_000 }),
    doc('McpServer', 'gamma', { transport: 'streamable-http', url: `${url}?s=gamma`, credential: 'gamma-obo', timeout_ms: 60_000 }),
    ...(o.delta ? [doc('McpServer', 'delta', { transport: 'streamable-http', url: `${url}?s=delta`, credential: 'up-token', timeout_ms: 60_000 })] : []),
  );
}
let upstreamUrl = '';

before(async () => {
  check = await mcpSchemaCheck();
  upstreamUrl = await startUpstream();
  // Listen streams that end are held 1 s (AAM_MCP_STREAM_GRACE), so the tests that wait for aam to stop listening upstream stay short.
  gw = await startTestGateway(config(upstreamUrl), { TEST_UP_TOKEN: SECRET, AAM_ADMIN_TOKEN: ADMIN_TOKEN, AAM_MCP_STREAM_GRACE: '1' });
  key = gw.key('navigator');
  otherKey = gw.key('intruder');
  await serversReady(gw);
});

after(() => closeAll(gw, upstream));

test('RFC 8707: a token for /mcp/alpha (its resource) is accepted there and nowhere else; the client token never goes upstream', async () => {
  const resource = `${gw.url}/mcp/alpha`;
  const t = await tokenFor(key, { resource, ttl: '5m' });
  assert.equal(t.status, 200, JSON.stringify(t.json));
  const jwt = String(t.json.access_token);
  const aud = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8')).aud as unknown;
  assert.equal(aud, resource, 'the route URL is the token\'s only audience');
  // Protected resource metadata names the same URL for that route.
  const prm = await (await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp/alpha`)).json() as { resource: string };
  assert.equal(prm.resource, resource);

  const before = seen.length;
  const call = await modern('tools/call', { name: 'whoami', arguments: {} }, { path: '/mcp/alpha', token: jwt });
  assert.equal(call.status, 200, JSON.stringify(call.body));
  assert.match(textOf(call.body.result), /called with/);
  // Verified (and cached) on alpha first: the cache must not carry it to another route.
  for (const path of ['/mcp/beta', '/mcp']) {
    const r = await modern('tools/list', {}, { path, token: jwt });
    assert.equal(r.status, 401, `${path}: ${JSON.stringify(r.body)}`);
    assert.match(JSON.stringify(r.body), new RegExp(`a token for another route is not accepted here: get one with \\\\"resource\\\\": \\\\"${gw.url}${path}`));
  }
  const upstreamAuth = seen.slice(before).map((s) => s.auth);
  assert.ok(upstreamAuth.length > 0);
  for (const a of upstreamAuth) {
    assert.ok(!a.includes(jwt) && !a.includes(key), 'the client\'s token never goes upstream');
    assert.equal(a, `Bearer ${SECRET}`, 'the upstream gets the credential aam injects');
  }
  assert.ok(!JSON.stringify(call.body).includes(SECRET), 'the injected credential is scrubbed from what the agent sees');
});

test('RFC 8707 negatives: a wrong audience is 401; the token endpoint refuses a resource that is not an MCP route of aam', async () => {
  // Signed by aam's own issuer, but for a resource elsewhere.
  const svid = await issueAgentSvid(gw.g.rt.issuer!, gw.g.rt.compiled.registry, { agent: 'navigator', audience: 'https://elsewhere.example/mcp/alpha' });
  const r = await modern('tools/list', {}, { path: '/mcp/alpha', token: svid.token });
  assert.equal(r.status, 401);
  assert.match(JSON.stringify(r.body), /bad_audience/);
  for (const resource of [`${gw.url}/mcp/nope`, 'https://elsewhere.example/mcp/alpha', `${gw.url}/v1/chat/completions`, `${gw.url}/mcp/alpha/x`]) {
    const t = await tokenFor(key, { resource });
    assert.equal(t.status, 400, `${resource}: ${JSON.stringify(t.json)}`);
    assert.match(JSON.stringify(t.json), /is not an MCP route of this gateway/);
  }
  const both = await tokenFor(key, { resource: `${gw.url}/mcp`, audience: 'aam' });
  assert.equal(both.status, 400);
  // A token for the aggregated route works there; one for the gateway as a whole (aud aam) works on every route.
  const agg = await tokenFor(key, { resource: `${gw.url}/mcp` });
  assert.equal((await modern('tools/list', {}, { path: '/mcp', token: String(agg.json.access_token) })).status, 200);
  assert.equal((await modern('tools/list', {}, { path: '/mcp/alpha', token: String(agg.json.access_token) })).status, 401);
  const whole = await tokenFor(key, {});
  for (const path of ['/mcp', '/mcp/alpha', '/mcp/beta']) assert.equal((await modern('tools/list', {}, { path, token: String(whole.json.access_token) })).status, 200, path);
});

test('cacheScope private: each caller sees only what the upstream lists for it, listed as that caller and never served to another', async () => {
  const from = seen.length;
  const nav1 = await modern('tools/list', {}, { path: '/mcp/gamma' });
  assert.equal(nav1.status, 200, JSON.stringify(nav1.body));
  assert.deepEqual(toolNames(nav1), ['nav-only', 'whoami']);
  const intr = await modern('tools/list', {}, { path: '/mcp/gamma', token: otherKey });
  assert.deepEqual(toolNames(intr), ['intruder-only', 'whoami'], 'not navigator\'s list, not aam\'s shared one');
  // On /mcp too, and through the SDK's 2025-11-25 client (a session).
  assert.deepEqual(toolNames(await modern('tools/list', {}, { path: '/mcp', token: otherKey }), 'gamma__'), ['gamma__intruder-only', 'gamma__whoami']);
  const { client } = await connectClient(gw, key);
  try {
    assert.deepEqual((await client.listTools()).tools.map((t) => t.name).filter((n) => n.startsWith('gamma__')).sort(), ['gamma__nav-only', 'gamma__whoami']);
  } finally { await client.close(); }
  // Listed once per caller, as that caller (its own on-behalf-of token), then kept for its ttlMs.
  // (Earlier tests listed /mcp as navigator already: count from the start.)
  const callers = () => listsOf('gamma').map((x) => x.sub).filter((sub) => sub.startsWith('spiffe://prod/')).sort();
  assert.deepEqual(callers(), ['spiffe://prod/agent/intruder', 'spiffe://prod/agent/navigator']);
  assert.deepEqual(toolNames(await modern('tools/list', {}, { path: '/mcp/gamma' })), ['nav-only', 'whoami']);
  assert.equal(callers().length, 2, 'a fresh private list is reused for the same caller');
});

test('ttlMs: a shared list whose ttlMs lapsed is listed again (a new tool appears); within its ttlMs it is served from the catalog', async () => {
  // Listed with ttlMs 0 at connect: immediately stale, so the next listing asks again.
  listing.extra = ['late'];
  listing.ttlMs = 600_000;
  assert.ok(toolNames(await modern('tools/list', {}, { path: '/mcp/alpha' })).includes('late'), 'a stale list is listed again');
  const from = seen.length;
  listing.extra = [];
  const again = await modern('tools/list', {}, { path: '/mcp/alpha' });
  assert.ok(toolNames(again).includes('late'), 'fresh for its ttlMs: served from the catalog');
  assert.equal(listsOf('alpha', from).length, 0, 'no upstream tools/list within the ttlMs');
});

test('input_required: relayed to a 2026-07-28 client with aam\'s sealed state; only the same caller can answer it, for the same request', async () => {
  const ask = await modern('tools/call', { name: 'confirm', arguments: { amount: 5 } }, { path: '/mcp/alpha' });
  assert.equal(ask.status, 200, JSON.stringify(ask.body));
  const r = ask.body.result!;
  assert.equal(r.resultType, 'input_required');
  assert.equal((r.inputRequests as Record<string, { method: string }>).approve.method, 'elicitation/create');
  const state = String(r.requestState);
  assert.match(state, /^aam1\./);
  assert.ok(!state.includes('upstream-state-1') && !Buffer.from(state.slice(5), 'base64url').toString('latin1').includes('upstream-state-1'), 'the upstream\'s state is sealed, not shown');
  assert.ok(!('ttlMs' in r) && !('cacheScope' in r), 'an interim result carries no caching hints');
  check('InputRequiredResult', r);
  const answer = { approve: { action: 'accept', content: { ok: true } } };
  const retries = () => seen.filter((x) => x.body.method === 'tools/call' && x.body.params.inputResponses !== undefined).length;
  const before = retries();
  // Another identity cannot answer navigator's input request, even with the exact state.
  const stolen = await modern('tools/call', { name: 'confirm', arguments: { amount: 5 }, inputResponses: answer, requestState: state }, { path: '/mcp/alpha', token: otherKey });
  assert.equal(stolen.body.error?.code, -32602, JSON.stringify(stolen.body));
  assert.match(stolen.body.error!.message, /issued to another identity/);
  // Nor can the state continue another request, or be altered.
  const other = await modern('tools/call', { name: 'confirm', arguments: { amount: 500 }, inputResponses: answer, requestState: state }, { path: '/mcp/alpha' });
  assert.match(other.body.error?.message ?? '', /continues another request/);
  const otherServer = await modern('tools/call', { name: 'confirm', arguments: { amount: 5 }, inputResponses: answer, requestState: state }, { path: '/mcp/beta' });
  assert.match(otherServer.body.error?.message ?? '', /continues another request/);
  const tampered = state.slice(0, -4) + (state.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  assert.match((await modern('tools/call', { name: 'confirm', arguments: { amount: 5 }, inputResponses: answer, requestState: tampered }, { path: '/mcp/alpha' })).body.error?.message ?? '', /altered/);
  assert.match((await modern('tools/call', { name: 'confirm', arguments: { amount: 5 }, inputResponses: answer, requestState: 'upstream-state-1' }, { path: '/mcp/alpha' })).body.error?.message ?? '', /not a requestState aam issued/);
  assert.equal(retries(), before, 'no refused retry reached the upstream');
  // The caller's own retry reaches the upstream with the upstream's own state and the answers.
  const done = await modern('tools/call', { name: 'confirm', arguments: { amount: 5 }, inputResponses: answer, requestState: state }, { path: '/mcp/alpha' });
  assert.equal(done.body.result?.resultType, 'complete', JSON.stringify(done.body));
  assert.equal(textOf(done.body.result), 'confirmed=true state=upstream-state-1');
  // The retry was decided again and recorded like any call.
  const statuses = (await toolEvents(gw, { type: 'tool.outcome' })).map((e) => e as { tool?: string; outcome?: { status?: string } }).filter((e) => e.tool === 'confirm').map((e) => e.outcome?.status);
  assert.ok(statuses.includes('input_required') && statuses.includes('ok'), JSON.stringify(statuses));
});

test('input_required with the MCP SDK\'s own 2026-07-28 client (v2): its elicitation handler answers aam\'s inputRequests and it retries with aam\'s sealed state, byte for byte, to the final result', async () => {
  const client = new ModernClient({ name: 'sdk-v2', version: '1.0.0' }, { capabilities: { elicitation: { form: {} } }, versionNegotiation: { mode: { pin: VERSION } } });
  const asked: string[] = [];
  client.setRequestHandler('elicitation/create', async (req) => { asked.push(String((req.params as { message?: string }).message)); return { action: 'accept', content: { ok: true } }; });
  await client.connect(new ModernTransport(new URL(`${gw.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  try {
    const from = seen.length;
    const done = await client.callTool({ name: 'confirm', arguments: { amount: 5 } });
    assert.equal(textOf(done), 'confirmed=true state=upstream-state-1', 'the upstream got its own state back through aam\'s seal');
    assert.deepEqual(asked, ['Really?']);
    const calls = seen.slice(from).filter((x) => x.body.method === 'tools/call');
    assert.equal(calls.length, 2, 'asked, then answered: one retry');
  } finally {
    await client.close();
  }
});

test('decide before you look: a caller denied a tool, resource or prompt gets the policy\'s -32001 whatever requestState it sends, learning nothing of the state', async () => {
  // navigator's own sealed state (a real one) and a junk one, presented by intruder, whose policy allows crm's mutate only.
  const ask = await modern('tools/call', { name: 'confirm', arguments: { amount: 5 } }, { path: '/mcp/alpha' });
  const stolen = String(ask.body.result?.requestState);
  assert.match(stolen, /^aam1\./);
  for (const requestState of [stolen, 'aam1.junk', 'junk']) {
    for (const [method, params] of [['tools/call', { name: 'delete_account', arguments: { id: 'a1' } }], ['resources/read', { uri: 'account://a1' }], ['prompts/get', { name: 'summarize_account', arguments: { id: 'a1' } }]] as const) {
      const r = await modern(method, { ...params, inputResponses: {}, requestState }, { path: '/mcp/crm', token: otherKey });
      assert.equal(r.body.error?.code, -32001, `${method} with ${requestState.slice(0, 9)}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.error!.message, /intruder-policy|no policy allows/);
      assert.doesNotMatch(r.body.error!.message, /requestState/);
    }
  }
});

test('input_required: the client\'s own capabilities go upstream; a 2025-11-25 session client gets a clear error instead of a relay', async () => {
  const noCaps = await modern('tools/call', { name: 'confirm', arguments: {} }, { path: '/mcp/alpha', caps: {} });
  assert.match(noCaps.body.error?.message ?? '', /elicitation/, 'a client without elicitation is not asked (aam forwards what it declared)');
  const { client } = await connectClient(gw, key, '/mcp/alpha');
  try {
    // aam declares no input capability for a session client, so a conformant upstream does not ask...
    await assert.rejects(client.callTool({ name: 'confirm', arguments: {} }), /Missing required client capability: elicitation/);
    // ...and one that asks anyway is refused, saying why.
    await assert.rejects(client.callTool({ name: 'pushy', arguments: {} }), /relays such multi round-trip requests to MCP 2026-07-28 clients only/);
  } finally { await client.close(); }
});

test('input guardrails: inputResponses of retries and every field of tasks/update reach the upstream only through the guardrail walker', async () => {
  const EMAIL = 'dana.leak@example.org';
  const TASKS = { elicitation: { form: {} }, extensions: { 'io.modelcontextprotocol/tasks': {} } };
  const from = seen.length;
  const sent = () => seen.slice(from).map((x) => JSON.stringify(x.body));
  // tools/call retry
  const ask = await modern('tools/call', { name: 'confirm', arguments: { amount: 7 } }, { path: '/mcp/alpha' });
  const done = await modern('tools/call', { name: 'confirm', arguments: { amount: 7 }, inputResponses: { approve: { action: 'accept', content: { ok: true, note: `mail ${EMAIL}` } } }, requestState: ask.body.result?.requestState }, { path: '/mcp/alpha' });
  assert.equal(done.body.result?.resultType, 'complete', JSON.stringify(done.body));
  // resources/read and prompts/get retries
  for (const [method, params] of [['resources/read', { uri: 'memo://guarded' }], ['prompts/get', { name: 'guarded', arguments: { topic: 'q3' } }]] as const) {
    const first = await modern(method, params, { path: '/mcp/alpha' });
    const again = await modern(method, { ...params, inputResponses: { who: { action: 'accept', content: { email: EMAIL } } }, requestState: first.body.result?.requestState }, { path: '/mcp/alpha' });
    assert.equal(again.body.result?.resultType, 'complete', `${method}: ${JSON.stringify(again.body)}`);
  }
  // tasks/update: inputResponses and any other field the client adds
  const taskId = String((await modern('tools/call', { name: 'longjob', arguments: {} }, { path: '/mcp/alpha', caps: TASKS })).body.result?.taskId);
  const u = await modern('tasks/update', { taskId, inputResponses: { size: { action: 'accept', content: { n: 3, owner: EMAIL } } }, note: EMAIL }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(u.status, 200, JSON.stringify(u.body));
  const bodies = sent();
  const retried = bodies.filter((b) => b.includes('inputResponses'));
  assert.equal(retried.length, 4, 'three retries and one tasks/update went upstream');
  for (const b of bodies) assert.ok(!b.includes(EMAIL), `the upstream got the raw value: ${b}`);
  for (const b of retried) assert.match(b, /\[EMAIL\]/, 'the redacted value went upstream instead');
  assert.match(retried.at(-1)!, /"note":"\[EMAIL\]"/, 'an extra tasks/update field is guarded too');
});

test('Tasks extension: a task id stays bounded whatever the creating call\'s arguments (a digest of them is sealed, not the arguments)', async () => {
  const TASKS = { elicitation: { form: {} }, extensions: { 'io.modelcontextprotocol/tasks': {} } };
  const idFor = async (args: Record<string, unknown>) => String((await modern('tools/call', { name: 'longjob', arguments: args }, { path: '/mcp/alpha', caps: TASKS })).body.result?.taskId);
  const small = await idFor({ size: 's' });
  const big = await idFor({ size: 'x'.repeat(64 * 1024), more: Array.from({ length: 500 }, (_, i) => ({ i })) });
  assert.match(big, /^aamtask1\./);
  assert.ok(big.length < 512, `task id of ${big.length} chars for 64 KB of arguments`);
  assert.ok(Math.abs(big.length - small.length) < 8, `the id does not grow with the arguments (${small.length} vs ${big.length})`);
  // It still works, and is decided like the creating call (resource alpha, action longjob) with the arguments' digest on record.
  const g = await modern('tasks/get', { taskId: big }, { path: '/mcp/alpha', caps: TASKS });
  assert.ok(g.body.result, JSON.stringify(g.body));
  const d = (await toolEvents(gw, { type: 'tool.decision', agent: 'navigator' })).map((e) => e as { method?: string; action?: string; args_digest?: string }).filter((e) => e.method === 'tasks/get').at(-1);
  assert.equal(d?.action, 'longjob');
  assert.match(d?.args_digest ?? '', /^sha256:[0-9a-f]{64}$/);
});

/** An open subscriptions/listen stream: the JSON-RPC messages received so far. */
async function listen(path: string, notifications: Record<string, unknown>, token = key, caps: Record<string, unknown> = {}): Promise<{ id: number; status: number; requestId: string | null; messages: Array<Record<string, any>>; close(): void }> {
  const id = Math.floor(Math.random() * 1e9);
  const body = { jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { notifications, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'spec-client', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': caps } } };
  if ('taskIds' in notifications) check('tasks:SubscriptionsListenRequest', body);
  const ac = new AbortController();
  const r = await fetch(`${gw.url}${path}`, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'subscriptions/listen' }, body: JSON.stringify(body) });
  const messages = (r.headers.get('content-type') ?? '').includes('text/event-stream') ? sseMessages(r.body) : [await r.json() as Record<string, any>];
  return { id, status: r.status, requestId: r.headers.get('x-request-id'), messages, close: () => ac.abort() };
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('subscriptions/listen: acknowledged per caller under policy; notifications reach only the streams that asked and may see them', async () => {
  const nav = await listen('/mcp/crm', { toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true, resourceSubscriptions: ['account://a1'] });
  const intr = await listen('/mcp/crm', { toolsListChanged: true, promptsListChanged: true, resourceSubscriptions: ['account://a1'] }, otherKey);
  const quiet = await listen('/mcp/alpha', { toolsListChanged: true });
  try {
    assert.equal(nav.status, 200);
    await until(() => nav.messages.length > 0 && intr.messages.length > 0 && quiet.messages.length > 0, 'acknowledgements');
    const ack = nav.messages[0];
    assert.equal(ack.method, 'notifications/subscriptions/acknowledged');
    assert.equal(ack.params._meta['io.modelcontextprotocol/subscriptionId'], nav.id);
    check('SubscriptionsAcknowledgedNotification', ack);
    assert.deepEqual(ack.params.notifications, { toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true, resourceSubscriptions: ['account://a1'] });
    assert.deepEqual(intr.messages[0].params.notifications, { toolsListChanged: true, promptsListChanged: true }, 'a URI the caller may not read is not acknowledged');
    // The intruder changes the upstream (its tools and its accounts).
    const m = await modern('tools/call', { name: 'mutate', arguments: { variant: 'listen-v2' } }, { path: '/mcp/crm', token: otherKey });
    assert.equal(m.status, 200, JSON.stringify(m.body));
    const got = (l: { messages: Array<Record<string, any>> }, method: string) => l.messages.some((x) => x.method === method);
    await until(() => ['resources/updated', 'tools/list_changed', 'prompts/list_changed', 'resources/list_changed'].every((m) => got(nav, `notifications/${m}`)), 'navigator\'s notifications');
    await until(() => intr.messages.some((x) => x.method === 'notifications/tools/list_changed'), 'intruder\'s tools/list_changed');
    const upd = nav.messages.find((x) => x.method === 'notifications/resources/updated')!;
    assert.equal(upd.params.uri, 'account://a1');
    assert.equal(upd.params._meta['io.modelcontextprotocol/subscriptionId'], nav.id);
    check('JSONRPCNotification', upd);
    for (const x of nav.messages) check('JSONRPCMessage', x);
    assert.ok(!intr.messages.some((x) => x.method === 'notifications/resources/updated'), 'no update for a resource the caller may not read');
    assert.ok(!got(intr, 'notifications/prompts/list_changed'), 'no prompts list_changed for a caller who may not get that server\'s prompts');
    for (const m of ['notifications/prompts/list_changed', 'notifications/resources/list_changed']) check('JSONRPCNotification', nav.messages.find((x) => x.method === m));
    assert.ok(!quiet.messages.some((x) => x.method !== 'notifications/subscriptions/acknowledged'), 'another server\'s changes do not reach /mcp/alpha');
  } finally { nav.close(); intr.close(); quiet.close(); }
  // A malformed filter is refused before any stream opens.
  const bad = await listen('/mcp/crm', { resourceSubscriptions: 'account://a1' });
  assert.equal(bad.status, 400);
  assert.equal(bad.messages[0].error.code, -32602);
});

test('subscriptions/listen is decided for the caller as it is now: a revoked key ends the stream, a narrowed policy stops resource updates, each on record', async () => {
  const { key: k, secret } = gw.g.rt.keys.create('navigator');
  const revoked = await listen('/mcp/crm', { toolsListChanged: true, resourceSubscriptions: ['account://a2'] }, secret);
  const narrowed = await listen('/mcp/crm', { toolsListChanged: true, resourceSubscriptions: ['account://a1'] });
  try {
    await until(() => revoked.messages.length > 0 && narrowed.messages.length > 0, 'acknowledgements');
    assert.deepEqual(narrowed.messages[0].params.notifications.resourceSubscriptions, ['account://a1']);
    // The key is revoked: the stream ends (an error for the listen request) within about a second, on record.
    gw.g.rt.keys.revoke(k.id);
    await until(() => revoked.messages.some((x) => x.id === revoked.id && x.error), 'the revoked caller\'s stream to end');
    const end = revoked.messages.find((x) => x.id === revoked.id)!;
    assert.equal(end.error.code, -32001);
    assert.match(end.error.message, /subscriptions\/listen ended: the API key it authenticated with is no longer valid/);
    // The policy narrows: navigator may no longer read crm's resources (its tools it still sees).
    writeFileSync(gw.configPath, config(upstreamUrl, false, ['mutate', 'search_accounts']));
    assert.equal(gw.g.rt.reload(), null);
    const m = await modern('tools/call', { name: 'mutate', arguments: { variant: 'narrowed' } }, { path: '/mcp/crm', token: otherKey });
    assert.equal(m.status, 200, JSON.stringify(m.body));
    // The upstream announces the tools change before the update; aam relays the first only after re-listing.
    await until(() => narrowed.messages.some((x) => x.method === 'notifications/tools/list_changed'), 'tools/list_changed under the new policy');
    assert.ok(!narrowed.messages.some((x) => x.method === 'notifications/resources/updated'), 'no resource update once the caller may not read it');
    assert.ok(!revoked.messages.some((x) => x.method === 'notifications/tools/list_changed'), 'nothing after the revocation');
    // Filed under the listen request (aam's x-request-id of it), so `aam audit show ID` tells the stream's story.
    assert.match(revoked.requestId ?? '', /^req_/);
    const ended = (await toolEvents(gw, { type: 'tool.rejected' })).map((e) => e as { method?: string; key_id?: string; request_id?: string; outcome?: { status?: string } }).filter((e) => e.outcome?.status === 'listen_ended');
    assert.deepEqual(ended.map((e) => [e.method, e.key_id, e.request_id]), [['subscriptions/listen', k.id, revoked.requestId]]);
    const denied = (await toolEvents(gw, { type: 'tool.decision', agent: 'navigator' })).map((e) => e as { method?: string; uri?: string; request_id?: string; decision?: { effect?: string } })
      .filter((e) => e.method === 'subscriptions/listen' && e.uri === 'account://a1');
    assert.ok(denied.length >= 1 && denied.every((e) => e.decision?.effect === 'deny' && e.request_id === narrowed.requestId), JSON.stringify(denied));
    // The subscription it was granted at the start is on record under the same id.
    const granted = (await toolEvents(gw, { type: 'tool.decision', agent: 'navigator' })).map((e) => e as { server?: string; request_id?: string; decision?: { effect?: string } })
      .filter((e) => e.server === 'crm' && e.decision?.effect === 'allow' && e.request_id === narrowed.requestId);
    assert.equal(granted.length, 1, 'the listen\'s resource subscription decided under its request id');
  } finally {
    revoked.close(); narrowed.close();
    writeFileSync(gw.configPath, config(upstreamUrl));
    gw.g.rt.reload();
  }
});

test('subscriptions/listen through a 2026-07-28 upstream: its resource updates and notifications/tasks reach the caller, decided, scrubbed and with the caller\'s own task id', async () => {
  const TASKS = { elicitation: { form: {} }, extensions: { 'io.modelcontextprotocol/tasks': {} } };
  const taskId = String((await modern('tools/call', { name: 'longjob', arguments: {} }, { path: '/mcp/alpha', caps: TASKS })).body.result?.taskId);
  const noExt = await listen('/mcp/alpha', { taskIds: [taskId] });
  assert.equal(noExt.status, 400);
  assert.equal(noExt.messages[0].error.code, -32021, 'taskIds need the Tasks extension declared');
  check('tasks:MissingTasksCapabilityError', noExt.messages[0]);
  const nav = await listen('/mcp/alpha', { resourceSubscriptions: ['memo://live'], taskIds: [taskId] }, key, TASKS);
  const intr = await listen('/mcp/alpha', { taskIds: [taskId] }, otherKey, TASKS);
  const open = () => upstreamStreams.filter((st) => st.server === 'alpha' && !st.closed);
  try {
    await until(() => nav.messages.length > 0 && intr.messages.length > 0, 'acknowledgements');
    assert.deepEqual(nav.messages[0].params.notifications, { resourceSubscriptions: ['memo://live'], taskIds: [taskId] });
    check('tasks:SubscriptionsAcknowledgedNotification', nav.messages[0]);
    assert.deepEqual(intr.messages[0].params.notifications, {}, 'another caller\'s task is not acknowledged');
    // aam listens to the upstream in turn, naming the upstream's own task id (never the caller's sealed one).
    await until(() => open().some((st) => JSON.stringify(st.notifications) === JSON.stringify({ resourceSubscriptions: ['memo://live'], taskIds: ['up-task-1'] })), 'aam\'s listen stream to alpha');
    pushUpstream('alpha', { method: 'notifications/resources/updated', params: { uri: 'memo://live' } });
    // Not a DetailedTask (completed without its result; an unknown status): dropped, and the stream goes on.
    pushUpstream('alpha', { method: 'notifications/tasks', params: { ...upTask('up-task-1', 'completed'), ttlMs: 60_000 } });
    pushUpstream('alpha', { method: 'notifications/tasks', params: { ...upTask('up-task-1', 'paused'), ttlMs: 60_000 } });
    const done = { method: 'notifications/tasks', params: { ...upTask('up-task-1', 'completed'), ttlMs: 86_400_000, result: { content: [{ type: 'text', text: `finished with ${SECRET}` }] } } };
    check('tasks:TaskStatusNotification', { jsonrpc: '2.0', ...done });
    pushUpstream('alpha', done);
    await until(() => ['notifications/resources/updated', 'notifications/tasks'].every((m) => nav.messages.some((x) => x.method === m)), 'navigator\'s notifications');
    assert.equal(nav.messages.find((x) => x.method === 'notifications/resources/updated')!.params.uri, 'memo://live');
    const relayed = nav.messages.filter((x) => x.method === 'notifications/tasks');
    assert.equal(relayed.length, 1, 'only the DetailedTask is relayed');
    const t = relayed[0];
    check('tasks:TaskStatusNotification', t);
    assert.equal(t.params.taskId, taskId, 'the caller\'s own task id');
    assert.equal(t.params.status, 'completed');
    assert.equal(t.params.ttlMs, 60_000, 'the ttl aam honours the id for, not the upstream\'s longer one');
    assert.equal(t.params._meta['io.modelcontextprotocol/subscriptionId'], nav.id);
    const text = JSON.stringify(t);
    assert.ok(!text.includes(SECRET) && !text.includes('up-task-1'), text);
    assert.match(text, /\[REDACTED:up-token\]/);
    assert.ok(!intr.messages.some((x) => x.method === 'notifications/tasks'), 'nothing of another caller\'s task');
    const d = (await toolEvents(gw, { type: 'tool.decision', agent: 'navigator' })).map((e) => e as { method?: string; action?: string; request_id?: string }).filter((e) => e.method === 'notifications/tasks');
    assert.ok(d.length >= 1 && d.every((e) => e.action === 'longjob'), 'each notification decided like the creating call');
    assert.ok(d.every((e) => e.request_id === nav.requestId), `filed under the listen request ${nav.requestId}: ${JSON.stringify(d.map((e) => e.request_id))}`);
  } finally { nav.close(); intr.close(); }
  await until(() => open().length === 0, 'aam to end its upstream stream once nobody listens');
});

test('subscriptions/listen through a 2026-07-28 upstream: aam asks it for list_changed too, and relays each only to the streams that asked and may see the list', async () => {
  const nav = await listen('/mcp/alpha', { toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true });
  const intr = await listen('/mcp/alpha', { toolsListChanged: true }, otherKey);
  const open = () => upstreamStreams.filter((st) => st.server === 'alpha' && !st.closed);
  const lists = (l: { messages: Array<Record<string, any>> }) => l.messages.filter((x) => /^notifications\/\w+\/list_changed$/.test(String(x.method))).map((x) => x.method as string);
  try {
    await until(() => nav.messages.length > 0 && intr.messages.length > 0, 'acknowledgements');
    assert.deepEqual(nav.messages[0].params.notifications, { toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true });
    // One stream to alpha (its credential is the server's, the same for every caller), naming every list wanted.
    await until(() => open().some((st) => st.notifications.toolsListChanged === true && st.notifications.promptsListChanged === true && st.notifications.resourcesListChanged === true), 'aam\'s listen stream to alpha asking for list changes');
    await until(() => open().length === 1, 'a single stream to alpha');
    pushUpstream('alpha', { method: 'notifications/prompts/list_changed', params: {} });
    pushUpstream('alpha', { method: 'notifications/resources/list_changed', params: {} });
    await until(() => lists(nav).length === 2, 'navigator\'s prompts and resources list_changed');
    assert.deepEqual(lists(nav).sort(), ['notifications/prompts/list_changed', 'notifications/resources/list_changed']);
    for (const x of nav.messages.slice(1)) { assert.equal(x.params._meta['io.modelcontextprotocol/subscriptionId'], nav.id); check('JSONRPCNotification', x); }
    // The tools changed upstream: aam lists them again and tells both callers (each may see alpha's tools).
    const from = seen.length;
    listing.extra = ['announced'];
    pushUpstream('alpha', { method: 'notifications/tools/list_changed', params: {} });
    await until(() => lists(nav).includes('notifications/tools/list_changed') && lists(intr).includes('notifications/tools/list_changed'), 'tools/list_changed to both');
    assert.ok(listsOf('alpha', from).length >= 1, 'aam listed alpha\'s tools again');
    assert.deepEqual(lists(intr), ['notifications/tools/list_changed'], 'nothing the intruder did not ask for');
  } finally { listing.extra = []; nav.close(); intr.close(); }
  await until(() => open().length === 0, 'aam to end its upstream stream once nobody listens');
});

test('subscriptions/listen through an upstream whose credential is per caller (on-behalf-of): one upstream stream per caller, each with its own credential and updates; a revoked caller\'s stream ends', async () => {
  const { key: k, secret } = gw.g.rt.keys.create('intruder');
  const nav = await listen('/mcp/gamma', { resourceSubscriptions: ['memo://g'] });
  const intr = await listen('/mcp/gamma', { resourceSubscriptions: ['memo://g'] }, secret);
  const open = () => upstreamStreams.filter((st) => st.server === 'gamma' && !st.closed);
  const updates = (l: { messages: Array<Record<string, any>> }) => l.messages.filter((x) => x.method === 'notifications/resources/updated').length;
  try {
    await until(() => nav.messages.length > 0 && intr.messages.length > 0, 'acknowledgements');
    assert.deepEqual(intr.messages[0].params.notifications, { resourceSubscriptions: ['memo://g'] });
    await until(() => open().length === 2, 'one upstream stream per caller');
    assert.deepEqual(open().map((st) => st.sub).sort(), ['spiffe://prod/agent/intruder', 'spiffe://prod/agent/navigator'], 'each stream carries its own caller\'s on-behalf-of token');
    for (const st of open()) assert.deepEqual(st.notifications, { resourceSubscriptions: ['memo://g'] });
    // An update on navigator's stream is navigator's alone.
    for (const st of open()) if (st.sub.endsWith('/navigator')) st.write({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'memo://g' } });
    await until(() => updates(nav) === 1, 'navigator\'s update');
    for (const st of open()) if (st.sub.endsWith('/intruder')) st.write({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'memo://g' } });
    await until(() => updates(intr) === 1, 'intruder\'s update');
    assert.equal(updates(nav), 1, 'the intruder\'s stream does not feed navigator');
    // The intruder's key is revoked: its listen stream ends, and so does its upstream stream (it was the last on it).
    gw.g.rt.keys.revoke(k.id);
    await until(() => intr.messages.some((x) => x.id === intr.id && x.error), 'the revoked caller\'s stream to end');
    await until(() => open().length === 1, 'the revoked caller\'s upstream stream to end');
    assert.equal(open()[0].sub, 'spiffe://prod/agent/navigator');
  } finally { nav.close(); intr.close(); }
  await until(() => open().length === 0, 'aam to end its upstream streams once nobody listens');
});

test('subscriptions/listen: a narrowed policy ends the caller\'s own list-only upstream stream at once, on record; a widened one listens again', async () => {
  const nav = await listen('/mcp/gamma', { toolsListChanged: true });
  const mine = () => upstreamStreams.filter((st) => st.server === 'gamma' && !st.closed && st.sub.endsWith('/navigator'));
  const narrowed = async () => (await toolEvents(gw, { type: 'tool.rejected', agent: 'navigator' })).map((e) => e as { server?: string; method?: string; outcome?: { status?: string } })
    .filter((e) => e.outcome?.status === 'listen_narrowed');
  try {
    await until(() => nav.messages.length > 0, 'the acknowledgement');
    await until(() => mine().length === 1 && mine()[0].notifications.toolsListChanged === true, 'navigator\'s own (on-behalf-of) stream to gamma, asking for tools list changes');
    assert.equal((await narrowed()).length, 0);
    // navigator may no longer use gamma: its own upstream stream closes with the reload, not when it hangs up.
    writeFileSync(gw.configPath, config(upstreamUrl, false, ['*'], { navGamma: false }));
    assert.equal(gw.g.rt.reload(), null);
    await until(() => mine().length === 0, 'navigator\'s upstream stream to gamma to close', 10_000);
    assert.deepEqual((await narrowed()).map((e) => [e.server, e.method]), [['gamma', 'subscriptions/listen']]);
    // Its own stream to aam stays open; with gamma allowed again, aam listens for it again.
    writeFileSync(gw.configPath, config(upstreamUrl));
    assert.equal(gw.g.rt.reload(), null);
    await until(() => mine().length === 1, 'navigator\'s stream to gamma again');
    assert.equal((await narrowed()).length, 1, 'a widening is not a narrowing');
  } finally {
    nav.close();
    writeFileSync(gw.configPath, config(upstreamUrl));
    gw.g.rt.reload();
  }
  await until(() => mine().length === 0, 'aam to end its upstream stream once nobody listens');
});

test('subscriptions/listen: the lists of an upstream that was down when the stream opened are asked for once it is back, and their changes relayed', async () => {
  deltaDown = true;
  const open = () => upstreamStreams.filter((st) => st.server === 'delta' && !st.closed);
  const lists = (l: { messages: Array<Record<string, any>> }) => l.messages.filter((x) => /^notifications\/\w+\/list_changed$/.test(String(x.method))).map((x) => x.method as string);
  writeFileSync(gw.configPath, config(upstreamUrl, false, ['*'], { delta: true }));
  assert.equal(gw.g.rt.reload(), null);
  const nav = await listen('/mcp/delta', { toolsListChanged: true, promptsListChanged: true });
  try {
    await until(() => nav.messages.length > 0, 'the acknowledgement');
    assert.deepEqual(nav.messages[0].params.notifications, { toolsListChanged: true, promptsListChanged: true });
    assert.notEqual(gw.g.rt.tools!.mcp!.status().delta.state, 'ready', 'delta is down');
    // It comes back (aam reconnects with backoff): aam asks it for the lists, and tells the caller they changed.
    deltaDown = false;
    await until(() => open().some((st) => st.notifications.toolsListChanged === true && st.notifications.promptsListChanged === true), 'aam\'s listen stream to delta, once it is back', 40_000);
    await until(() => lists(nav).includes('notifications/tools/list_changed') && lists(nav).includes('notifications/prompts/list_changed'), 'tools and prompts list_changed on delta\'s return');
    const prompts = () => lists(nav).filter((m) => m === 'notifications/prompts/list_changed').length;
    const before = prompts();
    pushUpstream('delta', { method: 'notifications/prompts/list_changed', params: {} });
    await until(() => prompts() === before + 1, 'delta\'s own prompts list_changed relayed');
    for (const x of nav.messages.slice(1)) assert.equal(x.params._meta['io.modelcontextprotocol/subscriptionId'], nav.id);
  } finally {
    nav.close();
    deltaDown = false;
    writeFileSync(gw.configPath, config(upstreamUrl));
    gw.g.rt.reload();
  }
  await until(() => open().length === 0, 'aam to end its upstream stream to delta');
});

test('subscriptions/listen: an upstream that goes down after it was listened to is tried again with a capped backoff, and once back the lists it may have changed are relayed', async () => {
  const open = () => upstreamStreams.filter((st) => st.server === 'delta' && !st.closed);
  const lists = (l: { messages: Array<Record<string, any>> }) => l.messages.filter((x) => /^notifications\/\w+\/list_changed$/.test(String(x.method))).map((x) => x.method as string);
  writeFileSync(gw.configPath, config(upstreamUrl, false, ['*'], { delta: true }));
  assert.equal(gw.g.rt.reload(), null);
  const nav = await listen('/mcp/delta', { promptsListChanged: true, resourcesListChanged: true });
  /** delta goes down, ending aam's stream to it (as a restarting server does). */
  const down = () => { deltaDown = true; deltaListenTries.length = 0; for (const st of open()) st.end(); return Date.now(); };
  try {
    await until(() => nav.messages.length > 0, 'the acknowledgement');
    await until(() => open().length === 1, 'aam\'s listen stream to delta');
    const heard = lists(nav).length;
    // Tried again after about 1 s, then 2 s (each +-25 %): not every second (the cap: test/mcp-listen-backoff).
    down();
    // A try of the client's own reconnection may come between (clean-clone CI: 1,241 ms between the
    // first two), so: two tries the backoff spaced (>= 1.5 s), among the first three. Every second
    // (750-1250 ms with jitter) never gets there.
    const spaced = () => deltaListenTries.length >= 2 && deltaListenTries.at(-1)! - deltaListenTries.at(-2)! >= 1500;
    await until(() => spaced() || deltaListenTries.length > 3, 'two tries spaced by the backoff while delta is down', 40_000);
    assert.ok(spaced() && deltaListenTries.length <= 3, `the tries back off (${deltaListenTries.map((t, i) => i ? t - deltaListenTries[i - 1] : 0).slice(1).join(', ')} ms apart)`);
    assert.equal(lists(nav).length, heard, 'nothing relayed while delta is down');
    // Back (the next try, 4 s later): listened to again, and the caller told that the lists it asked for may have changed.
    deltaDown = false;
    await until(() => open().length === 1, 'aam\'s listen stream to delta, once it is back', 40_000);
    await until(() => lists(nav).slice(heard).sort().join() === 'notifications/prompts/list_changed,notifications/resources/list_changed', 'prompts and resources list_changed on delta\'s return');
    for (const x of nav.messages.slice(1)) assert.equal(x.params._meta['io.modelcontextprotocol/subscriptionId'], nav.id);
    // A stream that brings a notification resets the backoff: the first try after the next outage comes after about 1 s, not 16 s.
    const relayed = lists(nav).length;
    pushUpstream('delta', { method: 'notifications/prompts/list_changed', params: {} });
    await until(() => lists(nav).length > relayed, 'the prompts list_changed delta sent once back');
    const at = down();
    await until(() => deltaListenTries.length >= 1, 'a try soon after delta went down again', 20_000);
    assert.ok(deltaListenTries[0] - at < 8000, `first try ${deltaListenTries[0] - at} ms after the outage`);
  } finally {
    nav.close();
    deltaDown = false;
    writeFileSync(gw.configPath, config(upstreamUrl));
    gw.g.rt.reload();
  }
  await until(() => open().length === 0, 'aam to end its upstream stream to delta');
});

test('Tasks extension: a task is its creator\'s alone, each tasks/* request is decided like the creating call, and results are scrubbed', async () => {
  const TASKS = { elicitation: { form: {} }, extensions: { 'io.modelcontextprotocol/tasks': {} } };
  const taskDecisions = async () => (await toolEvents(gw, { type: 'tool.decision', agent: 'navigator' })).map((e) => e as { method?: string; resource?: string; action?: string }).filter((e) => e.method?.startsWith('tasks/'));
  const decidedBefore = (await taskDecisions()).length;
  const discover = await modern('server/discover', {}, { path: '/mcp/alpha' });
  assert.ok((discover.body.result!.capabilities as { extensions?: Record<string, unknown> }).extensions?.['io.modelcontextprotocol/tasks'], 'aam advertises the extension');
  check('tasks:ServerCapabilities', discover.body.result!.capabilities);
  const capsBefore = job.caps.length;
  const created = await modern('tools/call', { name: 'longjob', arguments: { size: 'big' } }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const r = created.body.result!;
  assert.equal(r.resultType, 'task');
  assert.equal(r.status, 'working');
  assert.equal(r.statusMessage, 'queued');
  assert.equal(r.ttlMs, 60_000, 'the ttl aam honours the id for (the upstream\'s, within 24 h)');
  const taskId = String(r.taskId);
  assert.match(taskId, /^aamtask1\./);
  assert.ok(!taskId.includes('up-task-1'), 'the upstream\'s task id is sealed');
  // Another identity: the task does not exist for it; nothing reaches the upstream.
  const seenBefore = job.seen.length;
  for (const method of ['tasks/get', 'tasks/update', 'tasks/cancel']) {
    const stolen = await modern(method, { taskId, inputResponses: {} }, { path: '/mcp/alpha', token: otherKey, caps: TASKS });
    assert.equal(stolen.body.error?.code, -32602, JSON.stringify(stolen.body));
    assert.match(stolen.body.error!.message, /unknown task/);
  }
  // Nor on another endpoint's server, nor with an id aam did not seal.
  assert.match((await modern('tasks/get', { taskId }, { path: '/mcp/beta', caps: TASKS })).body.error?.message ?? '', /unknown task/);
  assert.match((await modern('tasks/get', { taskId: 'up-task-1' }, { path: '/mcp/alpha', caps: TASKS })).body.error?.message ?? '', /unknown task/);
  assert.equal(job.seen.length, seenBefore);
  // The creator polls (on /mcp too), answers the input request, and gets the result.
  const g1 = await modern('tasks/get', { taskId }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(g1.body.result?.status, 'working', JSON.stringify(g1.body));
  assert.equal(g1.body.result?.taskId, taskId, 'the client sees its own task id back');
  assert.equal(g1.body.result?.resultType, 'complete');
  assert.equal(g1.body.result?.ttlMs, 60_000, 'not the upstream\'s later 24 h: the id lapses with the ttl it was created with');
  assert.equal(g1.body.result?.pollIntervalMs, 50);
  const g2 = await modern('tasks/get', { taskId }, { path: '/mcp', caps: TASKS });
  assert.equal(g2.body.result?.status, 'input_required');
  assert.ok((g2.body.result?.inputRequests as Record<string, unknown>).size);
  const u = await modern('tasks/update', { taskId, inputResponses: { size: { action: 'accept', content: { n: 3 } } } }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(u.status, 200, JSON.stringify(u.body));
  assert.deepEqual(u.body.result, { resultType: 'complete' }, 'an empty acknowledgement: nothing of the upstream\'s answer');
  const g3 = await modern('tasks/get', { taskId }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(g3.body.result?.status, 'completed');
  const text = JSON.stringify(g3.body.result);
  assert.match(text, /job done with/);
  assert.ok(!text.includes(SECRET), 'the result is scrubbed like any tool result');
  assert.deepEqual(job.seen.slice(seenBefore), ['tasks/get', 'tasks/get', 'tasks/update', 'tasks/get']);
  // aam's own tasks/* requests declare the extension they belong to.
  assert.deepEqual(job.caps.slice(capsBefore), Array(4).fill({ extensions: { 'io.modelcontextprotocol/tasks': {} } }));
  // Each was decided as the creating call: resource alpha, action longjob, by navigator's policy.
  const decisions = (await taskDecisions()).slice(decidedBefore);
  assert.equal(decisions.length, 4);
  assert.ok(decisions.every((e) => e.resource === 'alpha' && e.action === 'longjob'), JSON.stringify(decisions));
  const cancelled = await modern('tasks/cancel', { taskId }, { path: '/mcp/alpha', caps: TASKS });
  assert.deepEqual(cancelled.body.result, { resultType: 'complete' }, JSON.stringify(cancelled.body));
  // A client without the extension gets a plain result (aam forwards only what the client declared).
  const plain = await modern('tools/call', { name: 'longjob', arguments: {} }, { path: '/mcp/alpha', caps: {} });
  assert.equal(plain.body.result?.resultType, 'complete');
  assert.equal(textOf(plain.body.result), 'done at once');
  // The policy changes to deny the tool: its open task is denied too, and the upstream is not asked.
  const again = String((await modern('tools/call', { name: 'longjob', arguments: { size: 'small' } }, { path: '/mcp/alpha', caps: TASKS })).body.result?.taskId);
  writeFileSync(gw.configPath, config(upstreamUrl, true));
  assert.equal(gw.g.rt.reload(), null);
  const seenNow = job.seen.length;
  const denied = await modern('tasks/get', { taskId: again }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(denied.body.error?.code, -32001, JSON.stringify(denied.body));
  assert.match(denied.body.error!.message, /navigator-policy/);
  assert.equal(job.seen.length, seenNow);
  assert.deepEqual(upstreamFaults, [], 'every Tasks message aam sent the upstream matched the extension\'s schema');
});

test('Tasks extension: no task for a request that did not declare it (-32021, or a clear error on a session); an upstream task that is not the extension\'s is refused (502) without its values', async () => {
  const TASKS = { extensions: { 'io.modelcontextprotocol/tasks': {} } };
  // An upstream that answers with a task whatever was declared: the client that did not declare it gets -32021 (HTTP 400), naming the extension.
  const undeclared = await modern('tools/call', { name: 'pushytask', arguments: {} }, { path: '/mcp/alpha', caps: { elicitation: { form: {} } } });
  assert.equal(undeclared.status, 400, JSON.stringify(undeclared.body));
  check('tasks:MissingTasksCapabilityError', undeclared.body);
  assert.equal(undeclared.body.result, undefined);
  assert.match(undeclared.body.error!.message, /io\.modelcontextprotocol\/tasks/);
  assert.equal((await modern('tools/call', { name: 'pushytask', arguments: {} }, { path: '/mcp/alpha', caps: TASKS })).body.result?.resultType, 'task', 'declared: relayed');
  const { client } = await connectClient(gw, key, '/mcp/alpha');
  try {
    await assert.rejects(client.callTool({ name: 'pushytask', arguments: {} }), /relays to MCP 2026-07-28 clients only/);
  } finally { await client.close(); }
  // No ttl (null: unlimited upstream): aam honours the id for its default hour, and says so.
  const odd = await modern('tools/call', { name: 'oddjob', arguments: { kind: 'nullttl' } }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(odd.body.result?.ttlMs, 3_600_000, JSON.stringify(odd.body));
  // Shapes that are not a Task: an unknown status, no timestamps; a tasks/get answer without the payload its status carries.
  for (const kind of ['running', 'undated']) {
    const bad = await modern('tools/call', { name: 'oddjob', arguments: { kind } }, { path: '/mcp/alpha', caps: TASKS });
    assert.equal(bad.body.error?.code, -32603, JSON.stringify(bad.body));
    assert.match(bad.body.error!.message, kind === 'running' ? /status is missing or none of working/ : /no createdAt/);
    assert.ok(!/running|REDACTED/.test(JSON.stringify(bad.body)), `the upstream's value is not quoted: ${bad.body.error!.message}`);
  }
  // A task for a read is not a response the extension allows: refused, the upstream's id not relayed.
  const read = await modern('resources/read', { uri: 'memo://tasky' }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(read.body.error?.code, -32603, JSON.stringify(read.body));
  assert.match(read.body.error!.message, /allows only for tools\/call/);
  assert.ok(!JSON.stringify(read.body).includes('up-task-read'));
  // 2026-07-28 has no tasks/result (-32601), and a `task` parameter on tools/call is not passed on (SEP-2663, backward compatibility).
  assert.equal((await modern('tasks/result', { taskId: odd.body.result!.taskId }, { path: '/mcp/alpha', caps: TASKS })).body.error?.code, -32601);
  const from = seen.length;
  await modern('tools/call', { name: 'whoami', arguments: {}, task: { ttl: 1000 } }, { path: '/mcp/alpha', caps: TASKS });
  assert.ok(seen.slice(from).some((x) => x.body.method === 'tools/call') && seen.slice(from).every((x) => !('task' in x.body.params)), 'the legacy task parameter stays with aam');
  const incomplete = await modern('tasks/get', { taskId: odd.body.result!.taskId }, { path: '/mcp/alpha', caps: TASKS });
  assert.equal(incomplete.body.error?.code, -32603, JSON.stringify(incomplete.body));
  assert.match(incomplete.body.error!.message, /a completed task must carry result/);
  assert.deepEqual(upstreamFaults, []);
});

test('Tasks extension schema (transcribed from SEP-2663 at b0f60ba5): the check is live, a wrong shape fails it', () => {
  const task = { taskId: 't', status: 'completed', createdAt: '2026-08-01T10:00:00Z', lastUpdatedAt: '2026-08-01T10:00:01Z', ttlMs: 60_000, result: { content: [] } };
  check('tasks:GetTaskResult', { resultType: 'complete', ...task });
  const wrong: Array<[string, unknown]> = [
    ['tasks:GetTaskResult', { resultType: 'complete', ...task, status: 'running' }],
    ['tasks:GetTaskResult', { resultType: 'complete', ...task, result: undefined }],
    ['tasks:GetTaskResult', { ...task, resultType: 'task' }],
    ['tasks:CreateTaskResult', { resultType: 'task', taskId: 't', status: 'working', createdAt: task.createdAt, ttlMs: 1 }],
    ['tasks:CreateTaskResult', { resultType: 'complete', ...task }],
    ['tasks:UpdateTaskRequest', { jsonrpc: '2.0', id: 1, method: 'tasks/update', params: { taskId: 't' } }],
    ['tasks:GetTaskRequest', { jsonrpc: '2.0', id: 1, method: 'tasks/get', params: { id: 't' } }],
    ['tasks:TaskStatusNotification', { jsonrpc: '2.0', method: 'notifications/tasks', params: { ...task, status: 'failed' } }],
    ['tasks:MissingTasksCapabilityError', { jsonrpc: '2.0', id: 1, error: { code: -32021, message: 'Missing required client capability' } }],
    ['tasks:ServerCapabilities', { tools: {} }],
  ];
  for (const [def, v] of wrong) assert.throws(() => check(def, JSON.parse(JSON.stringify(v))), (e: Error) => e.message.startsWith(`${def}: `), `${def} accepted ${JSON.stringify(v)}`);
});

test('progress: a 2026-07-28 request with a progressToken gets notifications/progress over SSE, then its result; without one, plain JSON', async () => {
  const call = async (meta: Record<string, unknown>) => {
    const body = { jsonrpc: '2.0', id: 77, method: 'tools/call', params: { name: 'slow', arguments: { ms: 200 }, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'spec-client', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {}, ...meta } } };
    const r = await fetch(`${gw.url}/mcp/crm`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${key}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/call', 'mcp-name': 'slow' }, body: JSON.stringify(body) });
    return { type: r.headers.get('content-type') ?? '', text: await r.text() };
  };
  const streamed = await call({ progressToken: 'p-1' });
  assert.match(streamed.type, /text\/event-stream/);
  const events = streamed.text.split('\n\n').map((e) => e.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('')).filter(Boolean).map((d) => JSON.parse(d) as Record<string, any>);
  const progress = events.filter((e) => e.method === 'notifications/progress');
  // The upstream sends 1..4; the last may race its own result in the upstream client, so at least the first ones, in order.
  const values = progress.map((e) => e.params.progress as number);
  assert.ok(values.length >= 2 && values.every((v, i) => v === i + 1), streamed.text);
  assert.ok(progress.every((e) => e.params.progressToken === 'p-1' && e.params.total === 4));
  for (const e of progress) check('ProgressNotification', e);
  check('CallToolResultResponse', events.at(-1));
  const last = events.at(-1)!;
  assert.equal(last.id, 77);
  assert.equal(last.result.resultType, 'complete');
  assert.equal(textOf(last.result), 'done');
  const plain = await call({});
  assert.match(plain.type, /application\/json/);
  assert.equal(textOf((JSON.parse(plain.text) as { result: unknown }).result), 'done');
});

test('input_required on resources/read and prompts/get: relayed with aam\'s sealed state, bound to the caller and the request', async () => {
  for (const [method, params] of [['resources/read', { uri: 'memo://guarded' }], ['prompts/get', { name: 'guarded', arguments: { topic: 'q3' } }]] as const) {
    const ask = await modern(method, params, { path: '/mcp/alpha' });
    assert.equal(ask.body.result?.resultType, 'input_required', `${method}: ${JSON.stringify(ask.body)}`);
    assert.ok(!('cacheScope' in ask.body.result!), 'an interim result carries no caching hints');
    check('InputRequiredResult', ask.body.result);
    const state = String(ask.body.result!.requestState);
    assert.match(state, /^aam1\./);
    const stolen = await modern(method, { ...params, inputResponses: {}, requestState: state }, { path: '/mcp/alpha', token: otherKey });
    assert.match(stolen.body.error?.message ?? '', /issued to another identity/, method);
    if (method === 'prompts/get') {
      const other = await modern(method, { ...params, arguments: { topic: 'q4' }, inputResponses: {}, requestState: state }, { path: '/mcp/alpha' });
      assert.match(other.body.error?.message ?? '', /continues another request/);
    }
    const done = await modern(method, { ...params, inputResponses: {}, requestState: state }, { path: '/mcp/alpha' });
    assert.equal(done.body.result?.resultType, 'complete', JSON.stringify(done.body));
    assert.match(JSON.stringify(done.body.result), /the guarded (memo|prompt)/);
  }
});
