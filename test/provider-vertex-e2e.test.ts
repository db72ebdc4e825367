// Google Vertex AI end to end: the real gateway signs a JWT assertion with the service account's
// key, a fake token endpoint verifies it with the public key and hands out an access token, and a
// fake Vertex checks that token on the project/region path (generateContent and the SSE stream).
// The token is cached until near expiry; a key the endpoint rejects is a clear upstream auth
// error; the private key and tokens never reach the agent, the audit trail or the data dir.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { localServer, chat, sseContent, until, type LocalServer } from './helpers/e2e.ts';
import { grepDir } from './helpers/leak-capture.ts';
import OpenAI from 'openai';

const PROJECT = 'acme-prod';
const REGION = 'europe-west4';
const EMAIL = 'aam-gateway@acme-prod.iam.gserviceaccount.com';
const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

function serviceAccount(tokenUri: string): { json: string; publicKey: ReturnType<typeof generateKeyPairSync>['publicKey']; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const json = JSON.stringify({
    type: 'service_account', project_id: PROJECT, private_key_id: 'k1', private_key: privatePem, client_email: EMAIL,
    client_id: '1234567890', token_uri: tokenUri,
  }, null, 2);
  return { json, publicKey, privatePem };
}

let server: LocalServer;
let gw: TestGateway;
let key: string;
let good: ReturnType<typeof serviceAccount>;
let rogue: ReturnType<typeof serviceAccount>;
const tokens = new Set<string>();
const tokenRequests: Array<{ ok: boolean; kid?: string }> = [];
const vertexCalls: Array<{ url: string; auth: string }> = [];
let tokenTtl = 3600;

