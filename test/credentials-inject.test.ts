import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { SignJWT, generateKeyPair, jwtVerify, decodeJwt } from 'jose';
import { parseConfigTexts } from '../src/config/load.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { openVault, type Vault } from '../src/credentials/vault.ts';
import { createInjector, stripInboundAuth, type Principal } from '../src/credentials/inject.ts';
import { CredentialError } from '../src/credentials/errors.ts';
import { tempDir } from './helpers/temp.ts';

const CLIENT_SECRET = 'client-secret-NEEDLE-42xyz';
const A: Principal = { spiffeId: 'spiffe://test/agent/a', name: 'a' };
const B: Principal = { spiffeId: 'spiffe://test/agent/b', name: 'b' };

interface TokenServer { url: string; requests: Array<{ form: URLSearchParams; auth?: string }>; mode: { status: number; delayMs: number; expiresIn?: number; error?: string }; close(): Promise<void> }

const servers: TokenServer[] = [];
after(() => Promise.all(servers.map((s) => s.close())));

async function tokenServer(): Promise<TokenServer> {
  const requests: TokenServer['requests'] = [];
  const mode: TokenServer['mode'] = { status: 200, delayMs: 0, expiresIn: 3600 };
  let n = 0;
  const body = async (req: IncomingMessage) => { let s = ''; for await (const c of req) s += c; return s; };
  const server: Server = createServer(async (req, res) => {
    const form = new URLSearchParams(await body(req));
    requests.push({ form, auth: req.headers.authorization });
    if (mode.delayMs) await new Promise((r) => setTimeout(r, mode.delayMs));
    if (mode.status !== 200) {
      res.writeHead(mode.status, { 'content-type': 'application/json' });
      // A hostile/buggy endpoint echoing what it got must not make it into our error.
      res.end(JSON.stringify({ error: mode.error ?? 'server_error', error_description: `got ${req.headers.authorization} ${form}` }));
      return;
    }
    n++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ access_token: `access-token-${n}-${form.get('subject_token') ? 'x' : 'cc'}`, token_type: 'Bearer', ...(mode.expiresIn ? { expires_in: mode.expiresIn } : {}) }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  let closed = false;
  const ts: TokenServer = { url: `http://127.0.0.1:${port}/token`, requests, mode, close: () => new Promise((r) => {
    if (closed) return r();
    closed = true;
    server.closeAllConnections();
    server.close(() => r());
  }) };
  servers.push(ts);
  return ts;
}

function vaultWith(spec: string, env: Record<string, string> = {}, now?: () => number): Vault {
  const dir = tempDir('aam-inj-');
  const config = parseConfigTexts([{ file: 't.yaml', text: `apiVersion: access.envisionai.dev/v1\nkind: Credential\nmetadata: { name: up }\nspec: ${spec}` }]);
  return openVault({ dataDir: dir, db: openDatabase(dir), config, env, refreshMs: 0, now });
}

const fast = { attempts: 3, baseMs: 1, maxMs: 5 };

test('oauth2 client credentials: token fetched with basic client auth, cached, refreshed 60 s before expiry', async () => {
  const ts = await tokenServer();
  let clock = 1_000_000;
  const vault = vaultWith(`{ env: CS, oauth2: { token_url: "${ts.url}", client_id: my-client, scope: "read write" } }`, { CS: CLIENT_SECRET }, () => clock);
  const inj = createInjector({ vault, now: () => clock, retry: fast });
  ts.mode.expiresIn = 120;
  const first = await inj.injectionFor('up', { principal: A });
  assert.equal(first.headers.authorization, 'Bearer access-token-1-cc');
  assert.deepEqual(first.credential, { name: 'up', version: 1, kind: 'oauth2_client_credentials' });
  assert.equal(ts.requests.length, 1);
  const req = ts.requests[0];
  assert.equal(req.form.get('grant_type'), 'client_credentials');
  assert.equal(req.form.get('scope'), 'read write');
  assert.equal(req.auth, 'Basic ' + Buffer.from(`my-client:${CLIENT_SECRET}`).toString('base64'));
  clock += 59_000;
  assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, 'Bearer access-token-1-cc');
  assert.equal(ts.requests.length, 1, 'cached');
  clock += 2_000; // now 61 s in: within 60 s of expiry
  assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, 'Bearer access-token-2-cc');
  assert.equal(ts.requests.length, 2, 'refreshed');
  // The token itself is scrubbed from responses too.
  assert.equal(vault.scrubber().scrub('echo: Bearer access-token-2-cc').text, 'echo: Bearer [REDACTED:up]');
  vault.close();
  await ts.close();
});

