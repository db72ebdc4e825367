// Token endpoint calls (src/credentials/oauth.ts) as an upstream identity provider and aam's
// operators meet them: what a token endpoint's answer means, which failures are retried and how
// long aam waits before asking again (backoff with jitter, retry-after), and the error a failed
// request reports (status and a well-formed OAuth code only, never the body). The endpoint is a
// scripted fake fetch; expected values are written here. Split from mutation-inject so a mutant
// of oauth.ts dies in about a second (this file starts no vault, no key generation).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestToken, type FetchLike } from '../src/credentials/oauth.ts';
import { CredentialError } from '../src/credentials/errors.ts';

const REQ = { credential: 'up', tokenUrl: 'https://idp.example:8443/token', form: { grant_type: 'client_credentials' }, timeoutMs: 1234 };
type Answer = { status: number; body?: string; retryAfter?: string } | Error;

function scripted(answers: Answer[]) {
  let n = 0;
  const fetch: FetchLike = async () => {
    const a = answers[Math.min(n++, answers.length - 1)];
    if (a instanceof Error) throw a;
    return { status: a.status, headers: { get: (h: string) => (h === 'retry-after' ? a.retryAfter ?? null : null) }, text: async () => a.body ?? '' };
  };
  return { fetch, calls: () => n };
}

async function outcome(answers: Answer[], retry = { attempts: 3, baseMs: 100, maxMs: 1000 }, tokenUrl = REQ.tokenUrl) {
  const s = scripted(answers);
  const sleeps: number[] = [];
  try {
    const r = await requestToken({ ...REQ, tokenUrl }, s.fetch, retry, async (ms) => { sleeps.push(ms); });
    return { result: r, calls: s.calls(), sleeps };
  } catch (e) {
    assert.ok(e instanceof CredentialError, String(e));
    assert.deepEqual([e.code, e.status, e.credential], ['credential_unavailable', 502, 'up']);
    return { error: e.message, calls: s.calls(), sleeps };
  }
}
const failed = (why: string, host = 'idp.example:8443') => `could not obtain an upstream token for credential "up" from ${host}: ${why}. Check the token endpoint and the client credentials configured in aam.`;
const ok = (body: Record<string, unknown>): Answer => ({ status: 200, body: JSON.stringify(body) });

test('token answers: expires_in as a number or numeric string, token types bearer (any case) and N_A; anything else is refused without a retry', async () => {
  assert.deepEqual((await outcome([ok({ access_token: 'at', expires_in: 90 })])).result, { accessToken: 'at', expiresInSec: 90 });
  assert.deepEqual((await outcome([ok({ access_token: 'at', expires_in: '90', token_type: 'BEARER' })])).result, { accessToken: 'at', expiresInSec: 90 });
  for (const bad of [0, -5, 'soon', null, true, 'Infinity']) assert.deepEqual((await outcome([ok({ access_token: 'at', expires_in: bad, token_type: 'N_A' })])).result, { accessToken: 'at', expiresInSec: undefined }, String(bad));
  const mac = await outcome([ok({ access_token: 'at', token_type: 'MAC <script> and a very long name indeed, longer than 32' })]);
  assert.deepEqual([mac.error, mac.calls], [failed('unsupported token_type "MACscriptandaverylongnam"'), 1]);
  assert.equal((await outcome([ok({ access_token: 'at', token_type: 'DPoP_v2-x' })])).error, failed('unsupported token_type "DPoP_v2-x"'));
  // No token, or not JSON: retried, then reported.
  const none = await outcome([ok({ token_type: 'bearer' }), { status: 200, body: 'not json' }, ok({ access_token: '' })]);
  assert.deepEqual([none.error, none.calls], [failed('answer has no access_token'), 3]);
});