before(async () => {
  server = await localServer(async (req, res, raw) => {
    if (req.url === '/token' || req.url === '/token-slow') {
      // The slow endpoint answers after the stream's first keep-alive was written.
      if (req.url === '/token-slow') await new Promise((r) => setTimeout(r, 400));
      const form = new URLSearchParams(raw);
      try {
        assert.equal(form.get('grant_type'), 'urn:ietf:params:oauth:grant-type:jwt-bearer');
        const assertion = form.get('assertion') ?? '';
        const { payload } = await jwtVerify(assertion, good.publicKey, { issuer: EMAIL, audience: `${server.url}${req.url}`, algorithms: ['RS256'] });
        assert.equal(payload.scope, SCOPE);
        assert.ok((payload.exp ?? 0) - (payload.iat ?? 0) <= 3600);
        tokenRequests.push({ ok: true, kid: decodeProtectedHeader(assertion).kid });
      } catch {
        tokenRequests.push({ ok: false });
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'Invalid JWT Signature.' }));
        return;
      }
      const token = `ya29.${randomBytes(24).toString('base64url')}`;
      tokens.add(token);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: token, expires_in: tokenTtl, token_type: 'Bearer' }));
      return;
    }
    const auth = String(req.headers.authorization ?? '');
    vertexCalls.push({ url: req.url ?? '', auth });
    if (!tokens.has(auth.replace(/^Bearer /, ''))) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 401, message: 'Request had invalid authentication credentials.', status: 'UNAUTHENTICATED' } }));
      return;
    }
    if (req.url === '/v1/projects/acme-prod/locations/europe-west4/publishers/google/models/text-embedding-005:predict') {
      const { instances } = JSON.parse(raw) as { instances: Array<{ content: string }> };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ predictions: instances.map((x, i) => ({ embeddings: { values: [0.25 * (i + 1), -0.5, x.content.length], statistics: { token_count: x.content.length, truncated: false } } })) }));
      return;
    }
    const m = /^\/v1\/projects\/acme-prod\/locations\/europe-west4\/publishers\/google\/models\/gemini-2\.5-flash:(generateContent|streamGenerateContent\?alt=sse)$/.exec(req.url ?? '');
    if (!m) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"error":{"message":"not found","status":"NOT_FOUND"}}'); return; }
    const said = JSON.stringify(JSON.parse(raw));
    const text = said.includes('ECHO') ? `key ${good.privatePem} token ${auth.slice(7)}` : 'Hallo from Vertex';
    const usageMetadata = { promptTokenCount: 7, candidatesTokenCount: 4, totalTokenCount: 11 };
    if (m[1] === 'generateContent') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP' }], usageMetadata, modelVersion: 'gemini-2.5-flash', responseId: 'r1' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const half = Math.floor(text.length / 2);
    res.write(`data: ${JSON.stringify({ candidates: [{ content: { role: 'model', parts: [{ text: text.slice(0, half) }] } }], modelVersion: 'gemini-2.5-flash', responseId: 'r2' })}\r\n\r\n`);
    res.end(`data: ${JSON.stringify({ candidates: [{ content: { role: 'model', parts: [{ text: text.slice(half) }] }, finishReason: 'STOP' }], usageMetadata })}\r\n\r\n`);
  });
  good = serviceAccount(`${server.url}/token`);
  rogue = serviceAccount(`${server.url}/token`);
  const provider = (name: string, credential: string) => doc('Provider', name, { type: 'vertex', baseUrl: server.url, credential, vertex: { project: PROJECT, region: REGION } });
  const route = (name: string, p: string) => doc('Model', name, { targets: [{ provider: p, model: 'gemini-2.5-flash' }], retries: { attempts: 0 } });
  gw = await startTestGateway(yaml(
    doc('Credential', 'gcp-sa', { env: 'AAM_TEST_GCP_SA', kind: 'google_service_account' }),
    // The rogue key names the same account but was not issued by it: the endpoint refuses it.
    doc('Credential', 'gcp-slow', { env: 'AAM_TEST_GCP_SA', google: { token_url: `${server.url}/token-slow` } }),
    doc('Credential', 'gcp-rogue', { env: 'AAM_TEST_GCP_ROGUE', google: { token_url: `${server.url}/token` } }),
    provider('vertex', 'gcp-sa'), provider('vertex-rogue', 'gcp-rogue'), provider('vertex-slow', 'gcp-slow'),
    route('gemini', 'vertex'), route('gemini-rogue', 'vertex-rogue'), route('gemini-slow', 'vertex-slow'),
    doc('Model', 'vertex-embed', { kind: 'embeddings', targets: [{ provider: 'vertex', model: 'text-embedding-005' }], retries: { attempts: 0 } }),
    ...agentDocs(['gemini', 'gemini-rogue', 'gemini-slow', 'vertex-embed']),
  ), { AAM_TEST_GCP_SA: good.json, AAM_TEST_GCP_ROGUE: rogue.json, AAM_SSE_KEEPALIVE_MS: '100' });
  key = gw.key('tester');
});

after(async () => {
  await gw?.close();
  await server?.close();
});

test('vertex e2e: service-account token obtained once (JWT verified by the endpoint), Gemini wire on the project/region path', async () => {
  const r = await chat(gw.url, key, 'gemini', 'Say hello');
  assert.equal(r.status, 200, r.text);
  assert.equal((r.json as { choices: Array<{ message: { content: string } }> }).choices[0].message.content, 'Hallo from Vertex');
  assert.deepEqual(tokenRequests, [{ ok: true, kid: 'k1' }]);
  assert.equal(vertexCalls[0].url, '/v1/projects/acme-prod/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent');
  const s = await chat(gw.url, key, 'gemini', 'Say hello', { stream: true });
  assert.equal(s.status, 200, s.text);
  assert.equal(sseContent(s.text).text, 'Hallo from Vertex');
  assert.match(vertexCalls[1].url, /:streamGenerateContent\?alt=sse$/);
  assert.equal(tokenRequests.length, 1, 'the access token is cached across calls');
  assert.equal(vertexCalls[0].auth, vertexCalls[1].auth);
});

