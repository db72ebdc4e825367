// Who is calling and may they (src/access/identify.ts, src/access/decide.ts) as an agent and the
// audit trail see it, written for `npm run mutate -- access -- --mutate src/access/identify.ts,...`:
// where a credential is read from and what a 401 says, virtual keys, JWT-SVIDs (aam-issued,
// external, unverifiable) and X.509-SVIDs, then the decision evidence, shadow mode, rate limits and
// budgets. One TLS gateway with the demo provider (no upstream, no MCP server): a few seconds per run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { generateKeyPair, exportJWK, SignJWT, type CryptoKey } from 'jose';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { queryEvents } from '../src/audit/query.ts';
import type { AuditEvent } from '../src/audit/event.ts';
import { storeFailure } from '../src/access/decide.ts';
import { AamError } from '../src/access/errors.ts';
import { StoreUnavailable } from '../src/store/types.ts';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { makeCa, issueLeaf, type Ca, type Leaf } from './fixtures/identity-pki.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { freePort } from './helpers/e2e.ts';
import { parseProm, sumOf } from './helpers/prom.ts';
import { tempDir } from './helpers/temp.ts';
import { startCollector, spansOf, attrs, type Collector } from './observability-collector.ts';

const ANALYST = 'spiffe://prod/agent/analyst';
const PARTNER = 'spiffe://partner.example/bot';
const REALM = 'Bearer realm="aam"';

let g: Running;
let plain: Running;
let fake: FakeUpstream;
let collector: Collector;
let ca: Ca;
let analystCert: Leaf;
let forgedCert: Leaf;
let extKey: CryptoKey;
let analystKey: { id: string; secret: string };

before(async () => {
  ca = await makeCa('agents');
  const server = await issueLeaf(ca, 'localhost', { serverAuth: true, sans: [{ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }] });
  analystCert = await issueLeaf(ca, 'analyst', { sans: [{ type: 'url', value: ANALYST }] });
  forgedCert = await issueLeaf(await makeCa('evil'), 'analyst', { sans: [{ type: 'url', value: ANALYST }] });
  const dir = tempDir('aam-mut-identity-');
  const f = (n: string, t: string): string => { writeFileSync(join(dir, n), t); return join(dir, n); };
  const kp = await generateKeyPair('ES256', { extractable: true });
  extKey = kp.privateKey;
  const jwksFile = f('jwks.json', JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'ext-1', alg: 'ES256', use: 'sig' }] }));
  const closed = await freePort();
  fake = await startFakeUpstream();
  const config = yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Provider', 'dead', { type: 'openai-compatible', baseUrl: `http://127.0.0.1:${closed}/v1` }),
    doc('Model', 'chat', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
    doc('Model', 'big', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
    doc('Model', 'broken', { targets: [{ provider: 'dead', model: 'x' }], retries: { attempts: 0 } }),
    doc('Provider', 'paid', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'pricey', { targets: [{ provider: 'paid', model: 'ok' }], retries: { attempts: 0 }, pricing: { input_per_1m: 10_000, output_per_1m: 10_000 } }),
    doc('Model', 'pricey-broken', { targets: [{ provider: 'dead', model: 'x' }], retries: { attempts: 0 }, pricing: { input_per_1m: 10_000, output_per_1m: 10_000 } }),
    doc('TrustDomain', 'partner.example', { jwks_file: jwksFile }),
    doc('TrustDomain', 'down.example', { jwks_url: `http://127.0.0.1:${closed}/jwks.json` }),
    doc('Agent', 'analyst', { workload: ANALYST, team: 'finance', environment: 'prod', owner: 'jane@example.com' }),
    doc('Agent', 'quiet', { workload: 'spiffe://prod/agent/quiet', team: 'ops' }),
    doc('Agent', 'chatty', { workload: 'spiffe://prod/agent/chatty', team: 'ops' }),
    doc('Agent', 'spender', { workload: 'spiffe://prod/agent/spender', team: 'ops' }),
    doc('AgentPolicy', 'analyst-models', { identity: { agent: 'analyst' }, models: { allow: ['chat', 'big', 'broken'] } }),
    // Shadow mode: recorded, not enforced.
    doc('AgentPolicy', 'finance-tighten', { mode: 'audit', identity: { team: 'finance' }, models: { deny: ['big'] } }),
    doc('AgentPolicy', 'quiet-models', { identity: { agent: 'quiet' }, models: { allow: ['chat'] }, audit: { record: ['identity', 'policy'] } }),
    doc('AgentPolicy', 'chatty-rate', { identity: { agent: 'chatty' }, models: { allow: ['chat'], rate: { rpm: 2 } } }),
    doc('AgentPolicy', 'spender-budget', { identity: { agent: 'spender' }, models: { allow: ['pricey', 'pricey-broken'], budget: { daily_usd: 1 } } }),
    doc('AgentPolicy', 'partners', { identity: { workload: PARTNER }, models: { allow: ['chat'] } }),
  );
  const configPath = f('aam.yaml', config);
  const tls = { tlsCert: f('srv.pem', server.certPem), tlsKey: f('srv.key', server.keyPem) };
  g = await startGateway({ configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error' }, ...tls, clientCa: f('ca.pem', ca.pem) });
  const k = g.rt.keys.create('analyst');
  analystKey = { id: k.key.id, secret: k.secret };
  // TLS without client certificates (no mTLS): what a caller that sends no credential at all is
  // told; with traces exported.
  collector = await startCollector();
  plain = await startGateway({
    configPath, dataDir: join(dir, 'plain-data'), port: 0, host: '127.0.0.1', ...tls,
    env: { ...process.env, AAM_LOG_LEVEL: 'error', OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '50' },
  });
});
after(async () => { await g?.close(); await plain?.close(); await fake?.close(); await collector?.close(); });

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; text: string; error?: { code: string; message: string; type: string }; requestId: string }

