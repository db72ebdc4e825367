// Injection at the last hop (src/credentials/inject.ts) as the upstream and the agent meet it,
// written for the mutants `npm run mutate -- credentials -- --mutate src/credentials/inject.ts`
// left alive: where each kind and style puts the secret (exact headers), what a token endpoint is
// sent (exact forms), when a cached token is used, refreshed, bridged or evicted (a settable
// clock), that one agent's token never reaches another, and the claims of an on-behalf-of
// assertion. The token endpoint is a recording fake fetch; expected values are written here. No
// gateway and no sockets: a mutant it kills costs about a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { parseConfigTexts } from '../src/config/load.ts';
import type { ConfigSet } from '../src/config/schema.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { openVault, type Vault } from '../src/credentials/vault.ts';
import { awsKeyId, createInjector, perPrincipal, stripInboundAuth, type InjectorOptions, type Principal } from '../src/credentials/inject.ts';
import type { FetchLike } from '../src/credentials/oauth.ts';
import { awsScrubParts, awsSigner, parseAwsKeys } from '../src/credentials/aws-sigv4.ts';
import { parseServiceAccount, serviceAccountScrubParts } from '../src/credentials/google-sa.ts';
import { tempDir } from './helpers/temp.ts';

const A: Principal = { spiffeId: 'spiffe://t/agent/a', name: 'a' };
const B: Principal = { spiffeId: 'spiffe://t/agent/b', name: 'b' };
const C: Principal = { spiffeId: 'spiffe://t/agent/c', name: 'c' };
const MASTER = { AAM_MASTER_KEY: Buffer.alloc(32, 5).toString('base64') };

/** A vault of these Credentials; `edit` changes the loaded config first (to build one the loader would refuse). */
function vaultOf(docs: Record<string, string>, env: Record<string, string> = {}, now?: () => number, edit?: (c: ConfigSet) => void): Vault {
  const dir = tempDir('aam-inj-mut-');
  const text = Object.entries(docs).map(([n, spec]) => `apiVersion: access.envisionai.dev/v1\nkind: Credential\nmetadata: { name: ${n} }\nspec: ${spec}`).join('\n---\n');
  const config = parseConfigTexts([{ file: 't.yaml', text }]);
  edit?.(config);
  return openVault({ dataDir: dir, db: openDatabase(dir), config, env: { ...MASTER, ...env }, refreshMs: 0, now, strict: false });
}

interface Sent { url: string; headers: Record<string, string>; form: Record<string, string> }

/** A token endpoint: answers each request with the next token (or what `answer` says) and records it. */
function endpoint(answer?: (n: number) => { status: number; body: unknown }) {
  const sent: Sent[] = [];
  const fetch: FetchLike = async (url, init) => {
    sent.push({ url, headers: init.headers, form: Object.fromEntries(new URLSearchParams(init.body)) });
    const a = answer?.(sent.length) ?? { status: 200, body: { access_token: `tok-${sent.length}-abcdefgh`, token_type: 'Bearer', expires_in: 3600 } };
    return { status: a.status, headers: { get: () => null }, text: async () => JSON.stringify(a.body) };
  };
  return { sent, fetch };
}

const fast: Partial<InjectorOptions> = { sleep: async () => {}, retry: { attempts: 2, baseMs: 1, maxMs: 1 } };
const basicOf = (user: string, pw: string): string => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;

test('static secrets go exactly where the Credential or the provider\'s convention says, and nowhere else', async () => {
  const vault = vaultOf({
    plain: '{ env: S }',
    bearer: '{ env: S, kind: bearer }',
    bearerPrefix: '{ env: S, kind: bearer, inject: { prefix: "Token " } }',
    prefixed: '{ env: S, inject: { prefix: "Key " } }',
    header: '{ env: S, inject: { header: X-Custom-Key } }',
    headerPrefix: '{ env: S, inject: { header: X-Custom-Key, prefix: "P " } }',
    query: '{ env: S, inject: { query: api_key } }',
    basicUser: '{ env: S, kind: basic, username: ann }',
    basicPair: '{ env: P, kind: basic }',
    basicHeader: '{ env: S, kind: basic, username: ann, inject: { header: Proxy-Authorization } }',
  }, { S: 'static-secret-12345', P: 'bob:pw-12345678' });
  const inj = createInjector({ vault });
  const h = async (name: string, style?: Parameters<typeof inj.injectionFor>[1]) => {
    const r = await inj.injectionFor(name, style);
    return { headers: r.headers, query: r.query };
  };
  const S = 'static-secret-12345';
  assert.deepEqual(await h('plain'), { headers: { authorization: `Bearer ${S}` }, query: undefined });
  assert.deepEqual(await h('plain', { defaultStyle: 'x-api-key' }), { headers: { 'x-api-key': S }, query: undefined });
  assert.deepEqual(await h('plain', { defaultStyle: 'api-key' }), { headers: { 'api-key': S }, query: undefined });
  assert.deepEqual(await h('plain', { defaultStyle: 'query:key' }), { headers: {}, query: { key: S } });
  assert.deepEqual(await h('plain', { defaultStyle: 'query:api-version-key' }), { headers: {}, query: { 'api-version-key': S } });
  assert.deepEqual(await h('plain', { defaultStyle: 'header:X-Goog-Api-Key' }), { headers: { 'x-goog-api-key': S }, query: undefined });
  // A bearer kind ignores the provider's style; a prefix replaces "Bearer ".
  assert.deepEqual(await h('bearer', { defaultStyle: 'x-api-key' }), { headers: { authorization: `Bearer ${S}` }, query: undefined });
  assert.deepEqual(await h('bearerPrefix'), { headers: { authorization: `Token ${S}` }, query: undefined });
  // A prefix alone applies to the Authorization header, and only when the style is bearer.
  assert.deepEqual(await h('prefixed'), { headers: { authorization: `Key ${S}` }, query: undefined });
  assert.deepEqual(await h('prefixed', { defaultStyle: 'x-api-key' }), { headers: { 'x-api-key': S }, query: undefined });
  assert.deepEqual(await h('header', { defaultStyle: 'query:key' }), { headers: { 'x-custom-key': S }, query: undefined });
  assert.deepEqual(await h('headerPrefix'), { headers: { 'x-custom-key': `P ${S}` }, query: undefined });
  assert.deepEqual(await h('query', { defaultStyle: 'x-api-key' }), { headers: {}, query: { api_key: S } });
  assert.deepEqual(await h('basicUser'), { headers: { authorization: basicOf('ann', S) }, query: undefined });
  assert.deepEqual(await h('basicPair'), { headers: { authorization: basicOf('bob', 'pw-12345678') }, query: undefined });
  assert.deepEqual(await h('basicHeader'), { headers: { 'proxy-authorization': basicOf('ann', S) }, query: undefined });
  const env = await inj.environmentFor('basicPair', 'PASSWORD');
  assert.deepEqual(env, { env: { PASSWORD: 'bob:pw-12345678' }, credential: { name: 'basicPair', version: 1, kind: 'basic' } });
  vault.close();
});