test('oauth2: 50 concurrent callers cause exactly one token fetch', async () => {
  const ts = await tokenServer();
  ts.mode.delayMs = 50;
  const vault = vaultWith(`{ env: CS, oauth2: { token_url: "${ts.url}", client_id: c, auth_method: client_secret_post } }`, { CS: CLIENT_SECRET });
  const inj = createInjector({ vault, retry: fast });
  const all = await Promise.all(Array.from({ length: 50 }, () => inj.injectionFor('up', { principal: A })));
  assert.equal(ts.requests.length, 1);
  assert.ok(all.every((r) => r.headers.authorization === 'Bearer access-token-1-cc'));
  assert.equal(ts.requests[0].form.get('client_secret'), CLIENT_SECRET);
  assert.equal(ts.requests[0].auth, undefined);
  vault.close();
  await ts.close();
});

test('oauth2: token endpoint 500 -> 502 CredentialError after retries, message without secrets', async () => {
  const ts = await tokenServer();
  ts.mode.status = 500;
  const vault = vaultWith(`{ env: CS, oauth2: { token_url: "${ts.url}", client_id: c } }`, { CS: CLIENT_SECRET });
  const inj = createInjector({ vault, retry: fast });
  await assert.rejects(inj.injectionFor('up', { principal: A }), (e: unknown) => {
    assert.ok(e instanceof CredentialError);
    assert.equal(e.status, 502);
    assert.equal(e.code, 'credential_unavailable');
    assert.match(e.message, /credential "up".*HTTP 500 server_error/);
    assert.ok(!e.message.includes(CLIENT_SECRET) && !e.message.includes(Buffer.from(`c:${CLIENT_SECRET}`).toString('base64')));
    return true;
  });
  assert.equal(ts.requests.length, 3, 'retried up to 3 attempts');
  // A rejected client is not retried.
  ts.mode.status = 401; ts.mode.error = 'invalid_client';
  await assert.rejects(inj.injectionFor('up', { principal: A }), /HTTP 401 invalid_client/);
  assert.equal(ts.requests.length, 4);
  // And recovers once the endpoint is back.
  ts.mode.status = 200;
  assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, 'Bearer access-token-1-cc');
  vault.close();
  await ts.close();
});

test('oauth2: endpoint down (connection refused) -> 502', async () => {
  const ts = await tokenServer();
  const url = ts.url;
  await ts.close();
  const vault = vaultWith(`{ env: CS, oauth2: { token_url: "${url}", client_id: c } }`, { CS: CLIENT_SECRET });
  const inj = createInjector({ vault, retry: fast });
  await assert.rejects(inj.injectionFor('up'), (e: unknown) => e instanceof CredentialError && e.status === 502 && /connection failed/.test(e.message));
  vault.close();
});

test('per-principal isolation: A\'s token is never returned for B, even when B\'s fetch fails', async () => {
  const ts = await tokenServer();
  const vault = vaultWith(`{ env: CS, oauth2: { token_url: "${ts.url}", client_id: c } }`, { CS: CLIENT_SECRET });
  const inj = createInjector({ vault, retry: fast });
  const [a1, b1] = await Promise.all([inj.injectionFor('up', { principal: A }), inj.injectionFor('up', { principal: B })]);
  assert.notEqual(a1.headers.authorization, b1.headers.authorization);
  assert.equal(ts.requests.length, 2);
  assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, a1.headers.authorization);
  assert.equal((await inj.injectionFor('up', { principal: B })).headers.authorization, b1.headers.authorization);
  inj.invalidate('up', B);
  ts.mode.status = 503;
  await assert.rejects(inj.injectionFor('up', { principal: B }), (e: unknown) => e instanceof CredentialError && e.status === 502);
  // A still has its own token; B got an error, not A's token.
  assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, a1.headers.authorization);
  vault.close();
  await ts.close();
});

test('a refresh failure is bridged by the same principal\'s still-valid token', async () => {
  const ts = await tokenServer();
  let clock = 0;
  ts.mode.expiresIn = 120;
  const vault = vaultWith(`{ env: CS, oauth2: { token_url: "${ts.url}", client_id: c } }`, { CS: CLIENT_SECRET });
  const inj = createInjector({ vault, retry: fast, now: () => clock });
  const t1 = (await inj.injectionFor('up', { principal: A })).headers.authorization;
  ts.mode.status = 500;
  clock = 90_000; // past refresh point, before expiry
  assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, t1);
  clock = 121_000; // expired: no token to bridge with
  await assert.rejects(inj.injectionFor('up', { principal: A }), /HTTP 500/);
  vault.close();
  await ts.close();
});

