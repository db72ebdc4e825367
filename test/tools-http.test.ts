// HTTP action proxy end-to-end through the real gateway: /tools/<tool>/<action> with virtual keys,
// aam's policy, credential injection, scrubbing and audit, forwarding to a recording upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { joinUrl } from '../src/tools/http-tool.ts';
import { checkParam, compilePathTemplate } from '../src/tools/path-template.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { localServer, until, type LocalServer } from './helpers/e2e.ts';
import { ADMIN_TOKEN, admin, toolEvents } from './helpers/mcp.ts';

interface Seen { method: string; url: string; headers: IncomingHttpHeaders; body: string }
const seen: Seen[] = [];
const SF_SECRET = 'sf-secret-NEEDLE-5f4e3d2c1b0a';
let upstream: LocalServer;
let gw: TestGateway;
const keys: Record<string, string> = {};

before(async () => {
  upstream = await localServer(async (req, res, body) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
    if (req.url?.startsWith('/v1/slow')) await new Promise((r) => setTimeout(r, 3000));
    if (res.destroyed) return;
    const typed = /\/accounts\/as-(yaml|octet|png)$/.exec(req.url ?? '');
    if (typed) {
      // Text under a type no list of textual types has, text mislabelled, and real binary (NUL, not UTF-8).
      const [type, bytes] = typed[1] === 'yaml' ? ['application/yaml', Buffer.from('owner: jane@example.com\n')]
        : typed[1] === 'octet' ? ['application/octet-stream', Buffer.from('{"owner":"jane@example.com"}')]
          : ['image/png', Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0xff]), Buffer.from('jane@example.com')])];
      res.writeHead(200, { 'content-type': type }).end(bytes);
      return;
    }
    // The upstream echoes the credential it received, in a header and in the body.
    res.writeHead(req.url?.includes('missing') ? 404 : 200, {
      'content-type': 'application/json', 'x-upstream': 'yes', connection: 'keep-alive, x-hop', 'x-hop': 'drop me', 'set-cookie': 'sid=1',
      'x-echo-auth': String(req.headers.authorization),
    });
    res.end(JSON.stringify({ ok: true, path: req.url, auth: req.headers.authorization, owner: 'jane@example.com' }));
  });
  const base = `${upstream.url}/v1`;
  const config = yaml(
    doc('Credential', 'sf-token', { env: 'TEST_SF_TOKEN' }),
    doc('HttpTool', 'salesforce', {
      baseUrl: base, credential: 'sf-token', resource: 'salesforce.accounts',
      actions: {
        read: { method: 'GET', path: '/accounts/{id}' }, search: { method: 'GET', path: '/accounts' }, export: { method: 'POST', path: '/accounts/export' },
        delete: { method: 'DELETE', path: '/accounts/{id}' }, update: { method: 'PATCH', path: '/accounts/{id}' },
      },
    }),
    doc('HttpTool', 'ops', { baseUrl: base, resource: 'web', actions: { create: { method: 'POST', path: '/things/{kind}/items' } } }),
    // Only this tool has a short timeout: a slow CPU must not trip the others.
    doc('HttpTool', 'sluggish', { baseUrl: base, resource: 'web', timeout_ms: 300, actions: { slow: { method: 'GET', path: '/slow' } } }),
    doc('Agent', 'finance-analyst', { workload: 'spiffe://prod/agent/finance-analyst', team: 'finance', environment: 'prod' }),
    doc('Guardrail', 'mask-email-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Guardrail', 'no-ssn-in', { on: ['input'], detect: ['ssn'], action: 'block' }),
    doc('Agent', 'careful', { workload: 'spiffe://prod/agent/careful', team: 'support', environment: 'prod' }),
    doc('AgentPolicy', 'careful-policy', { identity: { workload: 'spiffe://prod/agent/careful' }, guardrails: ['mask-email-out', 'no-ssn-in'], tools: [{ resource: 'salesforce.accounts', actions: ['read'] }, { resource: 'web', actions: ['create'] }] }),
    doc('Agent', 'intern', { workload: 'spiffe://dev/agent/intern', team: 'finance', environment: 'dev' }),
    doc('AgentPolicy', 'finance-analyst-readonly', {
      identity: { workload: 'spiffe://prod/agent/finance-analyst' },
      tools: [
        { resource: 'salesforce.accounts', deny: ['export', 'update'] },
        { resource: 'salesforce.accounts', actions: ['search'], args: { limit: { max: 100 } } },
        { resource: 'salesforce.accounts', actions: ['read'] },
        { resource: 'salesforce.accounts', actions: ['delete'], approval: 'required' },
        { resource: 'web', actions: ['*'] },
      ],
    }),
    doc('AgentPolicy', 'prod-readers', { identity: { team: 'finance' }, tools: [{ resource: 'salesforce.accounts', actions: ['read'], when: 'identity.environment == "prod"' }] }),
  );
  gw = await startTestGateway(config, { TEST_SF_TOKEN: SF_SECRET, AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  for (const a of ['finance-analyst', 'intern', 'careful']) keys[a] = gw.key(a);
});

