// Operating the gateway: hot reload (good and bad configs), slow-loris clients, budgets under
// concurrency, rpm limits, and mTLS X.509-SVID clients against `aam serve --tls-*`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { request as httpsRequest } from 'node:https';
import OpenAI from 'openai';
import { queryEvents } from '../src/audit/query.ts';
import './fixtures/identity-reflect.ts';
import { makeCa, issueLeaf } from './fixtures/identity-pki.ts';
import { startFakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, agentDocs } from './helpers/gateway.ts';
import { startGateway } from '../src/cli/serve.ts';
import { tempDir } from './helpers/temp.ts';

const until = async (pred: () => Promise<boolean> | boolean, ms = 30_000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await pred()) return; await new Promise((r) => setTimeout(r, 25)); }
  throw new Error('condition not reached in time');
};

test('hot reload: a changed file takes effect; a broken one is rejected and the last good config keeps serving', async () => {
  const base = [doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] })];
  const gw = await startTestGateway(yaml(...base, ...agentDocs(['one'])));
  try {
    const client = new OpenAI({ apiKey: gw.key('tester'), baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const ids = async () => (await client.models.list()).data.map((m) => m.id).sort();
    assert.deepEqual(await ids(), ['one']);
    writeFileSync(gw.configPath, yaml(...base, doc('Model', 'two', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one', 'two'])));
    await until(async () => (await ids()).includes('two'));
    const good = gw.g.rt.compiled.version;
    writeFileSync(gw.configPath, yaml(...base, doc('Model', 'three', { targets: [{ provider: 'nope', model: 'd' }] }), ...agentDocs(['one', 'two'])));
    // Wait for the watcher to have tried (and refused) the bad file, however slow the machine.
    const failedByWatch = async () => { await gw.g.rt.auditLog!.flush(); return queryEvents(gw.g.rt.auditLog!.db, { type: 'admin', order: 'asc', limit: 100 }).some((e) => e.admin?.action === 'config_reload_failed' && e.admin?.actor === 'file-watch'); };
    await until(failedByWatch);
    assert.equal(gw.g.rt.compiled.version, good, 'bad config must not replace the running one');
    assert.match(gw.g.rt.reload() ?? '', /unknown Provider "nope"/);
    assert.deepEqual(await ids(), ['one', 'two']);
    const r = await client.chat.completions.create({ model: 'two', messages: [{ role: 'user', content: 'still up' }] });
    assert.ok(r.choices[0].message.content);
    // Both are evidence: what changed (with the config digest) and what was refused, and who triggered it.
    const log = gw.g.rt.auditLog!;
    await log.flush();
    const admin = queryEvents(log.db, { type: 'admin', order: 'asc', limit: 100 }).map((e) => [e.admin?.action, e.admin?.actor, e.admin?.target]);
    assert.deepEqual(admin.filter(([a]) => a === 'config_reloaded'), [['config_reloaded', 'file-watch', good]]);
    assert.ok(admin.some(([a, actor]) => a === 'config_reload_failed' && actor === 'system'), JSON.stringify(admin));
  } finally { await gw.close(); }
});

test('slow-loris: a client that never finishes its headers is cut off; others are served meanwhile', async () => {
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one'])), { AAM_HEADERS_TIMEOUT_MS: '300', AAM_REQUEST_TIMEOUT_MS: '600' });
  try {
    const sock = connect(gw.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    // Cut off while still dripping, the client may see a reset (its next write meets a closed
    // socket) instead of a clean end: both are the cut-off this test expects, timed by 'close'.
    sock.on('error', () => {});
    sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => sock.write('X-Slow: 1\r\n'), 50);
    const closedAfter = await new Promise<number>((resolve) => { const t0 = Date.now(); let data = ''; sock.on('data', (d) => { data += d; }); sock.on('close', () => resolve(Date.now() - t0)); });
    clearInterval(drip);
    assert.ok(closedAfter < 2000, `slow client cut off after ${closedAfter} ms`);
    const ok = await fetch(`${gw.url}/healthz`);
    assert.equal(ok.status, 200);
  } finally { await gw.close(); }
});

test('budget: 64 concurrent requests cannot overspend beyond what is reserved; rpm limit answers 429 with retry-after', async () => {
  const fake = await startFakeUpstream();
  // Each call is reserved at (prompt + max_tokens) x price; the daily budget fits only a few.
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'pricey', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { input_per_1m: 10_000, output_per_1m: 10_000 } }),
    doc('Model', 'limited', { targets: [{ provider: 'oai', model: 'ok' }] }),
    doc('Agent', 'spender', { workload: 'spiffe://test/agent/spender', team: 'qa' }),
    doc('AgentPolicy', 'spender', { identity: { agent: 'spender' }, models: { allow: ['pricey'], budget: { daily_usd: 5 } } }),
    doc('Agent', 'chatty', { workload: 'spiffe://test/agent/chatty', team: 'qa' }),
    doc('AgentPolicy', 'chatty', { identity: { agent: 'chatty' }, models: { allow: ['limited'], rate: { rpm: 3 } } }),
  ));
  try {
    const client = new OpenAI({ apiKey: gw.key('spender'), baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const results = await Promise.all(Array.from({ length: 64 }, () => client.chat.completions.create({ model: 'pricey', max_tokens: 20, messages: [{ role: 'user', content: 'spend' }] })
      .then(() => 200, (e: InstanceType<typeof OpenAI.APIError>) => { if (e.status === 429) assert.equal(e.code, 'budget_exceeded'); return e.status ?? 0; })));
    const ok = results.filter((s) => s === 200).length;
    assert.ok(ok > 0 && ok < 64, `some calls admitted, the rest refused (admitted ${ok})`);
    assert.equal(results.filter((s) => s !== 200 && s !== 429).length, 0);
    gw.g.rt.usage.flush();
    const spent = gw.g.rt.usage.spendSince('agent', 'spender', 0).usd;
    assert.ok(spent > 0, 'admitted calls were billed');
    assert.ok(spent <= 5, `spent $${spent} of a $5 budget`);
    assert.equal(fake.count('ok'), ok, 'refused calls never reached the upstream');
    const chatty = new OpenAI({ apiKey: gw.key('chatty'), baseURL: `${gw.url}/v1`, maxRetries: 0 });
    for (let i = 0; i < 3; i++) await chatty.chat.completions.create({ model: 'limited', messages: [{ role: 'user', content: 'x' }] });
    const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('chatty')}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'limited', messages: [{ role: 'user', content: 'x' }] }) });
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'rate_limited');
  } finally { await gw.close(); await fake.close(); }
});

