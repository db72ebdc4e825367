// The agent card as callers see it through aam (src/a2a/card.ts rewriteCard): nothing in it points
// at the callee itself, whichever field the callee put its own address in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rewriteCard } from '../src/a2a/card.ts';

const CALLEE = 'http://scorer.internal:9000/a2a';
const AAM = 'https://aam.example.com/a2a/risk-scorer';

const calleeCard = () => ({
  name: 'risk-scorer', version: '1', description: 'scores risk; served at http://SCORER.internal:9000/a2a',
  iconUrl: 'http://scorer.internal:9000/a2a/icon.png', documentationUrl: 'http://scorer.internal:9000/docs',
  provider: { organization: 'risk team', url: 'http://scorer.internal:9000' },
  url: 'http://scorer.internal:9000/a2a', additionalInterfaces: [{ url: 'http://scorer.internal:9000/a2a', transport: 'JSONRPC' }],
  supportedInterfaces: [{ url: 'http://scorer.internal:9000/a2a', protocolBinding: 'JSONRPC', protocolVersion: '1.0' }, { url: 'http://scorer.internal:9000/grpc', protocolBinding: 'GRPC', protocolVersion: '1.0' }],
  capabilities: { streaming: true, extensions: [{ uri: 'http://scorer.internal:9000/ext/trace/v1', required: false }, { uri: 'https://a2a.example.org/ext/other', required: false }] },
  securitySchemes: { o: { oauth2SecurityScheme: { flows: { clientCredentials: { tokenUrl: 'http://scorer.internal:9000/token' } } } } },
  signatures: [{ protected: 'x', signature: 'y' }],
  skills: [{ id: 'score', name: 'score', description: 'score it', tags: ['risk'], examples: ['POST http://scorer.internal:9000/a2a {...}'], securityRequirements: [{ schemes: { o: { list: [] } } }] }, { id: 'export', name: 'export', description: 'x', tags: [] }],
  defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'],
});

test('no field of the rewritten card names the callee\'s address; URLs under its A2A URL point at aam; extension URIs (identifiers the caller echoes) are kept', () => {
  const card = rewriteCard(calleeCard(), AAM, (s) => s === 'score', CALLEE);
  const text = JSON.stringify(card);
  const left = text.replace(/http:\/\/scorer\.internal:9000\/ext\/trace\/v1/g, '');
  assert.doesNotMatch(left, /scorer\.internal/i, text);
  assert.deepEqual(card.supportedInterfaces, [{ url: AAM, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }, { url: AAM, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0' }]);
  assert.equal(card.iconUrl, `${AAM}/icon.png`, 'under the callee\'s A2A URL: the same path under aam\'s');
  assert.equal(card.description, `scores risk; served at ${AAM}`, 'the host is matched without regard to case');
  assert.equal((card.provider as { url: string }).url, AAM, 'the callee\'s origin elsewhere: aam\'s endpoint');
  assert.deepEqual((card.capabilities as { extensions: Array<{ uri: string }> }).extensions.map((e) => e.uri), ['http://scorer.internal:9000/ext/trace/v1', 'https://a2a.example.org/ext/other']);
  assert.deepEqual((card.skills as Array<{ id: string; examples?: string[] }>).map((s) => [s.id, s.examples]), [['score', [`POST ${AAM} {...}`]]]);
  for (const k of ['url', 'additionalInterfaces', 'signatures', 'security']) assert.ok(!(k in card), k);
  assert.deepEqual(Object.keys(card.securitySchemes as object), ['aam']);
});

test('a card without the callee\'s address passes as the callee wrote it (bar the fields aam always rewrites)', () => {
  const card = rewriteCard({ name: 'plain', description: 'no address here', provider: { organization: 'o', url: 'https://example.com' }, skills: [] }, AAM, () => true, CALLEE);
  assert.equal(card.description, 'no address here');
  assert.deepEqual(card.provider, { organization: 'o', url: 'https://example.com' });
});

test('the card does not offer the extended card aam refuses (GetExtendedAgentCard is -32004): the SDK client\'s getAgentCard() would fail on it', () => {
  const card = rewriteCard({ name: 'x', capabilities: { streaming: true, extendedAgentCard: true }, supportsAuthenticatedExtendedCard: true, skills: [] }, AAM, () => true, CALLEE);
  assert.deepEqual(card.capabilities, { streaming: true });
  assert.ok(!('supportsAuthenticatedExtendedCard' in card), 'nor its v0.3 name');
});

test('where aam takes X.509-SVIDs (mTLS, asked of this TLS connection), the card offers that scheme beside the Bearer one, either one sufficing', () => {
  const bearer = rewriteCard({ name: 'x', skills: [] }, AAM, () => true, CALLEE);
  assert.deepEqual(Object.keys(bearer.securitySchemes as object), ['aam']);
  assert.deepEqual(bearer.securityRequirements, [{ schemes: { aam: { list: [] } } }]);
  assert.doesNotMatch(JSON.stringify(bearer.securitySchemes), /mTLS|X\.509/, 'where it does not, the card does not say it does');
  const both = rewriteCard({ name: 'x', skills: [] }, AAM, () => true, CALLEE, true);
  assert.deepEqual(Object.keys(both.securitySchemes as object), ['aam', 'aam_mtls']);
  assert.ok((both.securitySchemes as { aam_mtls: { mtlsSecurityScheme?: unknown } }).aam_mtls.mtlsSecurityScheme);
  assert.deepEqual(both.securityRequirements, [{ schemes: { aam: { list: [] } } }, { schemes: { aam_mtls: { list: [] } } }]);
});
