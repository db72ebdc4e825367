// Architecture tests for the trust seams (DESIGN.md "Trust boundaries"): a rule that must hold
// everywhere lives at a seam every path passes. These fail when a new path goes around a seam:
// - egress: the only HTTP server is built with the egress door as its response class, and a new
//   handler that writes a credential straight to the response (headers, chunks, binary, end) still
//   sends only [REDACTED:...]; evidence recorded from upstream text never puts it on disk;
// - egress on connections aam opens: every outbound HTTP call in src/ is listed below with where
//   its bytes go; the only one that goes to an agent is the door's request side (postToAgent),
//   so a new path that posts to an agent's URL around the door fails until it goes through it;
// - guardrails: planes reach guardrails only through the access path (the one walker), never the
//   text-level engine, so no plane can scan a subset of what the agent sends; every field an MCP
//   2026-07-28 client sends is classified, and the ones forwarded upstream pass guardInbound.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { createServer, type Routes } from '../src/server/http.ts';
import { auditOf } from './helpers/e2e.ts';
import { createServer as createPlainServer } from 'node:http';
import { postToAgent } from '../src/access/egress.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const SECRET = 'sk-proj-ARCHtest9f8e7d6c5b4a3928171605aZ';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}
const src = () => files(join(ROOT, 'src')).map((f) => ({ path: relative(ROOT, f), text: readFileSync(f, 'utf8') }));

test('one HTTP server, created with the egress door as its response class', () => {
  // node:http and node:https may also come through src/lib/node-http.ts (required, not imported: see there).
  const creators = src().filter((f) => /import\s*\{[^}]*\bcreate(Secure)?Server\b[^}]*\}\s*from\s*'(node:(https?|http2|net|tls)|[./]*lib\/node-http\.ts)'|\b(http|https|http2|net|tls)(\(\))?\.create(Secure)?Server\(/.test(f.text));
  assert.deepEqual(creators.map((f) => f.path), ['src/server/http.ts'], 'only src/server/http.ts may create HTTP servers');
  const http = readFileSync(join(ROOT, 'src/server/http.ts'), 'utf8');
  assert.match(http, /ServerResponse: EgressResponse/, 'the server must use EgressResponse for every response');
  const opened = http.search(/res\.open\(rt\.egress[,)]/);
  assert.ok(opened > 0 && opened < http.indexOf('handler(ctx)'), 'the listener opens the door before any handler');
});