test('on-behalf-of: JWT assertion with the agent as subject, act claim, cached per principal', async () => {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  let signs = 0;
  const sign = async (claims: Record<string, unknown>) => { signs++; return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).sign(privateKey); };
  const vault = vaultWith('{ kind: on_behalf_of, obo: { audience: "https://crm.example", ttl_seconds: 120 } }');
  const inj = createInjector({ vault, sign, issuer: 'spiffe://test/aam' });
  const a = await inj.injectionFor('up', { principal: A });
  const jwt = a.headers.authorization.replace(/^Bearer /, '');
  const { payload } = await jwtVerify(jwt, publicKey, { audience: 'https://crm.example', issuer: 'spiffe://test/aam' });
  assert.equal(payload.sub, A.spiffeId);
  assert.deepEqual(payload.act, { sub: 'spiffe://test/aam' });
  assert.equal((payload.exp as number) - (payload.iat as number), 120);
  assert.equal(typeof payload.jti, 'string');
  assert.equal(payload.aam_agent, 'a');
  assert.equal(a.credential.kind, 'on_behalf_of');
  // cached for A, separate for B
  assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, a.headers.authorization);
  const b = await inj.injectionFor('up', { principal: B });
  assert.equal(decodeJwt(b.headers.authorization.slice(7)).sub, B.spiffeId);
  assert.notEqual(decodeJwt(b.headers.authorization.slice(7)).jti, payload.jti);
  assert.equal(signs, 2);
  // Without a principal it is refused rather than sent as someone.
  await assert.rejects(inj.injectionFor('up'), (e: unknown) => e instanceof CredentialError && e.code === 'credential_principal');
  vault.close();
});

test('on-behalf-of with RFC 8693 token exchange: the assertion is exchanged per principal', async () => {
  const ts = await tokenServer();
  const { privateKey } = await generateKeyPair('ES256');
  const sign = async (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
  const vault = vaultWith(`{ kind: on_behalf_of, env: XS, obo: { audience: sts, token_exchange: { token_url: "${ts.url}", client_id: aam, audience: crm } } }`, { XS: CLIENT_SECRET });
  const inj = createInjector({ vault, sign, issuer: 'spiffe://test/aam', retry: fast });
  const a = await inj.injectionFor('up', { principal: A });
  assert.equal(a.headers.authorization, 'Bearer access-token-1-x');
  const f = ts.requests[0].form;
  assert.equal(f.get('grant_type'), 'urn:ietf:params:oauth:grant-type:token-exchange');
  assert.equal(f.get('subject_token_type'), 'urn:ietf:params:oauth:token-type:jwt');
  assert.equal(f.get('audience'), 'crm');
  const claims = decodeJwt(f.get('subject_token') as string);
  assert.equal(claims.sub, A.spiffeId);
  assert.deepEqual(claims.may_act, { sub: 'spiffe://test/aam' });
  const b = await inj.injectionFor('up', { principal: B });
  assert.notEqual(b.headers.authorization, a.headers.authorization);
  vault.close();
  await ts.close();
});

test('static styles: basic, custom header with prefix, query, api-key, env for stdio', async () => {
  const basic = vaultWith('{ env: P, kind: basic, username: alice }', { P: 'pa:ss-word-123' });
  const i1 = createInjector({ vault: basic });
  assert.deepEqual((await i1.injectionFor('up')).headers, { authorization: 'Basic ' + Buffer.from('alice:pa:ss-word-123').toString('base64') });
  const hdr = vaultWith('{ env: P, kind: header, inject: { header: X-Api-Token, prefix: "Key " } }', { P: 'header-secret-123' });
  assert.deepEqual((await createInjector({ vault: hdr }).injectionFor('up', { defaultStyle: 'x-api-key' })).headers, { 'x-api-token': 'Key header-secret-123' });
  const q = vaultWith('{ env: P, kind: query, inject: { query: api_key } }', { P: 'query-secret-123' });
  const qi = await createInjector({ vault: q }).injectionFor('up');
  assert.deepEqual(qi.query, { api_key: 'query-secret-123' });
  assert.deepEqual(qi.headers, {});
  const az = vaultWith('{ env: P }', { P: 'azure-secret-1234' });
  const azi = createInjector({ vault: az });
  assert.deepEqual((await azi.injectionFor('up', { defaultStyle: 'api-key' })).headers, { 'api-key': 'azure-secret-1234' });
  assert.deepEqual((await azi.environmentFor('up', 'API_TOKEN')).env, { API_TOKEN: 'azure-secret-1234' });
  await assert.rejects(azi.injectionFor('nope'), (e: unknown) => e instanceof CredentialError && e.code === 'credential_unknown');
  for (const v of [basic, hdr, q, az]) v.close();
});

test('stripInboundAuth removes agent credentials, cookies and hop-by-hop headers', () => {
  const out = stripInboundAuth({
    Authorization: 'Bearer aam_agentkey', 'x-api-key': 'aam_k', 'api-key': 'k', 'proxy-authorization': 'p', cookie: 'c=1',
    connection: 'keep-alive, x-custom-hop', 'keep-alive': 'timeout=5', te: 'trailers', trailer: 'x', 'transfer-encoding': 'chunked',
    upgrade: 'h2c', host: 'aam.local', 'content-length': '12', 'x-custom-hop': '1',
    'content-type': 'application/json', accept: 'text/event-stream', 'x-request-id': 'r1', 'anthropic-version': '2023-06-01',
  });
  assert.deepEqual(out, { 'content-type': 'application/json', accept: 'text/event-stream', 'x-request-id': 'r1', 'anthropic-version': '2023-06-01' });
});