test('vertex e2e: embeddings through the prediction API, with the OpenAI SDK (its default base64 and float)', async () => {
  const openai = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  // The SDK asks for base64 by default and decodes float32 from it.
  const r = await openai.embeddings.create({ model: 'vertex-embed', input: ['hello', 'hi'] });
  assert.deepEqual(r.data.map((d) => d.embedding), [[0.25, -0.5, 5], [0.5, -0.5, 2]]);
  assert.equal(r.usage.prompt_tokens, 7);
  const f = await openai.embeddings.create({ model: 'vertex-embed', input: 'hey', encoding_format: 'float' });
  assert.deepEqual(f.data[0].embedding, [0.25, -0.5, 3]);
  assert.ok(vertexCalls.some((c) => c.url.endsWith('/models/text-embedding-005:predict')));
});

test('vertex e2e: the token is renewed shortly before it expires', async () => {
  // Tokens that live 2 s are refreshed after 1 s (half their life when that is under the margin).
  tokenTtl = 2;
  gw.g.rt.injector.invalidate('gcp-sa');
  const before = tokenRequests.length;
  assert.equal((await chat(gw.url, key, 'gemini', 'Say hello')).status, 200);
  assert.equal(tokenRequests.length, before + 1);
  await until(async () => (await chat(gw.url, key, 'gemini', 'Say hello')).status === 200 && tokenRequests.length > before + 1, 30_000, 'a renewed token');
  tokenTtl = 3600;
});

test('vertex e2e (negative): a key the token endpoint rejects is a clear upstream auth error; Vertex is never called without a token', async () => {
  const calls = vertexCalls.length;
  const r = await chat(gw.url, key, 'gemini-rogue', 'Say hello');
  assert.equal(r.status, 502, r.text);
  const err = (r.json as { error: { message: string } }).error;
  assert.match(err.message, /could not obtain an upstream token for credential "gcp-rogue" from 127\.0\.0\.1:\d+: HTTP 400 invalid_grant/);
  assert.equal(vertexCalls.length, calls);
  assert.equal(tokenRequests[tokenRequests.length - 1].ok, false);
  assert.ok(!r.text.includes('PRIVATE KEY'));
});

test('vertex e2e (negative): the private key and access token echoed upstream never reach the agent or the data dir', async () => {
  const whole = await chat(gw.url, key, 'gemini', 'ECHO');
  const streamed = await chat(gw.url, key, 'gemini', 'ECHO', { stream: true });
  assert.equal(whole.status, 200, whole.text);
  assert.equal(streamed.status, 200, streamed.text);
  const body = good.privatePem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const token = vertexCalls[vertexCalls.length - 1].auth.slice(7);
  for (const out of [(whole.json as { choices: Array<{ message: { content: string } }> }).choices[0].message.content, sseContent(streamed.text).text]) {
    assert.match(out, /^key /);
    for (const line of good.privatePem.split('\n').filter((l) => l.length > 40)) assert.ok(!out.includes(line), `a private key line leaked: ${out.slice(0, 200)}`);
    assert.ok(!out.includes(token), `access token leaked: ${out.slice(-120)}`);
  }
  await gw.g.rt.auditLog?.flush();
  const leaks = grepDir(gw.dataDir, [{ name: 'sa-key', value: body }, { name: 'token', value: token }]);
  assert.deepEqual(leaks.map((l) => `${l.file}: ${l.secret}`), []);
});

test('vertex e2e (negative): a token fetched after the stream opened (keep-alive already sent) is still scrubbed from that stream', async () => {
  const s = await chat(gw.url, key, 'gemini-slow', 'ECHO', { stream: true });
  assert.equal(s.status, 200, s.text);
  assert.match(s.text, /^: /m, 'a keep-alive comment went out before the token existed');
  const token = vertexCalls[vertexCalls.length - 1].auth.slice(7);
  const out = sseContent(s.text).text;
  assert.match(out, /^key /);
  assert.ok(!out.includes(token), `access token leaked: ${out.slice(-120)}`);
});
