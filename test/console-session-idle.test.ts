// The idle timeout (AAM_CONSOLE_IDLE_TIMEOUT) counts a person's requests only: an audit live tail
// left open re-checks its reader every second, but those checks do not keep the session alive, so
// a console tab left following the trail signs out when its person has gone (the tail then ends
// with a 401 "ended" event, as at sign-out).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConsoleEnv, type ConsoleEnv } from './helpers/console-setup.ts';
import { loginWithoutBrowser } from './helpers/oidc-idp.ts';

const IDLE_S = 4;
let env: ConsoleEnv;
before(async () => { env = await startConsoleEnv({ env: { AAM_CONSOLE_IDLE_TIMEOUT: `${IDLE_S}s` } }); });
after(async () => { await env?.close(); });

test('an open audit tail does not keep a session past the idle timeout: the tail ends (401) and the session is gone', async () => {
  const { jar } = await loginWithoutBrowser(env.url, 'victor');
  const me = () => fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } });
  assert.equal((await me()).status, 200);
  const opened = Date.now();
  // Without the fix the tail's checks note a use every second and it streams until this timeout (the test fails).
  const r = await fetch(`${env.url}/admin/v1/audit/stream`, { headers: { cookie: jar.header() }, signal: AbortSignal.timeout(IDLE_S * 1000 + 15_000) });
  assert.equal(r.status, 200);
  const text = await r.text(); // until the server ends it
  assert.match(text, /event: ended\ndata: \{"status":401,/);
  assert.ok(Date.now() - opened >= (IDLE_S - 1) * 1000, `not before the idle timeout: ${Date.now() - opened} ms`);
  assert.equal((await me()).status, 401, 'the session idled out');
});

test('a person\'s own requests keep the session going past the idle timeout', async () => {
  const { jar } = await loginWithoutBrowser(env.url, 'victor');
  for (let i = 0; i < 2 * IDLE_S; i++) {
    const r = await fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } });
    assert.equal(r.status, 200, `request ${i} (${i} s in)`);
    await new Promise((res) => setTimeout(res, 1000));
  }
});
