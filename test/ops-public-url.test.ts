// RFC 9728 metadata tells MCP clients where to authenticate, so it must name aam's configured public
// URL (AAM_PUBLIC_URL) or the address the gateway listens on, never a client-chosen Host header.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publicUrlFrom, startGateway } from '../src/cli/serve.ts';

const config = yaml(doc('Provider', 'demo', { type: 'demo' }));

/** A raw request with a forged Host header (fetch does not let a caller choose it). */
function get(port: number, method: string, path: string, host: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { host, 'content-type': 'application/json', accept: 'application/json, text/event-stream' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' : undefined);
  });
}

const EVIL = 'evil.example:666';

test('without AAM_PUBLIC_URL the metadata and 401 challenge name the listening address, whatever Host says', async () => {
  const gw = await startTestGateway(config);
  try {
    for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
      const r = await get(gw.port, 'GET', path, EVIL);
      assert.equal(r.status, 200);
      const meta = JSON.parse(r.body) as { resource: string; authorization_servers: string[] };
      assert.equal(meta.resource, `${gw.url}/mcp`);
      assert.deepEqual(meta.authorization_servers, [gw.url]);
      assert.ok(!r.body.includes('evil'), r.body);
    }
    const denied = await get(gw.port, 'POST', '/mcp', EVIL);
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['www-authenticate'], `Bearer resource_metadata="${gw.url}/.well-known/oauth-protected-resource/mcp"`);
  } finally { await gw.close(); }
});

test('AAM_PUBLIC_URL is what the metadata and the 401 challenge name (a path prefix behind a proxy is kept)', async () => {
  const gw = await startTestGateway(config, { AAM_PUBLIC_URL: 'https://aam.example.com/gw/' });
  try {
    const meta = JSON.parse((await get(gw.port, 'GET', '/.well-known/oauth-protected-resource/mcp/crm', EVIL)).body) as { resource: string };
    assert.equal(meta.resource, 'https://aam.example.com/gw/mcp/crm');
    const denied = await get(gw.port, 'POST', '/mcp', EVIL);
    assert.equal(denied.headers['www-authenticate'], 'Bearer resource_metadata="https://aam.example.com/gw/.well-known/oauth-protected-resource/mcp"');
  } finally { await gw.close(); }
});

test('a malformed AAM_PUBLIC_URL refuses to start, saying what is expected', async () => {
  assert.equal(publicUrlFrom(undefined), undefined);
  assert.equal(publicUrlFrom('http://10.0.0.5:8080'), 'http://10.0.0.5:8080');
  for (const bad of ['aam.example.com', 'ftp://aam.example.com', 'https://aam.example.com/?x=1', 'https://u:p@aam.example.com']) {
    assert.throws(() => publicUrlFrom(bad), /AAM_PUBLIC_URL must be an (absolute )?http\(s\) URL/, bad);
  }
  const dir = mkdtempSync(join(tmpdir(), 'aam-public-url-'));
  try {
    writeFileSync(join(dir, 'aam.yaml'), config);
    await assert.rejects(startGateway({ configPath: join(dir, 'aam.yaml'), dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, AAM_PUBLIC_URL: 'not a url' } }), /AAM_PUBLIC_URL/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