test('nothing writes around the door: no raw socket writes, no second response class', () => {
  const offenders = src().filter((f) => f.path !== 'src/access/egress.ts'
    && /\.(socket|connection)\s*\??\.\s*(write|end)\s*\(|_writeRaw|extends ServerResponse/.test(f.text));
  assert.deepEqual(offenders.map((f) => f.path), []);
});

/**
 * Every outbound HTTP call in src/ (file -> the URL expression it is given) and where it goes.
 * Bytes for an agent (a URL an agent handed aam: an A2A push webhook) leave only through the door.
 */
const OUTBOUND: Record<string, Record<string, string>> = {
  'src/access/egress.ts': { url: 'an agent (postToAgent: the egress door\'s request side)' },
  'src/a2a/callee.ts': { dispatch: 'the callee agent (aam\'s credential; its answer comes back through the door)' },
  'src/a2a/card.ts': { url: 'the callee\'s agent card' },
  'src/gateway/upstream.ts': { dispatch: 'a model provider' },
  'src/tools/http-tool.ts': { url: 'an HTTP tool' },
  'src/tools/upstream.ts': { target: 'an MCP server' },
  'src/tools/mcp-sdk-client.ts': { StreamableHTTPClientTransport: 'an MCP server (through upstream.ts\'s credentialFetch)', SSEClientTransport: 'an MCP server (through upstream.ts\'s credentialFetch)' },
  'src/credentials/inject.ts': { url: 'a token endpoint (OAuth, service accounts)' },
  'src/guardrails/webhook.ts': { 'cfg.url': 'the operator\'s guardrail webhook' },
  'src/observability/otlp-exporter.ts': { 'cfg.url': 'the operator\'s OTLP collector' },
  'src/audit/sink-http.ts': { url: 'the operator\'s audit sink' },
  'src/audit/anchor.ts': { source: 'the operator\'s checkpoint witness' },
  'src/audit/cli.ts': { source: 'the operator\'s checkpoint (CLI)' },
  'src/cli/commands.ts': { 'base + path': 'aam\'s own admin API (CLI)' },
  'src/console/notify.ts': { 'hook.url': 'the operator\'s approval webhook' },
};

/** The outbound HTTP calls in one source file: global fetch, undici request (lib/http-client), dispatch, MCP client transports. */
function outboundCalls(f: { path: string; text: string }): string[] {
  const code = f.text.replace(/^\s*(\/\/|\*).*$/gm, '');
  const out: string[] = [];
  // The first argument (one level of parentheses inside it allowed).
  const arg = '((?:[^,()]|\\([^()]*\\))+)';
  for (const m of code.matchAll(new RegExp(`(?<![.\\w])fetch\\(${arg}`, 'g'))) out.push(m[1].trim());
  if (/import\s*\{[^}]*\brequest\b[^}]*\}\s*from\s*'[./]*(lib\/)?http-client\.ts'|from\s*'undici'/.test(code) || f.path === 'src/lib/http-client.ts') {
    for (const m of code.matchAll(new RegExp(`(?<![.\\w])request\\(${arg}`, 'g'))) out.push(m[1].trim());
  }
  for (const m of code.matchAll(/getGlobalDispatcher\(\)\)?\.(dispatch|request)\(|\.(dispatch)\(\{\s*$/gm)) out.push(m[1] ?? m[2]);
  for (const m of code.matchAll(/new\s+(\w+ClientTransport)\(/g)) if (m[1] !== 'StdioClientTransport') out.push(m[1]);
  return [...new Set(out)];
}

test('every outbound HTTP call is listed with where it goes; bytes for an agent leave only through the door', () => {
  const found: Record<string, string[]> = {};
  for (const f of src()) {
    if (f.path === 'src/lib/http-client.ts') continue; // the undici wrapper itself
    const calls = outboundCalls(f);
    if (calls.length) found[f.path] = calls.sort();
  }
  const unlisted = Object.entries(found).flatMap(([p, calls]) => calls.filter((c) => !(c in (OUTBOUND[p] ?? {}))).map((c) => `${p}: ${c}`));
  assert.deepEqual(unlisted, [], 'a new outbound HTTP call: if its bytes go to an agent (a URL an agent gave aam, such as an A2A push webhook), post them with postToAgent (src/access/egress.ts), which scrubs first; if they go to an upstream or an operator endpoint, list it in OUTBOUND with where it goes');
  const agentBound = Object.entries(OUTBOUND).flatMap(([p, calls]) => Object.entries(calls).filter(([, to]) => /^an agent\b/.test(to)).map(([c]) => `${p}: ${c}`));
  assert.deepEqual(agentBound, ['src/access/egress.ts: url'], 'only the door posts to an agent');
  const gone = Object.entries(OUTBOUND).flatMap(([p, calls]) => Object.keys(calls).filter((c) => !(found[p] ?? []).includes(c)).map((c) => `${p}: ${c}`));
  assert.deepEqual(gone, [], 'listed outbound calls that no longer exist (keep the list exact)');
});

test('a guardrail webhook (a third party) is only ever sent texts the door scrubbed', () => {
  const code = src().map((f) => ({ path: f.path, code: f.text.replace(/^\s*(\/\/|\*).*$/gm, '') }));
  const calls = code.flatMap((f) => [...f.code.matchAll(/(?<![.\w])(runWebhookGuardrails|callWebhookGuardrail)\(([^,]*)/g)]
    .filter((m) => !/^export\s+async\s+function\s*$/.test(f.code.slice(Math.max(0, (m.index ?? 0) - 24), m.index).trimStart()))
    .map((m) => `${f.path}: ${m[1]}(${m[2].trim()}`));
  const internal = calls.filter((c) => c.startsWith('src/guardrails/webhook.ts: callWebhookGuardrail(g.webhook'));
  const unscrubbed = calls.filter((c) => !internal.includes(c) && !/^src\/access\/guard\.ts: runWebhookGuardrails\(scrubForCheck\(/.test(c));
  assert.deepEqual(unscrubbed, [], 'pass the texts through scrubForCheck (src/access/egress.ts) before a webhook guardrail sees them');
  assert.equal(calls.length - internal.length, 1, 'one seam calls the webhook guardrails: access/guard.ts guardValue');
});

test('planes reach guardrails only through the access path (one walker), never the text-level engine', () => {
  const planes = src().filter((f) => /^src\/(gateway|tools|server|cache|a2a)\//.test(f.path));
  for (const f of planes) {
    for (const m of f.text.matchAll(/import\s+(type\s+)?\{([^}]*)\}\s+from\s+'\.\.\/guardrails\/[^']+'/g)) {
      if (m[1]) continue; // type-only imports carry no behaviour
      const names = m[2].split(',').map((s) => s.trim().replace(/^type\s+/, '')).filter((s) => s && !m[2].includes(`type ${s}`));
      const behaviour = names.filter((n) => n !== 'blockedMessage');
      assert.deepEqual(behaviour, [], `${f.path} imports guardrail engine functions (${behaviour.join(', ')}); use src/access/guard.ts`);
    }
  }
  const walkers = src().filter((f) => /export function mapLeaves\b/.test(f.text));
  assert.deepEqual(walkers.map((f) => f.path), ['src/guardrails/structured.ts'], 'exactly one leaf walker');
});

/**
 * Each params field a 2026-07-28 MCP client request is read for (src/tools), and why it is safe:
 * values forwarded upstream go through guardInbound (the input guardrail walker); the rest are
 * routing keys aam decides on, or values aam sealed itself. A new field read from a request fails
 * this test until it is classified here (and, when it reaches the upstream, guarded).
 */
const MCP_INBOUND: Record<string, 'guarded' | 'routing' | 'sealed' | 'aam'> = {
  arguments: 'guarded', inputResponses: 'guarded', name: 'routing', uri: 'routing', cursor: 'aam', notifications: 'aam', _meta: 'aam',
  requestState: 'sealed', taskId: 'sealed', ref: 'routing', argument: 'guarded', context: 'guarded',
};

test('MCP 2026-07-28: every request field aam reads is classified, and what reaches an upstream passes the one input-guard seam', () => {
  const tools = src().filter((f) => /^src\/tools\/mcp-(stateless|listen|tasks|call)\.ts$/.test(f.path));
  const read = new Set(tools.flatMap((f) => [...f.text.matchAll(/\bparams\.([A-Za-z_]\w*)/g)].map((m) => m[1])));
  const unclassified = [...read].filter((k) => !(k in MCP_INBOUND));
  assert.deepEqual(unclassified, [], `request fields read without a classification: ${unclassified.join(', ')} (forwarded upstream? pass them through guardInbound in src/tools/mcp-call.ts and add them here)`);
  const call = readFileSync(join(ROOT, 'src/tools/mcp-call.ts'), 'utf8');
  const tasks = readFileSync(join(ROOT, 'src/tools/mcp-tasks.ts'), 'utf8');
  // One seam: input guardrails in the MCP plane are reached only through guardInbound.
  for (const f of tools) {
    const direct = [...f.text.matchAll(/access\.guard\('input'/g)].length;
    assert.equal(direct, f.path === 'src/tools/mcp-call.ts' ? 1 : 0, `${f.path}: input guardrails only through guardInbound`);
  }
  // What the upstream gets of the MRTR fields: built only by mrtrOut, which guards each client-written one.
  const mrtr = /mrtr\?: \{([^}]*)\}/.exec(readFileSync(join(ROOT, 'src/tools/upstream.ts'), 'utf8'))?.[1] ?? '';
  const fields = [...mrtr.matchAll(/(\w+)\??:/g)].map((m) => m[1]);
  assert.deepEqual(fields.filter((k) => !['requestState', 'clientCapabilities'].includes(k) && MCP_INBOUND[k] !== 'guarded'), [], 'a new client value forwarded upstream must be guarded');
  const out = /async function mrtrOut[\s\S]*?\n\}/.exec(call)?.[0] ?? '';
  for (const k of fields.filter((f) => MCP_INBOUND[f] === 'guarded')) assert.match(out, new RegExp(`guardInbound\\([^;]*\\b${k}\\b`), `mrtrOut guards ${k}`);
  assert.doesNotMatch(call, /mrtr: \{ inputResponses: extra/, 'inputResponses go upstream only through mrtrOut');
  // completion/complete: the upstream gets aam's own ref and what guardInbound returned of argument and context.
  assert.match(call, /guardInbound\(rt, s, \{ argument: params\.argument, \.\.\.\(params\.context \? \{ context: params\.context \} : \{\}\) \}/);
  assert.match(call, /entry\.upstream\.complete\(\{ ref: upstreamRef, \.\.\.sent \}/);
  // tasks/*: everything but the sealed id goes upstream as guardInbound returned it (with aam's own _meta, a constant).
  assert.match(tasks, /const inbound = await guardInbound\(rt, s, rest,/);
  assert.match(tasks, /upstream\.task\(method, \{ \.\.\.inbound, taskId: b\.up, _meta: TASKS_META \}/);
  assert.match(tasks, /\nconst TASKS_META = \{ \[CLIENT_CAPS\]: \{ extensions: \{ \[TASKS_EXT\]: \{\} \} \} \};\n/, 'TASKS_META is aam\'s constant, nothing of the client\'s');
});

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway(yaml(
    doc('Credential', 'arch-key', { env: 'AAM_ARCH_TEST_KEY' }),
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', credential: 'arch-key' }),
    doc('Model', 'm', { targets: [{ provider: 'up', model: 'x' }], pricing: { input_per_1m: 1, output_per_1m: 1 } }),
    ...agentDocs(['m']),
  ), { AAM_ARCH_TEST_KEY: SECRET });
});
after(async () => { await gw?.close(); });

test('a new handler that forgets to scrub still cannot leak: headers, chunks, binary, split writes, end()', async () => {
  const half = SECRET.length >> 1;
  const routes: Routes = { exact: new Map(), prefixes: [] };
  routes.exact.set('GET /forgetful', (ctx) => {
    const res = ctx.res;
    res.setHeader('x-upstream-said', `token=${SECRET}`);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-echo': SECRET, 'content-length': '999' });
    res.write(`raw:${SECRET};`);
    res.write(`b64:${Buffer.from(SECRET).toString('base64')};`);
    res.write(`split:${SECRET.slice(0, half)}`);
    res.write(`${SECRET.slice(half)};`);
    res.write(Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.from(SECRET), Buffer.from([254])]));
    res.end(`url:${encodeURIComponent(SECRET)}`);
  });
  const server = createServer(gw.g.rt, routes);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/forgetful`);
    const body = Buffer.from(await r.arrayBuffer());
    const headers = JSON.stringify([...r.headers]);
    assert.equal(r.status, 200);
    for (const [what, text] of [['headers', headers], ['body', body.toString('latin1')]] as const) {
      assert.ok(!text.includes(SECRET), `${what} leaked the raw secret`);
      assert.ok(!text.includes(SECRET.slice(0, 12)), `${what} leaked a prefix of the secret`);
      assert.ok(!text.includes(Buffer.from(SECRET).toString('base64').slice(0, 16)), `${what} leaked the base64 form`);
    }
    assert.match(headers, /\[REDACTED:arch-key\]/);
    assert.equal((body.toString('latin1').match(/\[REDACTED:arch-key\]/g) ?? []).length, 5, 'raw, base64, split, binary and URL-encoded forms each redacted');
    assert.deepEqual([...body.subarray(body.indexOf(0), body.indexOf(0) + 4)], [0, 1, 2, 255], 'binary bytes around a redaction survive');
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('evidence built from upstream text never puts a credential on disk', async () => {
  const rt = gw.g.rt;
  rt.audit?.record({ type: 'tool.outcome', request_id: 'arch-1', outcome: { status: 'error', error: `upstream said: Authorization: Bearer ${SECRET}` } });
  await rt.auditLog?.flush();
  const onDisk = readdirSync(gw.dataDir).map((f) => join(gw.dataDir, f)).filter((f) => statSync(f).isFile());
  assert.ok(onDisk.some((f) => /audit-segment/.test(f)), 'the event is in a segment file');
  for (const f of onDisk) assert.ok(!readFileSync(f).includes(SECRET), `${relative(gw.dataDir, f)} holds the secret`);
  const ev = await auditOf(gw, 'arch-1');
  assert.equal(ev.length, 1);
  assert.match(JSON.stringify(ev[0]), /Bearer \[REDACTED:arch-key\]/);
});

test('a body posted to an agent\'s own URL (a push webhook) leaves through the door: raw, base64, URL-encoded, split across parts, headers', async () => {
  const half = SECRET.length >> 1;
  const got: Array<{ headers: string; body: string }> = [];
  const hook = createPlainServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => { got.push({ headers: JSON.stringify(req.headers), body: Buffer.concat(chunks).toString('latin1') }); res.end('{}'); });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  try {
    const value = { artifactUpdate: { taskId: 't1', artifact: { parts: [
      { text: `raw ${SECRET}` }, { text: `b64 ${Buffer.from(SECRET).toString('base64')}` }, { text: `url ${encodeURIComponent(SECRET)}` },
      { text: `split ${SECRET.slice(0, half)}` }, { text: `${SECRET.slice(half)} end` },
    ] } } };
    const status = await postToAgent(gw.g.rt.egress, `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`, value, { headers: { 'x-echo': SECRET }, timeoutMs: 10_000 });
    assert.equal(status, 200);
    assert.equal(got.length, 1);
    for (const [what, text] of [['headers', got[0].headers], ['body', got[0].body]] as const) {
      assert.ok(!text.includes(SECRET.slice(0, 12)) && !text.includes(SECRET.slice(half - 6, half)), `${what} leaked the secret or a piece of it`);
      assert.ok(!text.includes(Buffer.from(SECRET).toString('base64').slice(0, 16)), `${what} leaked the base64 form`);
    }
    assert.match(got[0].headers, /\[REDACTED:arch-key\]/);
    assert.equal((got[0].body.match(/\[REDACTED:arch-key\]/g) ?? []).length, 4, 'raw, base64, URL-encoded and split forms each redacted');
  } finally {
    await new Promise<void>((r) => hook.close(() => r()));
  }
});