/** One HTTPS request, optionally with a client certificate (an X.509-SVID). */
function call(path: string, headers: Record<string, string> = {}, o: { body?: unknown; cert?: Leaf; port?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port: o.port ?? g.port, path, method: o.body === undefined ? 'GET' : 'POST', ca: ca.pem, servername: 'localhost',
      cert: o.cert?.certPem, key: o.cert?.keyPem, headers: { ...(o.body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => {
        let error: Reply['error'];
        try { error = (JSON.parse(text) as { error?: Reply['error'] }).error; } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, error, requestId: String(res.headers['x-request-id'] ?? '') });
      });
    });
    req.on('error', reject);
    req.end(o.body === undefined ? undefined : JSON.stringify(o.body));
  });
}

const chat = (model: string, headers: Record<string, string>, cert?: Leaf): Promise<Reply> =>
  call('/v1/chat/completions', headers, { body: { model, max_tokens: 5, messages: [{ role: 'user', content: 'hello there' }] }, cert });
const bearer = (secret: string): Record<string, string> => ({ authorization: `Bearer ${secret}` });

async function eventsOf(requestId: string): Promise<AuditEvent[]> {
  await g.rt.auditLog!.flush();
  return queryEvents(g.rt.auditLog!.db, { requestId, order: 'asc' });
}

/** A 401 as the agent sees it: the code, the message, and the challenge header. */
function assert401(r: Reply, code: string, message: RegExp, what: string): void {
  assert.equal(r.status, 401, `${what}: ${r.text}`);
  assert.equal(r.error?.code, code, `${what}: ${r.text}`);
  assert.equal(r.error?.type, 'authentication_error', what);
  assert.match(r.error?.message ?? '', message, what);
  assert.equal(r.headers['www-authenticate'], REALM, what);
}

const NO_CREDENTIALS = /^no credentials: send "Authorization: Bearer <aam virtual key or JWT-SVID>" \(create a key with: aam keys create --agent NAME\)$/;

/** GET /v1/models on the gateway without mTLS. */
const plainModels = (headers: Record<string, string>): Promise<Reply> => call('/v1/models', headers, { port: plain.port });

