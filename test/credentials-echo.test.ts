// The integration pattern the planes follow: strip the agent's auth -> inject -> call upstream ->
// scrub body, stream and headers. The upstream here echoes everything it received.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigTexts } from '../src/config/load.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { openVault } from '../src/credentials/vault.ts';
import { createInjector, stripInboundAuth } from '../src/credentials/inject.ts';

const SECRET = 'sk-echo-secret-NEEDLE-0123456789';

const echo = createServer(async (req, res) => {
  let body = '';
  for await (const c of req) body += c;
  const dump = JSON.stringify({ url: req.url, headers: req.headers, body });
  res.setHeader('x-echo-auth', String(req.headers.authorization));
  res.setHeader('content-type', 'text/event-stream');
  // Stream the dump in 7-char pieces so the secret is split across chunks.
  for (let i = 0; i < dump.length; i += 7) res.write(dump.slice(i, i + 7));
  res.end();
});
await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
after(() => { echo.closeAllConnections(); echo.close(); });
const base = `http://127.0.0.1:${(echo.address() as { port: number }).port}`;

test('credential reaches the upstream; the agent sees neither it nor its encodings', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-echo-'));
  const config = parseConfigTexts([{ file: 't.yaml', text: 'apiVersion: access.envisionai.dev/v1\nkind: Credential\nmetadata: { name: up }\nspec: { stored: true }' }]);
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config, env: {}, refreshMs: 0, strict: false });
  vault.set('up', SECRET);
  const inj = createInjector({ vault });
  const agentHeaders = { authorization: 'Bearer aam_agent_virtual_key', 'content-type': 'application/json', connection: 'close' };
  const injection = await inj.injectionFor('up', { principal: { spiffeId: 'spiffe://t/agent/a', name: 'a' } });
  const url = new URL('/v1/chat/completions', base);
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...stripInboundAuth(agentHeaders), ...injection.headers },
    // An agent that asks the model to repeat the key in encoded forms:
    body: JSON.stringify({ q: `${Buffer.from(SECRET).toString('base64')} ${encodeURIComponent(SECRET)}` }),
  });
  const scrubber = vault.scrubber();
  const stream = scrubber.stream();
  let seenByAgent = '';
  let upstreamRaw = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    const text = dec.decode(chunk, { stream: true });
    upstreamRaw += text;
    seenByAgent += stream.push(text);
  }
  seenByAgent += stream.push(dec.decode()) + stream.end();
  const headers = scrubber.scrubHeaders(Object.fromEntries(res.headers));
  // The upstream got the injected credential and not the agent's key.
  const got = JSON.parse(upstreamRaw) as { headers: Record<string, string> };
  assert.equal(got.headers.authorization, `Bearer ${SECRET}`);
  assert.ok(!upstreamRaw.includes('aam_agent_virtual_key'));
  // The agent sees markers only.
  const all = seenByAgent + JSON.stringify(headers.headers);
  for (const form of [SECRET, Buffer.from(SECRET).toString('base64'), encodeURIComponent(SECRET), 'NEEDLE']) assert.ok(!all.includes(form), form);
  assert.ok(seenByAgent.includes('[REDACTED:up]'));
  assert.equal(headers.headers['x-echo-auth'], 'Bearer [REDACTED:up]');
  assert.deepEqual(stream.leaked, ['up']);
  assert.deepEqual(injection.credential, { name: 'up', version: 1, kind: 'api_key' });
  vault.close();
});

test('rotation under load: every injection carries the value of the version it reports', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-rot-'));
  const config = parseConfigTexts([{ file: 't.yaml', text: 'apiVersion: access.envisionai.dev/v1\nkind: Credential\nmetadata: { name: r }\nspec: { stored: true }' }]);
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config, env: {}, refreshMs: 0, strict: false });
  const inj = createInjector({ vault });
  const valueOf = new Map<number, string>();
  const rotate = () => { const v = `rotating-value-${valueOf.size + 1}-abcdef`; valueOf.set(vault.set('r', v).version, v); };
  rotate();
  const tick = () => new Promise((r) => setImmediate(r));
  let running = true;
  const rotator = (async () => { while (running) { rotate(); for (let i = 0; i < 3; i++) await tick(); } })();
  const worker = async () => { const out = []; for (let i = 0; i < 20; i++) { out.push(await inj.injectionFor('r')); await tick(); } return out; };
  const results = (await Promise.all(Array.from({ length: 20 }, worker))).flat();
  running = false;
  await rotator;
  const versions = new Set(results.map((r) => r.credential.version));
  assert.ok(versions.size >= 5, `saw versions ${[...versions]}`);
  for (const r of results) assert.equal(r.headers.authorization, `Bearer ${valueOf.get(r.credential.version)}`);
  vault.close();
});
