// A federated trust domain's JWKS against a real publisher of our own that counts its requests:
// a kid a fetch showed absent is refused without another fetch for a while (one junk kid cannot
// cost a fetch per window), and refreshes honour HTTP caching (If-None-Match -> 304, Cache-Control
// max-age within bounds in place of refresh_seconds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createJwtVerifier, type VerifiedSvid, type VerifyFailure } from '../src/identity/jwt-svid.ts';
import { httpCaching } from '../src/identity/jwks-cache.ts';
import { jwks, makeKey, sign, svidClaims, type TestKey } from './fixtures/identity-jwt.ts';

const T0 = 1_800_000_000;
const PARTNER = 'spiffe://partner/agent/billing';

/** A JWKS publisher: ETag per key set, the given Cache-Control, 304 to a matching If-None-Match; it counts what it served. */
async function publisher(keys: TestKey[], cacheControl: string) {
  const seen = { full: 0, notModified: 0, conditional: [] as string[] };
  let version = 1;
  let cc = cacheControl;
  const server = createServer((req, res) => {
    const tag = `"v${version}"`;
    const inm = req.headers['if-none-match'];
    if (typeof inm === 'string') seen.conditional.push(inm);
    if (inm === tag) { seen.notModified++; res.writeHead(304, { etag: tag, 'cache-control': cc }).end(); return; }
    seen.full++;
    res.writeHead(200, { 'content-type': 'application/json', etag: tag, 'cache-control': cc }).end(JSON.stringify(jwks(...keys)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`, seen,
    hits: () => seen.full + seen.notModified,
    rotate: (k: TestKey[], control = cc) => { keys = k; version++; cc = control; },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function clock() {
  let t = T0 * 1000;
  return { now: () => t, advance: (s: number) => { t += s * 1000; } };
}

const code = (r: VerifiedSvid | VerifyFailure) => (r.ok ? 'ok' : r.code);
const settle = () => new Promise((r) => setTimeout(r, 50));

test('a kid a fetch showed absent is refused without another fetch for the TrustDomain\'s absent_kid_seconds; then looked up again', async () => {
  const c = clock();
  const k1 = await makeKey('ES256');
  const srv = await publisher([k1], 'max-age=300');
  try {
    const v = createJwtVerifier({ isRegisteredAgent: () => false, audience: ['aam'], now: c.now, jwks: { kidRefetchMs: 100 }, trustDomains: [{ name: 'partner', jwksUrl: srv.url, refreshSeconds: 300, absentKidSeconds: 30 }] });
    assert.deepEqual(await v.warm(), []);
    assert.equal(srv.hits(), 1);
    const junk = await sign(k1, svidClaims(PARTNER, T0), { kid: 'junk' });
    assert.equal(code(await v.verify(junk)), 'bad_signature');
    assert.equal(srv.hits(), 2, 'the first time, one fetch (the publisher may have rotated)');
    const t = performance.now();
    for (let i = 0; i < 5; i++) {
      assert.equal(code(await v.verify(junk)), 'bad_signature');
      await new Promise((r) => setTimeout(r, 120)); // past the 100 ms window each time
    }
    assert.equal(srv.hits(), 2, 'the same junk kid again: no fetch, window after window');
    assert.ok(performance.now() - t < 1500, 'and no wait for one');
    // Another kid is its own: it is looked up.
    assert.equal(code(await v.verify(await sign(k1, svidClaims(PARTNER, T0), { kid: 'other' }))), 'bad_signature');
    assert.equal(srv.hits(), 3);
    // Once absent_kid_seconds (30, not the default 60) have passed, the kid is looked up again: a key the publisher added since verifies.
    const k2 = await makeKey('ES256');
    srv.rotate([k1, k2]);
    const late = await sign(k2, svidClaims(PARTNER, T0));
    assert.equal(code(await v.verify(late)), 'ok', 'a kid never seen absent is looked up at once');
    const absent = await sign(k1, svidClaims(PARTNER, T0 + 29), { kid: 'junk' });
    c.advance(29);
    assert.equal(code(await v.verify(absent)), 'bad_signature');
    const before = srv.hits();
    c.advance(2);
    assert.equal(code(await v.verify(await sign(k1, svidClaims(PARTNER, T0 + 31), { kid: 'junk' }))), 'bad_signature');
    assert.equal(srv.hits(), before + 1, 'past 30 s: looked up again');
  } finally {
    await srv.close();
  }
});

test('a refresh sends If-None-Match with the last ETag: a 304 keeps the keys; Cache-Control max-age (30 s..1 h) replaces refresh_seconds', async () => {
  const c = clock();
  const k1 = await makeKey('ES256');
  const srv = await publisher([k1], 'public, max-age=600');
  try {
    const v = createJwtVerifier({ isRegisteredAgent: () => false, audience: ['aam'], now: c.now, trustDomains: [{ name: 'partner', jwksUrl: srv.url, refreshSeconds: 60 }] });
    assert.deepEqual(await v.warm(), []);
    assert.deepEqual([srv.seen.full, srv.seen.notModified, srv.seen.conditional], [1, 0, []], 'the first fetch is unconditional');
    /** `seconds` on, a token verifies, and any background refresh has landed: the publisher's count then. */
    let at = 0;
    const step = async (seconds: number) => {
      c.advance(seconds);
      at += seconds;
      assert.equal(code(await v.verify(await sign(k1, svidClaims(PARTNER, T0 + at)))), 'ok');
      await settle();
      return srv.hits();
    };
    assert.equal(await step(300), 1, 'past refresh_seconds (60), within the publisher\'s max-age 600: no refresh');
    // Past max-age: a background refresh, conditional, answered 304; the keys are kept.
    await step(301);
    assert.deepEqual([srv.seen.full, srv.seen.notModified, srv.seen.conditional], [1, 1, ['"v1"']]);
    assert.equal(await step(599), 2, 'the 304\'s max-age counts from it: no refresh 599 s on');
    // The publisher rotates (a new ETag) and asks for max-age=5: held to the 30 s floor.
    srv.rotate([k1], 'max-age=5');
    await step(2);
    assert.deepEqual([srv.seen.full, srv.seen.notModified], [2, 1], 'the changed set is fetched whole');
    assert.equal(await step(10), 3, 'max-age 5 is held to 30 s: no refresh 10 s on');
    // A year of max-age is held to 1 h.
    srv.rotate([k1], 'max-age=31536000');
    assert.equal(await step(21), 4);
    assert.equal(await step(3599), 4, 'within the 1 h cap');
    assert.equal(await step(2), 5, 'past it');
  } finally {
    await srv.close();
  }
});

test('Cache-Control parsing: max-age, no-store and no-cache (0: the floor), anything else none', () => {
  const h = (cc: string, etag?: string) => httpCaching(new Headers({ 'cache-control': cc, ...(etag ? { etag } : {}) }));
  assert.deepEqual(h('public, max-age=600', 'W/"x"'), { etag: 'W/"x"', maxAgeSeconds: 600 });
  assert.deepEqual(h('Max-Age = 60'), { maxAgeSeconds: 60 });
  assert.deepEqual(h('no-store'), { maxAgeSeconds: 0 });
  assert.deepEqual(h('max-age=600, no-cache'), { maxAgeSeconds: 0 });
  assert.deepEqual(h('s-maxage=600'), {});
  assert.deepEqual(h('max-age=abc'), {});
  assert.deepEqual(h(''), {});
});