test('client credentials: the exact form and client authentication, per principal, refreshed at min(60 s, half the lifetime) before expiry', async () => {
  let clock = 1_000_000;
  const ep = endpoint((n) => ({ status: 200, body: { access_token: `cc-token-${n}-abcdefgh`, token_type: 'bearer', expires_in: n === 1 ? 60 : 3600 } }));
  const vault = vaultOf({
    basic: '{ env: CS, oauth2: { token_url: "https://idp.example/token", client_id: "my client", scope: "a b", audience: "https://api.example" } }',
    post: '{ env: CS, oauth2: { token_url: "https://idp.example/post", client_id: cid, auth_method: client_secret_post } }',
  }, { CS: 'client:secret&1234' }, () => clock);
  const inj = createInjector({ vault, fetch: ep.fetch, now: () => clock, ...fast });
  const first = await inj.injectionFor('basic', { principal: A, defaultStyle: 'x-api-key' });
  assert.deepEqual(first.headers, { authorization: 'Bearer cc-token-1-abcdefgh' });
  assert.deepEqual(first.credential, { name: 'basic', version: 1, kind: 'oauth2_client_credentials' });
  assert.deepEqual(ep.sent[0], {
    url: 'https://idp.example/token',
    // RFC 6749 2.3.1: id and secret are form-encoded before base64.
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: `Basic ${Buffer.from('my%20client:client%3Asecret%261234').toString('base64')}` },
    form: { grant_type: 'client_credentials', scope: 'a b', audience: 'https://api.example' },
  });
  // 60 s lifetime: refreshed 30 s before expiry (half of it), not 60 s (at once).
  clock += 29_999;
  assert.equal((await inj.injectionFor('basic', { principal: A })).headers.authorization, 'Bearer cc-token-1-abcdefgh');
  clock += 1;
  assert.equal((await inj.injectionFor('basic', { principal: A })).headers.authorization, 'Bearer cc-token-2-abcdefgh');
  // 3600 s lifetime: refreshed 60 s before expiry.
  clock += 3_540_000 - 1;
  assert.equal((await inj.injectionFor('basic', { principal: A })).headers.authorization, 'Bearer cc-token-2-abcdefgh');
  clock += 1;
  assert.equal((await inj.injectionFor('basic', { principal: A })).headers.authorization, 'Bearer cc-token-3-abcdefgh');
  // Another principal gets its own token, never A's.
  assert.equal((await inj.injectionFor('basic', { principal: B })).headers.authorization, 'Bearer cc-token-4-abcdefgh');
  assert.equal(ep.sent.length, 4);
  // client_secret_post: id and secret in the form, no Authorization header.
  await inj.injectionFor('post', { principal: A });
  assert.deepEqual(ep.sent[4], {
    url: 'https://idp.example/post',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    form: { grant_type: 'client_credentials', client_id: 'cid', client_secret: 'client:secret&1234' },
  });
  // Tokens are scrubbed from what agents see, under the credential's name.
  assert.equal(vault.scrubber().scrub('cc-token-3-abcdefgh cc-token-5-abcdefgh').text, '[REDACTED:basic] [REDACTED:post]');
  vault.close();
});

test('without expires_in a token lives the default TTL; a failed refresh is bridged only until the old token expires; invalidate drops one principal or all', async () => {
  let clock = 0;
  let fail = false;
  const ep = endpoint((n) => fail ? { status: 500, body: { error: 'server_error' } } : { status: 200, body: { access_token: `tok-${n}-abcdefgh` } });
  const vault = vaultOf({ up: '{ env: CS, oauth2: { token_url: "https://idp.example/token", client_id: c } }', other: '{ env: CS, oauth2: { token_url: "https://idp.example/token", client_id: d } }' }, { CS: 'client-secret-1234' });
  const inj = createInjector({ vault, fetch: ep.fetch, now: () => clock, defaultTokenTtlMs: 10_000, refreshMarginMs: 2_000, ...fast });
  const tok = async (p: Principal, name = 'up') => (await inj.injectionFor(name, { principal: p })).headers.authorization;
  assert.equal(await tok(A), 'Bearer tok-1-abcdefgh');
  clock = 7_999;
  assert.equal(await tok(A), 'Bearer tok-1-abcdefgh');
  fail = true;
  clock = 8_000;
  assert.equal(await tok(A), 'Bearer tok-1-abcdefgh', 'refresh failed: the still-valid token bridges');
  assert.equal(ep.sent.length, 3, 'the refresh was tried (twice)');
  clock = 9_999;
  assert.equal(await tok(A), 'Bearer tok-1-abcdefgh');
  clock = 10_000;
  await assert.rejects(tok(A), { code: 'credential_unavailable', status: 502, message: 'could not obtain an upstream token for credential "up" from idp.example: HTTP 500 server_error. Check the token endpoint and the client credentials configured in aam.' });
  fail = false;
  assert.equal(await tok(A), 'Bearer tok-8-abcdefgh');
  assert.equal(await tok(B), 'Bearer tok-9-abcdefgh');
  assert.equal(await tok(A, 'other'), 'Bearer tok-10-abcdefgh');
  inj.invalidate('up', A);
  assert.equal(await tok(A), 'Bearer tok-11-abcdefgh', 'A\'s token dropped');
  assert.equal(await tok(B), 'Bearer tok-9-abcdefgh', 'B\'s kept');
  assert.equal(await tok(A, 'other'), 'Bearer tok-10-abcdefgh', 'another credential\'s kept');
  inj.invalidate('up');
  assert.equal(await tok(B), 'Bearer tok-12-abcdefgh');
  assert.equal(await tok(A), 'Bearer tok-13-abcdefgh');
  assert.equal(await tok(A, 'other'), 'Bearer tok-10-abcdefgh');
  vault.close();
});