test('the key is read from Authorization: Bearer (any case and spacing), x-api-key or api-key; anything else is a 401 that says what to send', async () => {
  const s = plain.rt.keys.create('analyst').secret;
  for (const [what, headers] of [
    ['Bearer', { authorization: `Bearer ${s}` }], ['lower-case bearer, two spaces', { authorization: `bearer  ${s}` }],
    ['x-api-key', { 'x-api-key': s }], ['api-key', { 'api-key': s }],
  ] as Array<[string, Record<string, string>]>) {
    const r = await plainModels(headers);
    assert.equal(r.status, 200, `${what}: ${r.text}`);
    assert.match(r.text, /"chat"/, what);
  }
  for (const [what, headers] of [
    ['nothing', {}], ['Basic (Authorization wins over x-api-key)', { authorization: 'Basic YWFtOmFhbQ==', 'x-api-key': s }],
    ['a second word after the key', { authorization: `Bearer ${s} extra` }], ['Bearer alone', { authorization: 'Bearer' }],
    ['not at the start', { authorization: `xBearer ${s}` }], ['empty x-api-key', { 'x-api-key': '' }],
  ] as Array<[string, Record<string, string>]>) {
    assert401(await plainModels(headers), 'missing_credentials', NO_CREDENTIALS, what);
  }
  assert401(await plainModels(bearer('sk-not-aam')), 'invalid_api_key', /^unrecognised credential: expected an aam virtual key \(aam_\.\.\.\) or a JWT-SVID$/, 'a foreign key');
  // Two headers naming different callers: refused, whichever header comes first (before, Authorization won silently).
  const other = plain.rt.keys.create('quiet').secret;
  for (const [what, headers] of [
    ['Bearer and another x-api-key', { authorization: `Bearer ${s}`, 'x-api-key': other }],
    ['x-api-key and another api-key', { 'x-api-key': other, 'api-key': s }],
    ['Bearer and another api-key', { authorization: `Bearer ${s}`, 'api-key': 'aam_bogus' }],
  ] as Array<[string, Record<string, string>]>) {
    assert401(await plainModels(headers), 'invalid_api_key', /^two different credentials in one request \("Authorization: Bearer", x-api-key, api-key\): send one$/, what);
  }
  const same = await plainModels({ authorization: `Bearer ${s}`, 'x-api-key': s, 'api-key': s });
  assert.equal(same.status, 200, `the same key in every header: ${same.text}`);
});

test('a request span names who called, how, and the decision', async () => {
  const r = await call('/v1/chat/completions', bearer(plain.rt.keys.create('analyst').secret), { body: { model: 'chat', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }, port: plain.port });
  assert.equal(r.status, 200, r.text);
  const requestSpan = () => spansOf(collector).map((sp) => attrs(sp.attributes)).find((a) => a['gen_ai.agent.name']?.stringValue === 'analyst' && a['aam.policy.decision']);
  await collector.waitFor(() => requestSpan() !== undefined, 30_000);
  const a = requestSpan()!;
  assert.deepEqual([a['gen_ai.agent.id']?.stringValue, a['aam.auth.method']?.stringValue], [ANALYST, 'virtual_key']);
  assert.deepEqual([a['aam.policy.name']?.stringValue, a['aam.policy.decision']?.stringValue], ['analyst-models', 'allow']);
  assert.ok(a['aam.policy.reason']?.stringValue && a['aam.config.version']?.stringValue, JSON.stringify(a));
});