after(async () => {
  await gw?.close();
  await upstream?.close();
});

async function call(path: string, body: unknown, agent = 'finance-analyst') {
  const res = await fetch(gw.url + path, { method: 'POST', headers: { authorization: `Bearer ${keys[agent]}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as { error?: { message: string; code: string; approval_id?: string } } };
}

test('allowed call: path param bound, credential injected, agent key not forwarded, correlation headers', async () => {
  const n = seen.length;
  const r = await call('/tools/salesforce/read', { id: 'a 1' });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.headers.get('x-upstream'), 'yes');
  assert.equal(r.headers.get('x-hop'), null, 'header named in Connection dropped');
  assert.equal(r.headers.get('set-cookie'), null);
  assert.ok(r.headers.get('x-aam-request-id'));
  const up = seen[n];
  assert.equal(up.method, 'GET');
  assert.equal(up.url, '/v1/accounts/a%201');
  assert.equal(up.headers.authorization, `Bearer ${SF_SECRET}`, 'the configured credential is injected');
  assert.ok(!JSON.stringify(up.headers).includes(keys['finance-analyst']), "the agent's key is never forwarded");
  assert.equal(up.headers['x-aam-agent'], 'spiffe://prod/agent/finance-analyst');
  assert.equal(up.headers['x-aam-request-id'], r.headers.get('x-aam-request-id'));
  const s = await call('/tools/salesforce/search', { query: 'acme', limit: 5 });
  assert.equal(s.status, 200);
  assert.equal(seen.at(-1)?.url, '/v1/accounts?query=acme&limit=5');
  const nf = await call('/tools/salesforce/read', { id: 'missing' });
  assert.equal(nf.status, 404, 'upstream status passed back');
});

test('the credential an upstream echoes reaches the agent as [REDACTED:<credential>], in body and headers', async () => {
  const r = await call('/tools/salesforce/read', { id: 'a1' });
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.text) as { auth: string }).auth, 'Bearer [REDACTED:sf-token]');
  assert.equal(r.headers.get('x-echo-auth'), 'Bearer [REDACTED:sf-token]');
  assert.ok(!r.text.includes('NEEDLE') && ![...r.headers.values()].some((v) => v.includes('NEEDLE')));
});

test('output guardrails see HTTP tool results: a policy guardrail redacts them before the agent', async () => {
  const masked = await call('/tools/salesforce/read', { id: 'a1' }, 'careful');
  assert.equal(masked.status, 200);
  assert.equal((JSON.parse(masked.text) as { owner: string }).owner, '[EMAIL]');
  const plain = await call('/tools/salesforce/read', { id: 'a1' });
  assert.equal((JSON.parse(plain.text) as { owner: string }).owner, 'jane@example.com', 'no guardrail for the analyst');
});

test('output guardrails read every text answer whatever its content-type says; binary passes as it is', async () => {
  const yamlBody = await call('/tools/salesforce/read', { id: 'as-yaml' }, 'careful');
  assert.equal(yamlBody.status, 200);
  assert.equal(yamlBody.text, 'owner: [EMAIL]\n');
  const octet = await call('/tools/salesforce/read', { id: 'as-octet' }, 'careful');
  assert.equal(octet.status, 200);
  assert.equal((JSON.parse(octet.text) as { owner: string }).owner, '[EMAIL]');
  const png = await fetch(gw.url + '/tools/salesforce/read', { method: 'POST', headers: { authorization: `Bearer ${keys.careful}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'as-png' }) });
  assert.equal(png.status, 200);
  assert.ok(Buffer.from(await png.arrayBuffer()).includes('jane@example.com'), 'binary is no text to a detector');
});

test('input guardrails see object keys of an HTTP tool body: an SSN in a key never reaches the upstream', async () => {
  const n = seen.length;
  const r = await call('/tools/ops/create', { kind: 'note', body: { ['SSN 078-05-1120']: true } }, 'careful');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json().error?.code, 'guardrail_blocked');
  assert.equal(seen.length, n, 'the upstream never saw it');
  assert.equal((await call('/tools/ops/create', { kind: 'note', body: { plain: true } }, 'careful')).status, 200, 'plain keys pass');
});