test('defaults (no fetch, sleep, retry or TTL given): a real token endpoint over HTTP, a 503 retried after a real backoff, a token without expires_in kept 5 minutes and refreshed 1 minute before', async () => {
  const forms: Array<Record<string, string>> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      forms.push(Object.fromEntries(new URLSearchParams(body)));
      const n = forms.length;
      res.writeHead(n === 1 ? 503 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(n === 1 ? { error: 'temporarily_unavailable' } : { access_token: `real-${n}-abcdefgh` }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
    let clock = 5_000_000;
    const vault = vaultOf({ up: `{ env: CS, oauth2: { token_url: "${url}", client_id: c } }` }, { CS: 'client-secret-1234' });
    const inj = createInjector({ vault, now: () => clock });
    const started = performance.now();
    assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, 'Bearer real-2-abcdefgh');
    // The default backoff after a first failure is between 100 and 200 ms (half to all of 200 ms).
    assert.ok(performance.now() - started >= 95, `retried after ${performance.now() - started} ms`);
    assert.equal(forms.length, 2);
    assert.deepEqual(forms[1], { grant_type: 'client_credentials' });
    clock += 240_000 - 1;
    assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, 'Bearer real-2-abcdefgh');
    clock += 1;
    assert.equal((await inj.injectionFor('up', { principal: A })).headers.authorization, 'Bearer real-3-abcdefgh');
    vault.close();
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('the token cache is bounded: the oldest slot is dropped first', async () => {
  const ep = endpoint();
  const vault = vaultOf({ up: '{ env: CS, oauth2: { token_url: "https://idp.example/token", client_id: c } }' }, { CS: 'client-secret-1234' });
  const inj = createInjector({ vault, fetch: ep.fetch, maxCachedTokens: 2, ...fast });
  const tok = async (p: Principal) => (await inj.injectionFor('up', { principal: p })).headers.authorization;
  assert.equal(await tok(A), 'Bearer tok-1-abcdefgh');
  assert.equal(await tok(B), 'Bearer tok-2-abcdefgh');
  assert.equal(await tok(A), 'Bearer tok-1-abcdefgh');
  assert.equal(await tok(C), 'Bearer tok-3-abcdefgh');
  assert.equal(await tok(B), 'Bearer tok-2-abcdefgh', 'B is still cached');
  assert.equal(await tok(A), 'Bearer tok-4-abcdefgh', 'A, the oldest, was dropped for C');
  vault.close();
});

test('on-behalf-of: the assertion\'s exact claims, its lifetime and refresh point; refused without an agent or a signer', async () => {
  let clock = 1_700_000_000_500;
  const signed: Array<Record<string, unknown>> = [];
  const sign = async (claims: Record<string, unknown>) => { signed.push(claims); return `assertion-${signed.length}-for-${String(claims.sub)}`; };
  // The vault and the injector share the clock, as both read Date.now in aam.
  const vault = vaultOf({ obo: '{ obo: { audience: "https://crm.example" } }', short: '{ kind: on_behalf_of, obo: { audience: x, ttl_seconds: 60 } }' }, {}, () => clock);
  const inj = createInjector({ vault, sign, issuer: 'spiffe://t/aam', now: () => clock });
  const a = await inj.injectionFor('obo', { principal: A, defaultStyle: 'api-key' });
  assert.deepEqual(a.headers, { authorization: 'Bearer assertion-1-for-spiffe://t/agent/a' });
  assert.deepEqual(a.credential, { name: 'obo', version: 0, kind: 'on_behalf_of' });
  const { jti, ...rest } = signed[0];
  assert.match(String(jti), /^[0-9a-f-]{36}$/);
  const iat = 1_700_000_000;
  assert.deepEqual(rest, { sub: A.spiffeId, aud: 'https://crm.example', iat, nbf: iat, exp: iat + 300, aam_agent: 'a', iss: 'spiffe://t/aam', act: { sub: 'spiffe://t/aam' } });
  // 300 s: re-signed 60 s before exp; until then the same assertion.
  clock = (iat + 240) * 1000 - 1;
  assert.equal((await inj.injectionFor('obo', { principal: A })).headers.authorization, 'Bearer assertion-1-for-spiffe://t/agent/a');
  clock += 1;
  assert.equal((await inj.injectionFor('obo', { principal: A })).headers.authorization, 'Bearer assertion-2-for-spiffe://t/agent/a');
  assert.notEqual(signed[1].jti, jti);
  // B gets its own, with B as subject.
  assert.equal((await inj.injectionFor('obo', { principal: B })).headers.authorization, 'Bearer assertion-3-for-spiffe://t/agent/b');
  // A 60 s assertion is re-signed after half its life.
  const t0 = clock;
  await inj.injectionFor('short', { principal: A });
  assert.equal((signed[3].exp as number) - (signed[3].iat as number), 60);
  clock = Math.floor(t0 / 1000) * 1000 + 30_000 - 1;
  await inj.injectionFor('short', { principal: A });
  assert.equal(signed.length, 4);
  clock += 1;
  await inj.injectionFor('short', { principal: A });
  assert.equal(signed.length, 5);
  // The assertion is scrubbed like a token.
  assert.equal(vault.scrubber().scrub('assertion-3-for-spiffe://t/agent/b').text, '[REDACTED:obo]');
  // A stdio MCP server started for B gets B's assertion in its environment.
  assert.deepEqual(await inj.environmentFor('obo', 'TOKEN', { principal: B }), { env: { TOKEN: 'assertion-3-for-spiffe://t/agent/b' }, credential: { name: 'obo', version: 0, kind: 'on_behalf_of' } });
  await assert.rejects(inj.injectionFor('obo'), {
    code: 'credential_principal', status: 500, credential: 'obo',
    message: 'Credential "obo" acts on behalf of the calling agent, but this call has no agent identity; it is not sent without one',
  });
  // Without an issuer: no iss, act or may_act.
  const bare = createInjector({ vault, sign, now: () => clock });
  await bare.injectionFor('obo', { principal: C });
  assert.deepEqual(Object.keys(signed.at(-1)!).sort(), ['aam_agent', 'aud', 'exp', 'iat', 'jti', 'nbf', 'sub']);
  await assert.rejects(createInjector({ vault }).injectionFor('obo', { principal: A }), {
    code: 'credential_config', status: 500, credential: 'obo', message: 'Credential "obo" is on-behalf-of but aam has no signer configured',
  });
  vault.close();
});

test('token exchange: the exact RFC 8693 form, client authentication, and a token that never outlives its assertion', async () => {
  let clock = 1_700_000_000_000;
  const signed: Array<Record<string, unknown>> = [];
  const sign = async (claims: Record<string, unknown>) => { signed.push(claims); return `subject-jwt-${signed.length}-${String(claims.sub)}`; };
  const ep = endpoint((n) => ({ status: 200, body: { access_token: `exchanged-${n}-abcdefgh`, token_type: 'N_A', expires_in: n === 1 ? 3600 : 100 } }));
  const url = 'https://sts.example/token';
  const vault = vaultOf({
    secret: `{ kind: on_behalf_of, env: XS, obo: { audience: sts, ttl_seconds: 600, token_exchange: { token_url: "${url}", client_id: aam, audience: crm, scope: "read" } } }`,
    public: `{ obo: { audience: sts, token_exchange: { token_url: "${url}", client_id: pub } } }`,
    anon: `{ obo: { audience: sts, token_exchange: { token_url: "${url}" } } }`,
  }, { XS: 'exchange-secret-1234' });
  const inj = createInjector({ vault, sign, issuer: 'spiffe://t/aam', fetch: ep.fetch, now: () => clock, ...fast });
  assert.equal((await inj.injectionFor('secret', { principal: A })).headers.authorization, 'Bearer exchanged-1-abcdefgh');
  assert.deepEqual(ep.sent[0], {
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: basicOf('aam', 'exchange-secret-1234') },
    form: {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'subject-jwt-1-spiffe://t/agent/a',
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience: 'crm', scope: 'read',
    },
  });
  assert.deepEqual(signed[0].may_act, { sub: 'spiffe://t/aam' });
  // The token (3600 s) is cut to the assertion's 600 s, refreshed 60 s before that.
  clock += 540_000 - 1;
  assert.equal((await inj.injectionFor('secret', { principal: A })).headers.authorization, 'Bearer exchanged-1-abcdefgh');
  clock += 1;
  assert.equal((await inj.injectionFor('secret', { principal: A })).headers.authorization, 'Bearer exchanged-2-abcdefgh');
  // A shorter token (100 s) keeps its own lifetime: refreshed 50 s in.
  clock += 50_000 - 1;
  assert.equal((await inj.injectionFor('secret', { principal: A })).headers.authorization, 'Bearer exchanged-2-abcdefgh');
  clock += 1;
  assert.equal((await inj.injectionFor('secret', { principal: A })).headers.authorization, 'Bearer exchanged-3-abcdefgh');
  // A public client sends its id in the form; no client id, no client authentication at all.
  await inj.injectionFor('public', { principal: A });
  assert.equal(ep.sent[3].headers.authorization, undefined);
  assert.equal(ep.sent[3].form.client_id, 'pub');
  assert.equal(ep.sent[3].form.audience, undefined);
  assert.equal(ep.sent[3].form.scope, undefined);
  await inj.injectionFor('anon', { principal: A });
  assert.equal(ep.sent[4].headers.authorization, undefined);
  assert.equal(ep.sent[4].form.client_id, undefined);
  vault.close();
});

test('token exchange: a token shorter than its assertion is never sent past its own expiry, even when its refresh fails', async () => {
  const t0 = 1_700_000_000_000;
  let clock = t0;
  let down = false;
  const sign = async () => 'subject-jwt-abcdefgh';
  const ep = endpoint((n) => (down ? { status: 503, body: {} } : { status: 200, body: { access_token: `short-${n}-abcdefgh`, expires_in: 100 } }));
  const vault = vaultOf({ x: '{ obo: { audience: sts, ttl_seconds: 600, token_exchange: { token_url: "https://sts.example/token" } } }' });
  const inj = createInjector({ vault, sign, fetch: ep.fetch, now: () => clock, ...fast });
  const tok = async () => (await inj.injectionFor('x', { principal: A })).headers.authorization;
  assert.equal(await tok(), 'Bearer short-1-abcdefgh');
  down = true;
  // Refreshed at 50 s (half of 100 s); the endpoint is down, so the token bridges until 100 s, not the assertion's 600 s.
  clock = t0 + 50_000;
  assert.equal(await tok(), 'Bearer short-1-abcdefgh');
  clock = t0 + 99_999;
  assert.equal(await tok(), 'Bearer short-1-abcdefgh');
  clock = t0 + 100_000;
  await assert.rejects(tok(), { code: 'credential_unavailable', status: 502, credential: 'x' });
  vault.close();
});

test('token exchange: a token that ends exactly with its assertion keeps its own refresh point', async () => {
  // Half a second into a second: the assertion (60 s, from the whole second) and a 59.5 s token both end at iat + 60 s.
  const iat = 1_700_000_000;
  let clock = iat * 1000 + 500;
  const ep = endpoint((n) => ({ status: 200, body: { access_token: `edge-${n}-abcdefgh`, expires_in: 59.5 } }));
  const vault = vaultOf({ x: '{ obo: { audience: sts, ttl_seconds: 60, token_exchange: { token_url: "https://sts.example/token" } } }' });
  const inj = createInjector({ vault, sign: async () => 'subject-jwt-abcdefgh', fetch: ep.fetch, now: () => clock, ...fast });
  const tok = async () => (await inj.injectionFor('x', { principal: A })).headers.authorization;
  assert.equal(await tok(), 'Bearer edge-1-abcdefgh');
  // The token's refresh point: 59.5 s / 2 = 29.75 s after it was obtained (the assertion's would be 30 s after iat).
  clock = iat * 1000 + 500 + 29_750 - 1;
  assert.equal(await tok(), 'Bearer edge-1-abcdefgh');
  assert.equal(ep.sent.length, 1);
  clock += 1;
  assert.equal(await tok(), 'Bearer edge-2-abcdefgh');
  vault.close();
});

test('the injector does not trust the loader: a Credential without a value or obo settings is refused naming it, never sent', async () => {
  // Valid documents, with the value (or obo) taken out after loading, as a loader bug could.
  const vault = vaultOf({
    plain: '{ env: S }',
    g: '{ env: S, google: {} }',
    aws: '{ env: S, aws: { access_key_id: AKIAEXAMPLE000000001 } }',
    obo: '{ kind: on_behalf_of, obo: { audience: x } }',
  }, { S: 'some-secret-value-1234' }, undefined, (c) => {
    for (const n of ['plain', 'g', 'aws']) delete c.credentials.get(n)!.spec.env;
    delete c.credentials.get('obo')!.spec.obo;
  });
  const ep = endpoint();
  const inj = createInjector({ vault, sign: async () => 'never-signed', issuer: 'spiffe://t/aam', fetch: ep.fetch, ...fast });
  for (const [name, status, message] of [
    ['plain', 502, 'Credential "plain" has no value'],
    ['g', 502, 'Credential "g" has no value'],
    ['aws', 502, 'Credential "aws" has no value'],
    ['obo', 500, 'Credential "obo" needs obo: { audience }'],
  ] as const) {
    await assert.rejects(inj.injectionFor(name, { principal: A }), { name: 'CredentialError', code: 'credential_config', status, credential: name, message }, name);
  }
  await assert.rejects(inj.environmentFor('plain', 'TOKEN'), { code: 'credential_config', status: 502, credential: 'plain', message: 'Credential "plain" has no value' });
  assert.equal(ep.sent.length, 0);
  vault.close();
});

test('a Google service account: one token for every agent, an RS256 assertion to the right endpoint and scope, both scrubbed', async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = (extra: Record<string, string>) => JSON.stringify({ client_email: 'sa@p.iam.gserviceaccount.com', private_key: pem, private_key_id: 'kid-1', ...extra });
  const ep = endpoint();
  const clock = 1_700_000_000_000;
  const vault = vaultOf({
    dflt: '{ env: K1, google: {} }',
    fromKey: '{ env: K2, kind: google_service_account }',
    fromSpec: '{ env: K2, google: { token_url: "https://spec.example/token", scope: "https://www.googleapis.com/auth/bigquery" } }',
  }, { K1: key({}), K2: key({ token_uri: 'https://key.example/token' }) }, () => clock);
  const inj = createInjector({ vault, fetch: ep.fetch, now: () => clock, ...fast });
  const a = await inj.injectionFor('dflt', { principal: A, defaultStyle: 'x-api-key' });
  assert.deepEqual(a.headers, { authorization: 'Bearer tok-1-abcdefgh' });
  assert.equal((await inj.injectionFor('dflt', { principal: B })).headers.authorization, 'Bearer tok-1-abcdefgh', 'aam\'s own token: one slot');
  assert.equal(ep.sent.length, 1);
  const s = ep.sent[0];
  assert.equal(s.url, 'https://oauth2.googleapis.com/token');
  assert.equal(s.form.grant_type, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
  assert.deepEqual(decodeProtectedHeader(s.form.assertion), { alg: 'RS256', typ: 'JWT', kid: 'kid-1' });
  const iat = 1_700_000_000;
  assert.deepEqual(decodeJwt(s.form.assertion), { scope: 'https://www.googleapis.com/auth/cloud-platform', iss: 'sa@p.iam.gserviceaccount.com', sub: 'sa@p.iam.gserviceaccount.com', aud: 'https://oauth2.googleapis.com/token', iat, exp: iat + 3600 });
  assert.equal(vault.scrubber().scrub(`${s.form.assertion} tok-1-abcdefgh`).text, '[REDACTED:dflt] [REDACTED:dflt]');
  await inj.injectionFor('fromKey');
  assert.equal(ep.sent[1].url, 'https://key.example/token');
  assert.equal(decodeJwt(ep.sent[1].form.assertion).aud, 'https://key.example/token');
  await inj.injectionFor('fromSpec');
  assert.equal(ep.sent[2].url, 'https://spec.example/token');
  assert.equal(decodeJwt(ep.sent[2].form.assertion).scope, 'https://www.googleapis.com/auth/bigquery');
  vault.close();
});

test('AWS: the key id written or read (trimmed) from the environment; one signer per credential version, headers signed last', async () => {
  assert.equal(awsKeyId({ aws: { access_key_id: 'AKIAWRITTEN000000' } }, {}), 'AKIAWRITTEN000000');
  assert.equal(awsKeyId({ aws: { access_key_id_env: 'ID' } }, { ID: '  AKIAFROMENV0000000 ' }), 'AKIAFROMENV0000000');
  assert.equal(awsKeyId({ aws: { access_key_id_env: 'ID' } }, { ID: '   ' }), undefined);
  assert.equal(awsKeyId({ aws: { access_key_id_env: 'ID' } }, {}), undefined);
  assert.equal(awsKeyId({}, { ID: 'AKIAFROMENV0000000' }), undefined);
  const vault = vaultOf({ aws: '{ env: SK, aws: { access_key_id_env: ID } }' }, { SK: 'aws-secret-access-key-1234', ID: 'AKIAFROMENV0000000' });
  const inj = createInjector({ vault, env: { ID: ' AKIAFROMENV0000000 ' }, now: () => Date.parse('2026-01-02T03:04:05Z') });
  const r = await inj.injectionFor('aws', { defaultStyle: 'x-api-key' });
  assert.deepEqual([r.headers, r.query, r.credential], [{}, undefined, { name: 'aws', version: 1, kind: 'aws_sigv4' }]);
  assert.equal((await inj.injectionFor('aws')).sign, r.sign, 'the same signer for the same version');
  const signed = await r.sign!({ method: 'POST', url: 'https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke', headers: { 'content-type': 'application/json' }, body: '{}' }, { region: 'us-east-1', service: 'bedrock' });
  assert.equal(signed['x-amz-date'], '20260102T030405Z');
  assert.match(signed.authorization, /^AWS4-HMAC-SHA256 Credential=AKIAFROMENV0000000\/20260102\/us-east-1\/bedrock\/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=[0-9a-f]{64}$/);
  vault.close();
});

test('AWS: each credential signs with its own keys, never with another credential\'s signer', async () => {
  const vault = vaultOf({
    one: '{ env: S1, aws: { access_key_id: AKIAONE0000000000001 } }',
    two: '{ env: S2, aws: { access_key_id: AKIATWO0000000000002 } }',
  }, { S1: 'aws-secret-access-key-one-1234', S2: 'aws-secret-access-key-two-5678' });
  const inj = createInjector({ vault, now: () => Date.parse('2026-01-02T03:04:05Z') });
  const req = { method: 'GET', url: 'https://sts.us-east-1.amazonaws.com/', headers: {}, body: '' };
  const scope = { region: 'us-east-1', service: 'sts' };
  const one = await (await inj.injectionFor('one')).sign!(req, scope);
  const two = await (await inj.injectionFor('two')).sign!(req, scope);
  const again = await (await inj.injectionFor('one')).sign!(req, scope);
  assert.match(one.authorization, /Credential=AKIAONE0000000000001\//);
  assert.match(two.authorization, /Credential=AKIATWO0000000000002\//);
  assert.equal(again.authorization, one.authorization);
  vault.close();
});

test('only client-credentials and on-behalf-of values are per caller (an upstream connection carrying one is never shared between agents)', () => {
  const perCaller = ['oauth2_client_credentials', 'on_behalf_of'];
  for (const kind of ['api_key', 'bearer', 'basic', 'header', 'query', 'oauth2_client_credentials', 'on_behalf_of', 'aws_sigv4', 'google_service_account'] as const) {
    assert.equal(perPrincipal(kind), perCaller.includes(kind), kind);
  }
});

test('stripInboundAuth: a Connection header in any case, or as a list, names more headers to drop', () => {
  assert.deepEqual(stripInboundAuth({ Connection: 'X-Hop-One , x-hop-two', 'X-Hop-One': '1', 'x-hop-two': '2', 'X-Keep': 'k', Cookie: 'c', Host: 'h' }), { 'X-Keep': 'k' });
  assert.deepEqual(stripInboundAuth({ connection: ['x-a', 'X-B'], 'x-a': '1', 'x-b': '2', 'x-c': '3' }), { 'x-c': '3' });
  assert.deepEqual(stripInboundAuth({ connection: undefined, 'x-c': '3' }), { 'x-c': '3' });
  assert.deepEqual(stripInboundAuth({ 'X-Goog-Api-Key': 'k', 'Proxy-Connection': 'keep-alive', TE: 'trailers', 'content-type': 't' }), { 'content-type': 't' });
});

test('stripInboundAuth: every credential header an agent may send and every hop-by-hop header is dropped, in any case; everything else is kept', () => {
  // The agent's own credentials must never reach the upstream (aam injects the upstream's), and
  // hop-by-hop headers (RFC 9110 7.6.1) belong to the agent's connection, not the next one.
  const dropped = ['Authorization', 'Proxy-Authorization', 'X-Api-Key', 'Api-Key', 'X-Goog-Api-Key', 'Cookie', 'Connection', 'Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer', 'Transfer-Encoding', 'Upgrade', 'Host', 'Content-Length'];
  const kept = { 'content-type': 'application/json', accept: '*/*', 'x-request-id': 'r1', 'anthropic-version': '2023-06-01', 'x-api-key-id': 'not-a-key', authorization2: 'x' };
  for (const h of dropped) {
    for (const name of [h, h.toLowerCase(), h.toUpperCase()]) {
      assert.deepEqual(stripInboundAuth({ ...kept, [name]: 'agent-value' }), kept, name);
    }
  }
  assert.deepEqual(stripInboundAuth(Object.fromEntries(dropped.map((h) => [h, 'v']))), {});
  // Only Connection names headers to drop: another header whose value is a header name drops nothing.
  const named = { 'access-control-request-headers': 'content-type, x-trace', 'content-type': 'text/plain', 'x-trace': 't1' };
  assert.deepEqual(stripInboundAuth(named), named);
});

test('a credential with no value is refused as a 502 naming it, with what is wrong', async () => {
  const vault = vaultOf({ gone: '{ env: GONE_VAR }' });
  await assert.rejects(createInjector({ vault }).injectionFor('gone'), {
    code: 'credential_config', status: 502, credential: 'gone',
    message: 'Credential "gone": environment variable GONE_VAR is not set (export it)',
  });
  vault.close();
});

// src/credentials/aws-sigv4.ts and google-sa.ts: what a stored value may hold, what else is scrubbed,
// and a SigV4 signature recomputed here from AWS's published algorithm.
const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();
const sha = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');
const rfc3986 = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** AWS Signature Version 4 (docs.aws.amazon.com, "Create a signed AWS API request"), for a path without special characters. */
function sigV4(o: { method: string; url: string; headers: Record<string, string>; body: string; secret: string; keyId: string; amzDate: string; region: string; service: string }): string {
  const u = new URL(o.url);
  const query = [...u.searchParams].map(([k, v]) => [rfc3986(k), rfc3986(v)]).sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join('&');
  const names = Object.keys(o.headers).map((h) => h.toLowerCase()).sort();
  const lower = Object.fromEntries(Object.entries(o.headers).map(([k, v]) => [k.toLowerCase(), v.trim()]));
  const canonical = [o.method, u.pathname, query, names.map((n) => `${n}:${lower[n]}\n`).join(''), names.join(';'), sha(o.body)].join('\n');
  const day = o.amzDate.slice(0, 8);
  const scope = `${day}/${o.region}/${o.service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', o.amzDate, scope, sha(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${o.secret}`, day), o.region), o.service), 'aws4_request');
  return `AWS4-HMAC-SHA256 Credential=${o.keyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${createHmac('sha256', key).update(toSign).digest('hex')}`;
}

