// The in-memory key mirror every key store answers from (src/store/key-mirror.ts). A fleet
// replica applies another replica's key change with replaceKeys: that key's old secrets and
// their token generations must be gone at once, other keys untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyMirror } from '../src/store/key-mirror.ts';
import { hashKey } from '../src/store/key-secrets.ts';
import type { KeyRecord } from '../src/store/types.ts';

const key = (id: string, over: Partial<KeyRecord> = {}): KeyRecord => ({ id, agent: 'alice', name: null, createdAt: '2030-01-01T00:00:00.000Z', revokedAt: null, expiresAt: null, ...over });
const secret = (s: string, keyId: string, expires: number | string | null = null) => ({ hash: hashKey(s), key_id: keyId, expires_at: expires as number | null });
const NOW = Date.parse('2030-06-01T00:00:00.000Z');

function generation(m: KeyMirror, s: string): string {
  const r = m.authenticate(s, NOW);
  assert.ok(r.ok, `${s} should authenticate`);
  return r.generation;
}

test('replaceKeys: a key changed elsewhere loses all its old secrets and their tokens at once; other keys are untouched', () => {
  const m = new KeyMirror();
  m.replaceAll([key('key_a'), key('key_b', { agent: 'bob' })], [secret('aam_a1', 'key_a'), secret('aam_a2', 'key_a'), secret('aam_b1', 'key_b')]);
  const g1 = generation(m, 'aam_a1');
  generation(m, 'aam_a2');
  const gb = generation(m, 'aam_b1');
  // Rotated on another replica with grace 0: only the new secret is left.
  m.replaceKeys([key('key_a')], [secret('aam_a3', 'key_a')]);
  for (const old of ['aam_a1', 'aam_a2']) {
    const r = m.authenticate(old, NOW);
    assert.ok(!r.ok && r.reason === 'unknown API key', `${old} still authenticates`);
  }
  assert.equal(m.generationProblem('key_a', g1, NOW), 'the secret of API key key_a this token was minted from no longer exists');
  assert.equal(m.generationValidUntil(g1), null);
  const g3 = generation(m, 'aam_a3');
  assert.equal(m.generationProblem('key_a', g3, NOW), undefined);
  assert.equal(generation(m, 'aam_b1'), gb, 'another key is untouched');
  assert.equal(m.get('key_b')?.agent, 'bob');
  // Revoked elsewhere, then replaced again with the same secret: refused, naming the revocation.
  m.replaceKeys([key('key_a', { revokedAt: '2030-05-01T00:00:00.000Z' })], [secret('aam_a3', 'key_a')]);
  const r = m.authenticate('aam_a3', NOW);
  assert.ok(!r.ok && /API key key_a was revoked at 2030-05-01/.test(r.reason));
  assert.deepEqual([...m.keys()].map((k) => k.id).sort(), ['key_a', 'key_b']);
});

test('a rotation grace end read back as text (a PostgreSQL bigint) still ends the secret on time', () => {
  const m = new KeyMirror();
  const end = NOW + 60_000;
  m.replaceAll([key('key_a')], [secret('aam_old', 'key_a', String(end)), secret('aam_new', 'key_a')]);
  assert.ok(m.authenticate('aam_old', end - 1).ok);
  const r = m.authenticate('aam_old', end);
  assert.ok(!r.ok && /grace period ended/.test(r.reason), JSON.stringify(r));
  assert.equal(m.generationValidUntil(generation(m, 'aam_old')), end);
});