test('mTLS: an X.509-SVID client certificate identifies the agent; other CAs and missing certs get 401', async () => {
  const ca = await makeCa('agents');
  const other = await makeCa('evil');
  const server = await issueLeaf(ca, 'localhost', { serverAuth: true, sans: [{ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }] });
  const good = await issueLeaf(ca, 'analyst', { sans: [{ type: 'url', value: 'spiffe://test/agent/tester' }] });
  const forged = await issueLeaf(other, 'analyst', { sans: [{ type: 'url', value: 'spiffe://test/agent/tester' }] });
  const dir = tempDir('aam-mtls-');
  const f = (n: string, t: string) => { writeFileSync(join(dir, n), t); return join(dir, n); };
  const configPath = f('aam.yaml', yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one'])));
  const g = await startGateway({ configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', tlsCert: f('srv.pem', server.certPem), tlsKey: f('srv.key', server.keyPem), clientCa: f('ca.pem', ca.pem), env: { ...process.env, AAM_LOG_LEVEL: 'error' } });
  const get = (leaf?: { certPem: string; keyPem: string }) => new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: g.port, path: '/v1/models', ca: ca.pem, cert: leaf?.certPem, key: leaf?.keyPem, servername: 'localhost' }, (res) => {
      let body = ''; res.on('data', (d) => { body += d; }); res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  try {
    const ok = await get(good);
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.body, /"one"/);
    const bad = await get(forged);
    assert.equal(bad.status, 401);
    assert.match(bad.body, /certificate/);
    assert.equal((await get()).status, 401);
  } finally { await g.close(); }
});

test('a Model route can carry its own guardrails, applied whoever calls it; unknown names are load errors', async () => {
  const fake = await startFakeUpstream();
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Guardrail', 'no-falcon', { on: ['input'], keywords: ['project falcon'], action: 'block' }),
    doc('Model', 'guarded', { targets: [{ provider: 'oai', model: 'ok' }], guardrails: ['no-falcon'] }),
    ...agentDocs(['guarded']),
  ));
  try {
    const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('tester')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'guarded', messages: [{ role: 'user', content: 'status of Project Falcon?' }] }) });
    assert.equal(r.status, 400);
    const body = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'guardrail_blocked');
    assert.match(body.error.message, /no-falcon/);
    assert.equal(fake.requests.length, 0);
  } finally { await gw.close(); await fake.close(); }
  const { parseConfigTexts } = await import('../src/config/load.ts');
  assert.throws(() => parseConfigTexts([{ file: 'x.yaml', text: doc('Model', 'm', { targets: [{ provider: 'p', model: 'x' }], guardrails: ['ghost'] }) }]), /unknown Guardrail "ghost"/);
  // Tools can carry guardrails too; a dangling name is refused with where it is.
  assert.throws(() => parseConfigTexts([{ file: 'x.yaml', text: doc('McpServer', 'crm', { transport: 'streamable-http', url: 'http://127.0.0.1:1/mcp', guardrails: ['ghost'] }) }]), /x\.yaml:\d+ \(document 1\): spec\.guardrails\[0\]: unknown Guardrail "ghost"/);
  assert.throws(() => parseConfigTexts([{ file: 'x.yaml', text: doc('HttpTool', 'sf', { baseUrl: 'http://127.0.0.1:1', resource: 'sf', actions: { read: { method: 'GET', path: '/a' } }, guardrails: ['ghost'] }) }]), /unknown Guardrail "ghost"/);
});