test('SigV4: the signature covers method, path, every query value, host with port, content-type, x-amz-* headers and the body, and nothing else', async () => {
  const keys = { accessKeyId: 'ASIAEXAMPLE000000001', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: 'session/token+abc=' };
  const sign = awsSigner(keys, () => Date.parse('2026-03-04T05:06:07.890Z'));
  const url = 'https://bedrock.example.com:8443/model/anthropic.claude-v2/invoke?b=2&a=x%20y&a=1&c=&a=0';
  const body = '{"prompt":"hi"}';
  const out = await sign({ method: 'POST', url, headers: { 'Content-Type': 'application/json', 'X-Amz-Target': 'T.op', 'x-unsigned': 'u', accept: '*/*' }, body }, { region: 'eu-west-1', service: 'bedrock' });
  const amzDate = '20260304T050607Z';
  const signedHeaders = {
    host: 'bedrock.example.com:8443', 'content-type': 'application/json', 'x-amz-target': 'T.op',
    'x-amz-date': amzDate, 'x-amz-security-token': keys.sessionToken, 'x-amz-content-sha256': sha(body),
  };
  const expected = sigV4({ method: 'POST', url, headers: signedHeaders, body, secret: keys.secretAccessKey, keyId: keys.accessKeyId, amzDate, region: 'eu-west-1', service: 'bedrock' });
  assert.equal(out.authorization, expected);
  assert.deepEqual(Object.keys(out).sort(), ['authorization', 'content-type', 'x-amz-content-sha256', 'x-amz-date', 'x-amz-security-token', 'x-amz-target']);
  assert.deepEqual([out['x-amz-date'], out['x-amz-security-token'], out['content-type']], [amzDate, keys.sessionToken, 'application/json']);
  // A second request with the same signer: a different body, a different signature.
  const again = await sign({ method: 'GET', url: 'https://bedrock.example.com/models', headers: {}, body: '' }, { region: 'us-east-1', service: 'bedrock' });
  const plain = { host: 'bedrock.example.com', 'x-amz-date': amzDate, 'x-amz-security-token': keys.sessionToken, 'x-amz-content-sha256': sha('') };
  assert.equal(again.authorization, sigV4({ method: 'GET', url: 'https://bedrock.example.com/models', headers: plain, body: '', secret: keys.secretAccessKey, keyId: keys.accessKeyId, amzDate, region: 'us-east-1', service: 'bedrock' }));
});

