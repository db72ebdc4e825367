// The MCP session cap per trust domain: an external trust domain can mint any number of SPIFFE
// IDs, each under the per-identity cap, and so fill the global cap and lock every agent out.
// Sessions of identities no Agent registers are bounded per trust domain too (the authority that
// vouched for them); registered agents and other domains keep their own room.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

const dir = mkdtempSync(join(tmpdir(), 'aam-sessions-domain-'));
let gw: TestGateway;
const signers = new Map<string, (sub: string) => Promise<string>>();

before(async () => {
  const domains: string[] = [];
  for (const td of ['partner.example', 'other.example']) {
    const kp = await generateKeyPair('ES256', { extractable: true });
    const jwks = join(dir, `${td}.json`);
    writeFileSync(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: `${td}-1`, alg: 'ES256', use: 'sig' }] }));
    signers.set(td, (sub) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ sub, aud: 'aam', iat: now, exp: now + 600 }).setProtectedHeader({ alg: 'ES256', kid: `${td}-1`, typ: 'JWT' }).sign(kp.privateKey);
    });
    domains.push(doc('TrustDomain', td, { jwks_file: jwks }));
  }
  gw = await startTestGateway(yaml(
    ...domains,
    doc('Agent', 'partner-bot', { workload: 'spiffe://partner.example/bot', team: 'partners' }),
  ), { AAM_MCP_SESSIONS_PER_TRUST_DOMAIN: '3', AAM_MCP_SESSIONS_PER_IDENTITY: '2' });
});

after(async () => {
  await gw?.close();
  rmSync(dir, { recursive: true, force: true });
});

const INIT = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'test', version: '1' } } };

/** initialize as `sub` of trust domain `td`: the session id, or the refusal. */
async function open(td: string, sub: string): Promise<{ status: number; session?: string; error?: { code: number; message: string } }> {
  const token = await signers.get(td)!(sub);
  const r = await fetch(`${gw.url}/mcp`, {
    method: 'POST', body: JSON.stringify(INIT),
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
  });
  const text = await r.text();
  const session = r.headers.get('mcp-session-id') ?? undefined;
  if (r.ok) return { status: r.status, session };
  return { status: r.status, error: (JSON.parse(text) as { error: { code: number; message: string } }).error };
}

async function close(td: string, sub: string, session: string): Promise<void> {
  const token = await signers.get(td)!(sub);
  const r = await fetch(`${gw.url}/mcp`, { method: 'DELETE', headers: { authorization: `Bearer ${token}`, 'mcp-session-id': session } });
  await r.text();
  assert.ok(r.ok, `DELETE ${r.status}`);
}

test('distinct external SPIFFE IDs of one trust domain share its session cap; other domains and registered agents are not locked out', async () => {
  const opened: Array<[string, string]> = [];
  for (let i = 0; i < 3; i++) {
    const sub = `spiffe://partner.example/minted/${i}`;
    const r = await open('partner.example', sub);
    assert.equal(r.status, 200, JSON.stringify(r));
    opened.push([sub, r.session!]);
  }
  // A fourth ID of the same domain, under its own per-identity cap, is refused: the domain is full.
  const refused = await open('partner.example', 'spiffe://partner.example/minted/3');
  assert.equal(refused.status, 429);
  assert.equal(refused.error?.code, -32029);
  assert.match(refused.error!.message, /too many open MCP sessions for identities of trust domain partner\.example that are not registered as Agents \(limit 3 per trust domain\)/);
  // Another trust domain, and an Agent registered in the same domain, still get sessions.
  assert.equal((await open('other.example', 'spiffe://other.example/x')).status, 200);
  assert.equal((await open('partner.example', 'spiffe://partner.example/bot')).status, 200);
  // Closing one frees its slot for any ID of the domain.
  await close('partner.example', opened[0][0], opened[0][1]);
  assert.equal((await open('partner.example', 'spiffe://partner.example/minted/3')).status, 200);
  assert.equal((await open('partner.example', 'spiffe://partner.example/minted/4')).status, 429);
});