test('token errors: 5xx, 429 and 408 are retried with backoff or retry-after; other statuses are not; the OAuth error code is quoted only when well-formed', async () => {
  const five = await outcome([{ status: 503, body: '{"error":"temporarily_unavailable"}' }]);
  assert.deepEqual([five.error, five.calls], [failed('HTTP 503 temporarily_unavailable'), 3]);
  // Exponential backoff with jitter: between half and all of 100, then 200 ms.
  assert.equal(five.sleeps.length, 2);
  assert.ok(five.sleeps[0] >= 50 && five.sleeps[0] <= 100, String(five.sleeps));
  assert.ok(five.sleeps[1] >= 100 && five.sleeps[1] <= 200, String(five.sleeps));
  // The backoff is capped at maxMs.
  const capped = await outcome([{ status: 500 }], { attempts: 4, baseMs: 400, maxMs: 500 });
  assert.equal(capped.calls, 4);
  assert.ok(capped.sleeps[0] >= 200 && capped.sleeps[0] <= 400 && capped.sleeps[1] >= 250 && capped.sleeps[1] <= 500 && capped.sleeps[2] >= 250 && capped.sleeps[2] <= 500, String(capped.sleeps));
  for (const status of [429, 408]) assert.equal((await outcome([{ status }, ok({ access_token: 'at' })])).calls, 2, String(status));
  // retry-after (seconds) is honoured, up to maxMs; a zero or junk value falls back to backoff.
  assert.deepEqual((await outcome([{ status: 429, retryAfter: '0.5' }, ok({ access_token: 'at' })])).sleeps, [500]);
  assert.deepEqual((await outcome([{ status: 429, retryAfter: '30' }, ok({ access_token: 'at' })])).sleeps, [1000]);
  for (const ra of ['0', 'soon', 'Infinity', '-3']) {
    const s = (await outcome([{ status: 429, retryAfter: ra }, ok({ access_token: 'at' })])).sleeps;
    assert.ok(s.length === 1 && s[0] >= 50 && s[0] <= 100, `${ra}: ${s}`);
  }
  for (const status of [400, 401, 403, 404, 499]) {
    const r = await outcome([{ status, body: '{"error":"invalid_client"}' }]);
    assert.deepEqual([r.error, r.calls, r.sleeps], [failed(`HTTP ${status} invalid_client`), 1, []], String(status));
  }
  // An error code that is not a plain OAuth code (it could carry anything) is left out.
  for (const code of ['Invalid Client', 'x'.repeat(65), 'bad<script>', 42]) {
    assert.equal((await outcome([{ status: 400, body: JSON.stringify({ error: code }) }])).error, failed('HTTP 400'), String(code));
  }
  assert.equal((await outcome([{ status: 400, body: 'null' }])).error, failed('HTTP 400'));
  assert.equal((await outcome([{ status: 400, body: '{"error":""}' }])).error, failed('HTTP 400'));
  assert.equal((await outcome([{ status: 400, body: '{"error":"x"}' }])).error, failed('HTTP 400 x'));
  assert.equal((await outcome([{ status: 400, body: JSON.stringify({ error: 'a'.repeat(64) }) }])).error, failed(`HTTP 400 ${'a'.repeat(64)}`));
  // The last attempt's reason is the one reported; one attempt means no sleep at all.
  const mixed = await outcome([{ status: 500 }, { status: 502, body: '{"error":"bad_gateway"}' }], { attempts: 2, baseMs: 1, maxMs: 1 });
  assert.equal(mixed.error, failed('HTTP 502 bad_gateway'));
  assert.deepEqual((await outcome([{ status: 500 }], { attempts: 1, baseMs: 1, maxMs: 1 })).sleeps, []);
});

test('token endpoint unreachable: a timeout names the limit, anything else is a failed connection; both are retried; a bad URL is not quoted', async () => {
  const timeout = Object.assign(new Error('t'), { name: 'TimeoutError' });
  const abort = Object.assign(new Error('a'), { name: 'AbortError' });
  for (const e of [timeout, abort]) {
    const r = await outcome([e]);
    assert.deepEqual([r.error, r.calls], [failed('no answer within 1234 ms'), 3]);
  }
  const refused = await outcome([new Error('ECONNREFUSED')]);
  assert.deepEqual([refused.error, refused.calls], [failed('connection failed'), 3]);
  assert.equal((await outcome([{ status: 500 }], undefined, 'not a url')).error, failed('HTTP 500', 'the token endpoint'));
  // A body that cannot be read is an empty one.
  const s: FetchLike = async () => ({ status: 200, headers: { get: () => null }, text: () => Promise.reject(new Error('reset')) });
  await assert.rejects(requestToken(REQ, s, { attempts: 1, baseMs: 1, maxMs: 1 }, async () => {}), { message: failed('answer has no access_token') });
  // The request itself: a POST of the form, with the timeout's signal.
  let seen: Parameters<FetchLike>[1] | undefined;
  const rec: FetchLike = async (_url, init) => { seen = init; return { status: 200, headers: { get: () => null }, text: async () => '{"access_token":"at"}' }; };
  await requestToken({ ...REQ, form: { a: '1 2', b: '&' } }, rec, { attempts: 1, baseMs: 1, maxMs: 1 }, async () => {});
  assert.deepEqual([seen?.method, seen?.body, seen?.signal.aborted], ['POST', 'a=1+2&b=%26', false]);
});

test('token retries: the jitter spreads each wait over half to all of the doubling backoff, as Math.random says', async () => {
  // Expected waits written out for base 100 ms: attempt i waits 100 * 2^i * (1 + r) / 2.
  const cases: Array<[number, number[]]> = [[0, [50, 100]], [0.5, [75, 150]], [0.9, [95, 190]]];
  const random = Math.random;
  try {
    for (const [r, waits] of cases) {
      Math.random = () => r;
      const got = (await outcome([{ status: 503 }])).sleeps;
      assert.deepEqual(got.map((ms) => Math.round(ms * 1000) / 1000), waits, `random ${r}`);
    }
  } finally {
    Math.random = random;
  }
});

test('token retries: an error that is not the endpoint\'s answer (a bug in aam) is thrown as it is, at once, not retried or blamed on the endpoint', async () => {
  const bug = new TypeError('headers.get is broken');
  let calls = 0;
  const f: FetchLike = async () => { calls++; return { status: 503, headers: { get: () => { throw bug; } }, text: async () => '' }; };
  const sleeps: number[] = [];
  await assert.rejects(requestToken(REQ, f, { attempts: 3, baseMs: 1, maxMs: 1 }, async (ms) => { sleeps.push(ms); }), (e) => e === bug);
  assert.deepEqual([calls, sleeps], [1, []]);
});