test('AWS values: the secret alone (key id from the Credential) or the JSON of export-credentials; the errors say what to store', () => {
  const id = 'AKIAEXAMPLE000000002';
  assert.deepEqual(parseAwsKeys('a', '  secret-key-value \n', id), { accessKeyId: id, secretAccessKey: 'secret-key-value' });
  assert.deepEqual(parseAwsKeys('a', ' {"AccessKeyId":"ASIAJSON","SecretAccessKey":"s1","SessionToken":"t1"} ', id), { accessKeyId: 'ASIAJSON', secretAccessKey: 's1', sessionToken: 't1' });
  assert.deepEqual(parseAwsKeys('a', '{"SecretAccessKey":"s1","SessionToken":""}', id), { accessKeyId: id, secretAccessKey: 's1' });
  assert.deepEqual(parseAwsKeys('a', '{"AccessKeyId":7,"SecretAccessKey":"s1","SessionToken":5}', id), { accessKeyId: id, secretAccessKey: 's1' });
  const refused = (value: string, keyId: string | undefined, message: string) => assert.throws(() => parseAwsKeys('a', value, keyId), { code: 'credential_config', status: 502, credential: 'a', message });
  refused('{not json', id, 'Credential "a": its value starts with "{" but is not valid JSON; store the secret access key, or the JSON of `aws configure export-credentials`');
  const needs = 'Credential "a": the JSON needs AccessKeyId and SecretAccessKey (and SessionToken for temporary keys)';
  refused('{"SecretAccessKey":"s1"}', undefined, needs);
  refused('{"AccessKeyId":"ASIAJSON"}', id, needs);
  refused('{"AccessKeyId":"ASIAJSON","SecretAccessKey":""}', id, needs);
  refused('{"AccessKeyId":"ASIAJSON","SecretAccessKey":5}', id, needs);
  refused('secret-only', undefined, 'Credential "a" (aws_sigv4) needs aws: { access_key_id: AKIA... } or aws: { access_key_id_env: AWS_ACCESS_KEY_ID } (set in the environment) when its value is only the secret access key');
  refused('secret-only', '', 'Credential "a" (aws_sigv4) needs aws: { access_key_id: AKIA... } or aws: { access_key_id_env: AWS_ACCESS_KEY_ID } (set in the environment) when its value is only the secret access key');
  // Besides the whole value, the secret key and session token inside a JSON value are scrubbed.
  assert.deepEqual(awsScrubParts(' {"AccessKeyId":"ASIAJSON","SecretAccessKey":"s1","SessionToken":"t1"}'), ['s1', 't1']);
  assert.deepEqual(awsScrubParts('{"SecretAccessKey":"s1","SessionToken":""}'), ['s1']);
  assert.deepEqual(awsScrubParts('{"SecretAccessKey":5}'), []);
  assert.deepEqual(awsScrubParts('{broken'), []);
  assert.deepEqual(awsScrubParts('plain-secret'), []);
});