test('denied calls and unknown actions never reach the upstream', async () => {
  const n = seen.length;
  const over = await call('/tools/salesforce/search', { query: 'a', limit: 500 });
  assert.equal(over.status, 403);
  assert.equal(over.json().error?.code, 'policy_denied');
  assert.match(over.json().error?.message ?? '', /policy "finance-analyst-readonly" rule tools\[1\]/);
  const exp = await call('/tools/salesforce/export', {});
  assert.equal(exp.status, 403);
  assert.match(exp.json().error?.message ?? '', /policy "finance-analyst-readonly" rule tools\[0\]/);
  const intern = await call('/tools/salesforce/read', { id: 'a1' }, 'intern');
  assert.equal(intern.status, 403, 'read only in prod');
  assert.match(intern.json().error?.message ?? '', /prod-readers/);
  const unknown = await call('/tools/salesforce/purge', {});
  assert.equal(unknown.status, 404);
  assert.match(unknown.json().error?.message ?? '', /unknown action "purge".*actions: read, search/);
  assert.equal((await call('/tools/nope/read', {})).status, 404);
  assert.equal((await call('/tools/salesforce/read', [1, 2])).status, 400);
  assert.equal(seen.length, n, 'upstream saw nothing');
  const denied = (await toolEvents(gw, { type: 'tool.decision', agent: 'finance-analyst' })).filter((e) => (e as { decision?: { effect?: string } }).decision?.effect === 'deny');
  assert.ok(denied.length >= 2, 'denials are evidence');
});

test('path traversal and encoded tricks are rejected before the upstream', async () => {
  const n = seen.length;
  for (const id of ['../admin', '%2e%2e%2f', '%2E%2E%2Fadmin', 'a/b', '..', '.', 'a\\b', 'a\u0000b', 'x\ny', '', { $gt: '' }, '..%2f']) {
    const r = await call('/tools/salesforce/read', { id });
    assert.equal(r.status, 400, `id ${JSON.stringify(id)} rejected`);
    assert.equal(r.json().error?.code, 'invalid_path_parameter');
  }
  assert.equal((await call('/tools/salesforce/read', {})).status, 400, 'missing param');
  assert.equal(seen.length, n);
});

test('body actions send the remaining arguments as JSON; approval flow on HTTP tools with intent on record', async () => {
  const held = await call('/tools/salesforce/delete', { id: 'a1' });
  assert.equal(held.status, 403);
  const id = held.json().error?.approval_id as string;
  assert.match(held.json().error?.message ?? '', /approval required: approval id apr_/);
  const n = seen.length;
  assert.equal((await admin(gw, 'POST', `/approvals/${id}/approve`)).status, 200);
  const ok = await call('/tools/salesforce/delete', { id: 'a1' });
  assert.equal(ok.status, 200);
  assert.equal(seen.length, n + 1);
  assert.equal(seen.at(-1)?.method, 'DELETE');
  const intents = await toolEvents(gw, { type: 'tool.intent', agent: 'finance-analyst' });
  assert.ok(intents.some((e) => (e as { plane?: string }).plane === 'http' && (e as { action?: string }).action === 'delete'), 'the intent of the delete is on record');
  const c = await call('/tools/ops/create', { kind: 'widget', size: 3, tags: ['x'] });
  assert.equal(c.status, 200);
  assert.equal(seen.at(-1)?.url, '/v1/things/widget/items');
  assert.deepEqual(JSON.parse(seen.at(-1)?.body ?? ''), { size: 3, tags: ['x'] });
  assert.equal(seen.at(-1)?.headers['content-type'], 'application/json');
});

test('a mutating call whose intent cannot be recorded durably is refused (503) and not forwarded', async () => {
  const n = seen.length;
  const lock = new DatabaseSync(join(gw.dataDir, 'audit.db'));
  lock.exec('BEGIN IMMEDIATE'); // the audit trail cannot commit anything
  try {
    const r = await call('/tools/ops/create', { kind: 'widget', size: 1 });
    assert.equal(r.status, 503);
    assert.equal(r.json().error?.code, 'audit_unavailable');
    assert.match(r.json().error?.message ?? '', /not forwarded/);
    assert.equal(seen.length, n, 'the upstream never saw the call');
  } finally {
    lock.exec('ROLLBACK');
    lock.close();
  }
  await until(async () => (await call('/tools/ops/create', { kind: 'widget', size: 2 })).status === 200, 60_000, 'the call to go through after the audit storage recovered');
  assert.deepEqual(seen.slice(n).map((s) => JSON.parse(s.body) as unknown), [{ size: 2 }], 'only the call whose intent was recorded reached the upstream');
});

test('hung upstream: clear 504', async () => {
  const r = await call('/tools/sluggish/slow', {});
  assert.equal(r.status, 504);
  assert.match(r.json().error?.message ?? '', /did not answer within 300 ms/);
});

test('path template and URL join units', () => {
  const t = compilePathTemplate('/accounts/{id}/contacts/{cid}');
  assert.deepEqual(t.params, ['id', 'cid']);
  assert.equal(t.render({ id: 'a?b#c', cid: 7 }), '/accounts/a%3Fb%23c/contacts/7');
  assert.throws(() => checkParam('id', '..'), /dot segment/);
  assert.throws(() => checkParam('id', 'a%2fb'), /percent-encoding/);
  assert.equal(checkParam('id', 'a.b-c_d'), 'a.b-c_d');
  const u = joinUrl(new URL('http://h/v1/'), '/accounts/x', new URLSearchParams('q=1'));
  assert.equal(u.href, 'http://h/v1/accounts/x?q=1');
});