test('virtual keys: unknown and revoked keys say why; a key whose agent left the config names both; a good one is the agent in the evidence', async () => {
  assert401(await call('/v1/models', bearer('aam_notakey0123456789')), 'invalid_api_key', /^invalid API key: \S/, 'unknown key');
  const gone = g.rt.keys.create('analyst');
  g.rt.keys.revoke(gone.key.id);
  assert401(await call('/v1/models', bearer(gone.secret)), 'invalid_api_key', /^invalid API key: .*revoked/, 'revoked key');
  const ghost = g.rt.keys.create('ghost');
  assert401(await call('/v1/models', bearer(ghost.secret)), 'invalid_api_key',
    new RegExp(`^API key ${ghost.key.id} is bound to agent "ghost", which is not in the current config$`), 'agent not in config');

  const r = await chat('chat', { ...bearer(analystKey.secret), 'x-request-id': 'client-req-1', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
  assert.equal(r.status, 200, r.text);
  const [ev] = (await eventsOf(r.requestId)).filter((e) => e.type === 'model_call');
  assert.deepEqual({ ...ev.identity }, {
    spiffe_id: ANALYST, agent: 'analyst', owner: 'jane@example.com', team: 'finance', environment: 'prod', method: 'virtual_key', key_id: analystKey.id,
  });
  assert.equal(ev.client_request_id, 'client-req-1');
  assert.equal(ev.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736', 'the caller\'s traceparent names the trace');
  assert.equal((await g.rt.identitySeen.table()).get('analyst')?.virtual_key !== undefined, true, 'the console shows the key method as seen');
});

test('JWT-SVIDs: an aam token counts as its key and dies with it; external tokens verify by their trust domain, unregistered agents included', async () => {
  const k = g.rt.keys.create('analyst');
  const tr = await call('/identity/v1/token', bearer(k.secret), { body: { ttl: '5m' } });
  assert.equal(tr.status, 200, tr.text);
  const token = (JSON.parse(tr.text) as { access_token: string }).access_token;
  const r = await chat('chat', bearer(token));
  assert.equal(r.status, 200, r.text);
  const [ev] = (await eventsOf(r.requestId)).filter((e) => e.type === 'model_call');
  assert.equal(ev.identity?.method, 'jwt_svid');
  assert.equal(ev.identity?.agent, 'analyst');
  assert.equal(ev.identity?.key_id, k.key.id, 'a token minted from a key counts against that key');
  assert.ok(ev.identity?.token_id, 'the token id (jti) is evidence');
  assert.ok((await g.rt.identitySeen.table()).get('analyst')?.jwt_svid);
  g.rt.keys.revoke(k.key.id);
  assert401(await call('/v1/models', bearer(token)), 'invalid_token', /revoked/, 'key revoked');

  const now = Math.floor(Date.now() / 1000);
  const sign = (sub: string, claims: Record<string, unknown> = {}): Promise<string> =>
    new SignJWT({ sub, aud: 'aam', iat: now, exp: now + 300, ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'ext-1' }).sign(extKey);
  const ext = await chat('chat', bearer(await sign(PARTNER)));
  assert.equal(ext.status, 200, ext.text);
  const [xev] = (await eventsOf(ext.requestId)).filter((e) => e.type === 'model_call');
  assert.equal(xev.identity?.spiffe_id, PARTNER);
  assert.equal(xev.identity?.agent, '', 'an unregistered identity has no agent name');
  assert.equal(xev.identity?.method, 'jwt_svid');
  assert.equal(xev.identity?.key_id, undefined, 'an external token belongs to no key');
  assert401(await call('/v1/models', bearer(await sign(PARTNER, { iat: now - 900, exp: now - 600 }))), 'invalid_token', /^invalid JWT-SVID \(expired\): /, 'expired');
  assert401(await call('/v1/models', bearer(await sign(PARTNER, { exp: now + 10 * 365 * 86400 }))), 'invalid_token',
    /^invalid JWT-SVID \(too_long_lived\): token lives 315360000 s \(exp - iat\); trust domain "partner.example" accepts JWT-SVIDs of at most 3600 s/, '10-year token');
  // A trust domain whose keys cannot be fetched: fail closed, but as "retry", not "your token is bad".
  const down = await call('/v1/models', bearer(await sign('spiffe://down.example/bot')));
  assert.equal(down.status, 503, down.text);
  assert.equal(down.error?.code, 'unavailable');
  assert.match(down.error?.message ?? '', /^cannot verify JWT-SVID right now: /);
  assert.equal(down.headers['retry-after'], '5');
});

test('X.509-SVIDs: a client certificate identifies the agent when no bearer is sent; one from another CA is a 401', async () => {
  const r = await chat('chat', {}, analystCert);
  assert.equal(r.status, 200, r.text);
  const [ev] = (await eventsOf(r.requestId)).filter((e) => e.type === 'model_call');
  assert.equal(ev.identity?.method, 'x509_svid');
  assert.equal(ev.identity?.agent, 'analyst');
  assert.equal(ev.identity?.token_id, analystCert.serial);
  assert.ok((await g.rt.identitySeen.table()).get('analyst')?.x509_svid);
  assert401(await call('/v1/models', {}, { cert: forgedCert }), 'invalid_token', /^client certificate rejected: \S/, 'another CA');
  assert401(await call('/v1/models'), 'invalid_token', /^client certificate rejected: no client certificate was presented/, 'no certificate, no bearer');
  // A bearer wins over the certificate.
  const q = await chat('chat', bearer(g.rt.keys.create('quiet').secret), analystCert);
  assert.equal(q.status, 200, q.text);
  assert.equal((await eventsOf(q.requestId)).find((e) => e.type === 'model_call')?.identity?.agent, 'quiet');
});

test('a denial is a 403 naming the policy\'s reason, recorded once with its outcome, as the agent\'s policy selects; shadow mode', async () => {
  const key = g.rt.keys.create('quiet').secret;
  const r = await chat('big', { ...bearer(analystKey.secret), 'x-request-id': 'denied-1' });
  assert.equal(r.status, 200, 'finance-tighten is audit-only');
  const allowed = (await eventsOf(r.requestId)).filter((e) => e.policy);
  assert.equal(allowed.length, 1, 'one event carries the decision');
  assert.deepEqual({ ...allowed[0].policy, would_deny: { ...allowed[0].policy?.would_deny, reason: '' } }, {
    name: 'analyst-models', version: allowed[0].policy?.version, rule: allowed[0].policy?.rule, decision: 'allow', reason: allowed[0].policy?.reason,
    would_deny: { policy: 'finance-tighten', rule: 'models.deny[0]', reason: '' },
  });
  assert.match(allowed[0].policy?.would_deny?.reason ?? '', /finance-tighten.*"big"/);
  const plain = (await eventsOf((await chat('chat', bearer(analystKey.secret))).requestId)).find((e) => e.policy);
  assert.equal(plain?.policy?.would_deny, undefined, 'nothing to report when the shadow agrees');

  const d = await chat('big', { ...bearer(key), 'x-request-id': 'denied-2' });
  assert.equal(d.status, 403, d.text);
  assert.equal(d.error?.code, 'policy_denied');
  const evs = await eventsOf(d.requestId);
  assert.equal(evs.length, 1, JSON.stringify(evs));
  const [ev] = evs;
  assert.equal(ev.type, 'decision');
  assert.equal(ev.policy?.decision, 'deny');
  assert.equal(ev.policy?.reason, d.error?.message, 'the agent is told the recorded reason');
  assert.ok(ev.policy?.version, 'the config version is evidence');
  assert.equal(ev.identity?.agent, 'quiet');
  assert.deepEqual([ev.model, ev.outcome], [undefined, undefined], 'quiet\'s policy records neither the route nor the outcome');
  assert.equal(ev.client_request_id, 'denied-2');
  assert.match(ev.trace_id ?? '', /^[0-9a-f]{32}$/, 'every event names its trace');

  const b = await chat('broken', bearer(analystKey.secret));
  assert.ok(b.status >= 500, b.text);
  const bev = (await eventsOf(b.requestId)).filter((e) => e.policy);
  assert.equal(bev.length, 1, JSON.stringify(bev));
  assert.deepEqual([bev[0].policy?.decision, bev[0].outcome?.status], ['allow', b.status]);
  const c = await chat('big', bearer(g.rt.keys.create('chatty').secret));
  const cev = await eventsOf(c.requestId);
  assert.deepEqual(cev.map((e) => [e.type, e.model, e.outcome?.status, e.outcome?.error_class, e.outcome?.error]), [['decision', { route: 'big' }, 403, 'client', c.error?.message]]);

  const samples = parseProm((await call('/metrics')).text);
  const count = (agent: string, effect: string): number => sumOf(samples, 'aam_policy_decisions_total', { agent, effect });
  assert.deepEqual([count('quiet', 'deny'), count('chatty', 'deny'), count('analyst', 'would_deny')], [1, 1, 1]);
});

test('rate limits: the third call in a minute is a 429 naming the limit, the counter and the policy, with retry-after', async () => {
  const key = g.rt.keys.create('chatty');
  const seen: Reply[] = [];
  for (let i = 0; i < 3; i++) seen.push(await chat('chat', bearer(key.secret)));
  assert.deepEqual(seen.map((r) => r.status), [200, 200, 429], seen.at(-1)?.text);
  const r = seen[2];
  assert.equal(r.error?.code, 'rate_limited');
  const m = /^rate limit exceeded: rpm limit of 2 for agent:spiffe:\/\/prod\/agent\/chatty \(policy chatty-rate\); retry after (\d+)s$/.exec(r.error?.message ?? '');
  assert.ok(m, r.error?.message);
  assert.equal(r.headers['retry-after'], m[1]);
  assert.ok(Number(m[1]) >= 1 && Number(m[1]) <= 60, m[1]);
  const [ev] = (await eventsOf(r.requestId)).filter((e) => e.policy);
  assert.deepEqual([ev.type, ev.policy?.decision, ev.outcome?.status, ev.outcome?.error_class], ['decision', 'allow', 429, 'client']);
});

test('budgets: what was spent is the real cost of each call (a failed call gives its reservation back); over it, a 429 until the reset', async () => {
  const key = bearer(g.rt.keys.create('spender').secret);
  const costs: number[] = [];
  let last: Reply | undefined;
  for (let i = 0; i < 40; i++) {
    // A call that never reaches an upstream bills nothing.
    const broken = await chat('pricey-broken', key);
    assert.ok(broken.status >= 500 || broken.status === 429, broken.text);
    last = await chat('pricey', key);
    if (last.status !== 200) break;
    const [ev] = (await eventsOf(last.requestId)).filter((e) => e.type === 'model_call');
    costs.push(ev.model?.cost_usd ?? Number.NaN);
  }
  assert.ok(costs.length >= 1 && last?.status === 429, `${costs.length} calls costing ${costs.join()}, then ${last?.text}`);
  assert.equal(last.error?.code, 'budget_exceeded');
  // Spent to the limit, or short of the next call's estimate (then what is left is said).
  const msg = last.error?.message ?? '';
  const m = /^daily budget of \$1 for \S+ (?:is exhausted \(\$(\d+\.\d{4}) spent|has \$(\d+\.\d{4}) left) .*it will reset at (\S+)$/.exec(msg);
  assert.ok(m, msg);
  const spent = m[1] ?? (1 - Number(m[2])).toFixed(4);
  assert.equal(spent, costs.reduce((a, b) => a + b, 0).toFixed(4), 'the spend is the sum of the real costs');
  const resetIn = (Date.parse(m[3]) - Date.now()) / 1000;
  assert.ok(resetIn > 1, m[3]);
  const retry = Number(last.headers['retry-after']);
  assert.ok(Math.abs(retry - resetIn) <= 5, `retry-after ${retry} vs reset in ${resetIn}`);
});

test('a fleet store that cannot answer refuses with 503 store_unavailable, naming the store; other errors pass unchanged', () => {
  for (const [store, name] of [['redis', 'Redis'], ['postgres', 'PostgreSQL']] as const) {
    const e = storeFailure(new StoreUnavailable(store, 'connect ECONNREFUSED'));
    assert.ok(e instanceof AamError);
    assert.deepEqual([e.status, e.code, e.headers], [503, 'store_unavailable', { 'retry-after': '1' }]);
    assert.equal(e.message, `${name} (the fleet store for budgets and rate limits) is unavailable, so aam refuses rather than skip a limit: connect ECONNREFUSED; retry shortly`);
  }
  const other = new Error('boom');
  assert.equal(storeFailure(other), other);
});
