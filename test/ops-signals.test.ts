// Signals to a real `aam serve` process: SIGHUP reloads the config (a tightened policy applies, the
// reload is evidence with actor SIGHUP); SIGTERM stops accepting, lets the in-flight request
// finish, flushes the audit trail to disk (nothing left to recover) and exits 0.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAuditDb } from '../src/audit/store.ts';
import { queryEvents } from '../src/audit/query.ts';
import { recoverUncommitted } from '../src/audit/log.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { chat, until } from './helpers/e2e.ts';
import { startServeChild, heldUpstream, createKey } from './helpers/serve-child.ts';

const root = mkdtempSync(join(tmpdir(), 'aam-signals-'));
after(() => rmSync(root, { recursive: true, force: true }));

const agent = doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa' });
const policy = (allow: string[]) => doc('AgentPolicy', 'tester-policy', { identity: { agent: 'tester' }, models: { allow } });

/** Admin events of a stopped gateway's trail, read straight from the store (no recovery). */
function adminEvents(data: string): Array<[string | undefined, string | undefined]> {
  const db = openAuditDb(data);
  try { return queryEvents(db, { type: 'admin', order: 'asc', limit: 1000 }).map((e) => [e.admin?.action, e.admin?.actor as string | undefined]); } finally { db.close(); }
}

test('SIGHUP: a changed config is applied on the signal (the file watcher cannot see this change) and recorded with actor SIGHUP', async () => {
  const dir = join(root, 'hup');
  mkdirSync(join(dir, 'conf'), { recursive: true });
  const real = join(dir, 'conf', 'real.yaml');
  const config = join(dir, 'aam.yaml'); // a symlink: editing its target in conf/ raises no event in dir/
  const data = join(dir, 'data');
  const routes = ['one', 'two'].map((m) => doc('Model', m, { targets: [{ provider: 'demo', model: 'd' }] }));
  const text = (allow: string[]) => yaml(doc('Provider', 'demo', { type: 'demo' }), ...routes, agent, policy(allow));
  writeFileSync(real, text(['one', 'two']));
  symlinkSync(real, config);
  const key = await createKey(config, data);
  const gw = await startServeChild({ config, data });
  try {
    assert.equal((await chat(gw.url, key, 'two', 'hi')).status, 200);
    writeFileSync(real, text(['one']));
    gw.proc.kill('SIGHUP');
    await until(async () => (await chat(gw.url, key, 'two', 'hi')).status === 403, 15_000, 'the tightened policy to apply after SIGHUP');
    assert.equal((await chat(gw.url, key, 'one', 'hi')).status, 200);
    gw.proc.kill('SIGTERM');
    assert.equal(await gw.exited, 0, gw.stderr());
    const reloads = adminEvents(data).filter(([a]) => a === 'config_reloaded');
    assert.deepEqual(reloads, [['config_reloaded', 'SIGHUP']]);
  } finally { await gw.stop(); }
});

test('SIGTERM: new connections are refused, the in-flight request completes, its evidence is on disk and the process exits 0', async () => {
  const dir = join(root, 'term');
  mkdirSync(dir, { recursive: true });
  const up = await heldUpstream();
  const config = join(dir, 'aam.yaml');
  const data = join(dir, 'data');
  writeFileSync(config, yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'slow', { targets: [{ provider: 'up', model: 'held' }] }),
    agent, policy(['slow']),
  ));
  const key = await createKey(config, data);
  const gw = await startServeChild({ config, data });
  try {
    const inFlight = chat(gw.url, key, 'slow', 'finish me');
    await until(() => up.received === 1, 15_000, 'the request to reach the upstream');
    gw.proc.kill('SIGTERM');
    // Draining: the listener is closed (a new connection is refused) while the request is still held.
    const refused = () => new Promise<boolean>((resolve) => {
      const s = connect(gw.port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(false); });
      s.once('error', () => resolve(true));
    });
    await until(refused, 15_000, 'new connections to be refused after SIGTERM');
    assert.equal(gw.proc.exitCode, null, 'still running while a request is in flight');
    up.release();
    const r = await inFlight;
    assert.equal(r.status, 200, r.text);
    assert.match(r.text, /finished after the drain began/);
    assert.equal(await gw.exited, 0, gw.stderr());
    // Flushed: the request's evidence is committed and nothing is left for the next start to recover.
    assert.equal(await recoverUncommitted(data), 0, 'no uncommitted audit lines left behind');
    const db = openAuditDb(data);
    try {
      const events = queryEvents(db, { requestId: r.requestId, order: 'asc' });
      assert.ok(events.some((e) => e.type === 'model_call' && e.outcome?.status === 200), JSON.stringify(events));
    } finally { db.close(); }
    assert.match(gw.stderr(), /"event":"shutdown","signal":"SIGTERM"/);
  } finally { await gw.stop(); await up.close(); }
});