test('Google service-account keys: what is required, what is optional, and the private key scrubbed as PEM and as one line of base64', () => {
  const pem = '-----BEGIN PRIVATE KEY-----\nMIIEabc\ndef+/=\n-----END PRIVATE KEY-----\n';
  const full = { client_email: 'sa@p.iam', private_key: pem, private_key_id: 'kid', token_uri: 'https://t.example/token' };
  assert.deepEqual(parseServiceAccount('g', JSON.stringify(full)), { clientEmail: 'sa@p.iam', privateKey: pem, privateKeyId: 'kid', tokenUri: 'https://t.example/token' });
  assert.deepEqual(parseServiceAccount('g', JSON.stringify({ ...full, private_key_id: 1, token_uri: null })), { clientEmail: 'sa@p.iam', privateKey: pem });
  assert.throws(() => parseServiceAccount('g', 'not json'), { code: 'credential_config', status: 502, credential: 'g', message: 'Credential "g" (google_service_account) is not JSON; point it at the service account\'s JSON key file' });
  const needs = 'Credential "g": the service account key needs client_email and private_key (download a JSON key for the service account)';
  for (const bad of [{ ...full, client_email: 5 }, { ...full, private_key: 5 }, { ...full, private_key: 'no key here' }, { client_email: 'sa@p.iam' }]) {
    assert.throws(() => parseServiceAccount('g', JSON.stringify(bad)), { code: 'credential_config', status: 502, credential: 'g', message: needs });
  }
  assert.deepEqual(serviceAccountScrubParts(JSON.stringify(full)), [pem, 'MIIEabcdef+/=']);
  assert.deepEqual(serviceAccountScrubParts(JSON.stringify({ private_key: '-----BEGIN PRIVATE KEY----- \n -----END PRIVATE KEY-----' })), ['-----BEGIN PRIVATE KEY----- \n -----END PRIVATE KEY-----']);
  assert.deepEqual(serviceAccountScrubParts(JSON.stringify({ private_key: 5 })), []);
  assert.deepEqual(serviceAccountScrubParts('not json'), []);
});