test('a credential rotated under a running gateway is an admin event with its new version, never its value', async () => {
  const dir = tempDir('aam-rot-');
  const path = join(dir, 'token.txt');
  writeFileSync(path, 'rotating-secret-v1-abcdef');
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Credential', 'crm', { file: path }), ...agentDocs(['one'])));
  try {
    writeFileSync(path, 'rotating-secret-v2-ghijkl-longer');
    const log = gw.g.rt.auditLog!;
    const rotated = async () => { await log.flush(); return queryEvents(log.db, { type: 'admin', limit: 100 }).filter((e) => e.admin?.action === 'credential_rotated'); };
    await until(async () => (await rotated()).length > 0);
    const [e] = await rotated();
    assert.deepEqual([e.admin?.target, e.admin?.actor, e.detail?.version, e.detail?.source], ['crm', 'system', 2, 'file']);
    assert.ok(!JSON.stringify(e).includes('rotating-secret'), 'no value in the event');
  } finally { await gw.close(); }
});

test('AAM_AUDIT_FAIL_MODE=fail_closed: while audit storage fails every request is refused (503); after it recovers nothing is missing', async () => {
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one'])),
    { AAM_AUDIT_FAIL_MODE: 'fail_closed' });
  const { DatabaseSync } = await import('node:sqlite');
  const lock = new DatabaseSync(join(gw.dataDir, 'audit.db'));
  try {
    const key = gw.key('tester');
    let acknowledged = 0;
    const call = async () => {
      const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'one', messages: [{ role: 'user', content: 'hi' }] }) });
      if (r.status === 200) acknowledged++;
      return r;
    };
    // Nothing of the start-up left to write (here: 1 event queued, 0 written, the writer thread maybe not up
    // yet): else the writer meets the lock with it, and its 5 s busy timeout could run out before the first
    // call below is answered, which then is refused (it failed so once under load).
    await gw.g.rt.auditLog!.flush();
    lock.exec('BEGIN IMMEDIATE'); // audit storage is stuck: the writer thread times out (5 s) and fails
    assert.equal((await call()).status, 200, 'recorded in its segment file; storage not known to fail yet');
    await until(() => gw.g.rt.auditLog!.stats().failing, 60_000);
    const refused = await call();
    assert.equal(refused.status, 503);
    assert.match(await refused.text(), /audit trail cannot record/);
    lock.exec('ROLLBACK');
    await until(async () => (await call()).status === 200, 60_000);
    await gw.g.rt.auditLog!.flush();
    const calls = queryEvents(gw.g.rt.auditLog!.db, { type: 'model_call', limit: 100 });
    assert.ok(calls.length >= acknowledged && acknowledged >= 2, `every acknowledged request, the one answered while storage failed among them, is in the trail (${calls.length} model_call events, ${acknowledged} answered 200)`);
  } finally {
    lock.close();
    await gw.close();
  }
});
