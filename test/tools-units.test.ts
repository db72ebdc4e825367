// Unit tests for the tool plane's pure parts: tool digests and integrity, approvals, metadata,
// and the module boundary (src/tools imports no policy/identity/credentials/audit implementation).
import { uriTemplatePattern } from '../src/tools/mcp-call.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { canonicalJson, createToolIntegrity, toolDigest } from '../src/tools/tool-integrity.ts';
import { argsDigest, heldCall } from '../src/tools/approvals.ts';
import { createApprovals } from '../src/store/approvals.ts';
import { protectedResourceMetadata, wwwAuthenticate } from '../src/tools/mcp-metadata.ts';
import { compileValidator } from '../src/tools/catalog.ts';
import type { Decision } from '../src/policy/types.ts';
import type { Identity } from '../src/identity/types.ts';

const identity = (name: string, spiffeId: string, environment: string): Identity =>
  ({ agent: { name, spiffeId, trustDomain: spiffeId.split('/')[2], environment, team: 'finance', labels: {} }, method: 'virtual_key', keyId: `key_${name}` });
const ANALYST = identity('finance-analyst', 'spiffe://prod/agent/finance-analyst', 'prod');
const INTERN = identity('intern', 'spiffe://dev/agent/intern', 'dev');

const tool = (description: string, schema: Record<string, unknown> = { type: 'object', properties: { a: { type: 'string' }, b: { type: 'number' } } }) => ({ name: 't', description, inputSchema: schema });

test('digest ignores key order but not content', () => {
  assert.equal(canonicalJson({ b: 1, a: [{ y: 2, x: 1 }] }), '{"a":[{"x":1,"y":2}],"b":1}');
  assert.equal(toolDigest(tool('d', { type: 'object', properties: { b: { type: 'number' }, a: { type: 'string' } } })), toolDigest(tool('d')));
  assert.notEqual(toolDigest(tool('d')), toolDigest(tool('d ')));
  assert.match(toolDigest(tool('d')), /^sha256:[0-9a-f]{64}$/);
});

test('integrity: trust on first use, flag changes, accept, pins override', async () => {
  const db = new DatabaseSync(':memory:');
  const integ = createToolIntegrity(db);
  assert.equal(integ.check('s', [tool('v1')], {}).get('t')?.ok, true);
  assert.equal(integ.check('s', [tool('v1')], {}).get('t')?.ok, true);
  const changed = integ.check('s', [tool('v2')], {}).get('t');
  assert.equal(changed?.ok, false);
  assert.deepEqual(integ.flagged().map((f) => f.tool), ['t']);
  assert.equal(createToolIntegrity(db).check('s', [tool('v2')], {}).get('t')?.ok, false, 'persists across restarts');
  assert.equal(integ.check('s', [tool('v1')], {}).get('t')?.ok, true, 'reverting to the accepted definition is fine');
  integ.check('s', [tool('v2')], {});
  const d = await integ.accept('s', 't', 'admin');
  assert.equal(d.status, 'accepted');
  assert.equal(d.acceptedBy, 'admin');
  assert.equal(integ.check('s', [tool('v2')], {}).get('t')?.ok, true);
  assert.equal(integ.check('s', [tool('v2')], { t: toolDigest(tool('v2')) }).get('t')?.ok, true);
  assert.equal(integ.check('s', [tool('v2')], { t: toolDigest(tool('v1')) }).get('t')?.ok, false, 'pin mismatch even though accepted');
  await assert.rejects(integ.accept('s', 'never-seen', 'admin'), /no definition/);
});

test('approvals: bound to identity, target and argument digest; single use; expiry', async () => {
  let now = 1_000_000;
  const ap = createApprovals(new DatabaseSync(':memory:'), { windowMs: 1000, now: () => now });
  const d: Decision = { effect: 'approval_required', allowed: false, policy: 'p', rule: 2, reason: 'r', configVersion: 'v' };
  const target = { plane: 'mcp', target: 'crm/delete', resource: 'r', action: 'delete' };
  const check = (who: Identity, t: typeof target, digest: string) => ap.check(heldCall(who, t, digest, d));
  const first = await check(ANALYST, target, argsDigest({ id: 1 }));
  assert.equal(first.status, 'pending');
  assert.match(first.approval.id, /^apr_/);
  await ap.approve(first.approval.id, 'admin');
  assert.equal((await check(INTERN, target, argsDigest({ id: 1 }))).status, 'pending', 'another identity does not get it');
  assert.equal((await check(ANALYST, target, argsDigest({ id: 2 }))).status, 'pending', 'other arguments do not');
  assert.equal((await check(ANALYST, { ...target, target: 'crm/other' }, argsDigest({ id: 1 }))).status, 'pending', 'other tool does not');
  assert.equal((await check(ANALYST, target, argsDigest({ id: 1 }))).status, 'approved');
  assert.equal((await check(ANALYST, target, argsDigest({ id: 1 }))).status, 'pending', 'used once');
  const p = await ap.list({ status: 'pending' });
  assert.ok(p.length >= 3);
  now += 2000;
  assert.equal((await ap.list({ status: 'pending' })).length, 0, 'pending approvals expire');
  await assert.rejects(ap.approve(p[0].id, 'admin'), /is expired/);
  assert.equal(argsDigest({ a: 1, b: 2 }), argsDigest({ b: 2, a: 1 }));
});

test('argument validator compiles JSON Schema once and explains failures', () => {
  const v = compileValidator({ $id: 'x', type: 'object', properties: { limit: { type: 'integer', maximum: 5 } }, required: ['limit'] });
  assert.equal(v({ limit: 3 }), undefined);
  assert.match(v({ limit: 9 }) ?? '', /must be <= 5/);
  assert.match(v({}) ?? '', /required property 'limit'/);
  const other = compileValidator({ $id: 'x', type: 'object', properties: { q: { type: 'string' } }, required: ['q'] });
  assert.match(other({}) ?? '', /'q'/, 'a reused $id does not pick up another schema');
});

test('RFC 9728 metadata for /mcp', () => {
  const m = protectedResourceMetadata({ baseUrl: 'https://aam.example.com/' });
  assert.equal(m.resource, 'https://aam.example.com/mcp');
  assert.deepEqual(m.bearer_methods_supported, ['header']);
  assert.equal(wwwAuthenticate('https://aam.example.com'), 'Bearer resource_metadata="https://aam.example.com/.well-known/oauth-protected-resource/mcp"');
});

test('src/tools imports only types from policy, identity, credentials and audit', () => {
  const dir = join(process.cwd(), 'src/tools');
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    const src = readFileSync(join(dir, f), 'utf8');
    for (const m of src.matchAll(/^import\s+(type\s+)?[^;]*?from\s+'(\.\.\/(policy|identity|credentials|audit|server|gateway|cli)\/[^']+)'/gm)) {
      assert.ok(m[1] && /\/types\.ts$/.test(m[2]), `${f} imports ${m[2]} (only type imports of */types.ts are allowed)`);
    }
  }
});

test('URI templates route reads: {var} is one segment, {+var} spans segments, the rest is literal', () => {
  const one = uriTemplatePattern('account-history://{id}/{year}');
  assert.ok(one.test('account-history://a1/2025'));
  assert.ok(!one.test('account-history://a1/2025/x'), 'a {var} never spans a "/"');
  assert.ok(!one.test('accountXhistory://a1/2025'), 'literal parts are matched literally');
  const reserved = uriTemplatePattern('file:///{+path}');
  assert.ok(reserved.test('file:///etc/app/config.json'));
  assert.ok(uriTemplatePattern('search://q{?query,limit}').test('search://q?query=x&limit=2'));
});