test('injectionNow: a secret kind is injected at once (no promise), as injectionFor injects it; a token kind is left to injectionFor; a missing value is thrown', async () => {
  let clock = 1_000_000;
  const ep = endpoint();
  const vault = vaultOf({
    plain: '{ env: S }',
    header: '{ env: S, inject: { header: X-Custom-Key, prefix: "P " } }',
    query: '{ env: S, inject: { query: api_key } }',
    basic: '{ env: S, kind: basic, username: ann }',
    cc: '{ env: CS, oauth2: { token_url: "https://idp.example/token", client_id: cid } }',
    gone: '{ env: S }',
  }, { S: 'static-secret-12345', CS: 'client:secret&1234' }, () => clock, (c) => { delete c.credentials.get('gone')!.spec.env; });
  const inj = createInjector({ vault, fetch: ep.fetch, now: () => clock, ...fast });
  for (const name of ['plain', 'header', 'query', 'basic']) {
    const now = inj.injectionNow(name, { principal: A, defaultStyle: 'x-api-key' });
    assert.ok(now !== undefined && !(now instanceof Promise), `${name} at once`);
    assert.deepEqual(now, await inj.injectionFor(name, { principal: A, defaultStyle: 'x-api-key' }), name);
  }
  assert.deepEqual(inj.injectionNow('plain')?.headers, { authorization: 'Bearer static-secret-12345' });
  // A token is obtained only by injectionFor (a promise): injectionNow asks no endpoint.
  assert.equal(inj.injectionNow('cc', { principal: A }), undefined);
  assert.equal(ep.sent.length, 0);
  assert.deepEqual((await inj.injectionFor('cc', { principal: A })).headers, { authorization: 'Bearer tok-1-abcdefgh' });
  assert.throws(() => inj.injectionNow('gone'), { name: 'CredentialError', code: 'credential_config', status: 502, credential: 'gone', message: 'Credential "gone" has no value' });
  await assert.rejects(inj.injectionFor('gone'), { code: 'credential_config', message: 'Credential "gone" has no value' });
  vault.close();
});
