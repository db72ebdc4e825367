// Hot reload from the file watcher as operators and editors really change files: atomic replaces
// (write elsewhere, rename over: editors, `sed -i`, `mv new aam.yaml`), repeatedly; a bad file is
// refused, recorded as evidence, and the last good config keeps serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, renameSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { queryEvents } from '../src/audit/query.ts';
import { isConfigEvent } from '../src/config/watch.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, until } from './helpers/e2e.ts';
import { startServeChild } from './helpers/serve-child.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

const provider = doc('Provider', 'demo', { type: 'demo' });
const routes = ['one', 'two'].map((m) => doc('Model', m, { targets: [{ provider: 'demo', model: 'd' }] }));
const agent = doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa' });
const config = (allow: string[]) => yaml(provider, ...routes, agent, doc('AgentPolicy', 'tester-policy', { identity: { agent: 'tester' }, models: { allow } }));

/** Replace the config the way editors and `mv` do: a new file renamed over the old path. */
function replaceAtomically(gw: TestGateway, text: string, tmpName: string): void {
  const tmp = join(dirname(gw.configPath), tmpName);
  writeFileSync(tmp, text);
  renameSync(tmp, gw.configPath);
}

const status = async (gw: TestGateway, key: string, model: string) => (await chat(gw.url, key, model, 'hi')).status;

test('an atomically replaced config (editor save, sed -i, mv) is applied, every time: a tightened policy takes effect', async () => {
  const gw = await startTestGateway(config(['one', 'two']));
  try {
    const key = gw.key('tester');
    assert.equal(await status(gw, key, 'two'), 200);
    // Tighten: "two" is no longer allowed. A watch on the old inode would never see this.
    replaceAtomically(gw, config(['one']), '.aam.yaml.swp');
    await until(async () => (await status(gw, key, 'two')) === 403, 10_000, 'the tightened policy to apply after mv-over');
    assert.equal(await status(gw, key, 'one'), 200);
    // The watcher survives the replace: a second and a third one apply too (sed -i names its temp file sedXXXXXX).
    replaceAtomically(gw, config(['one', 'two']), 'sedAb12Cd');
    await until(async () => (await status(gw, key, 'two')) === 200, 10_000, 'the second replace to apply');
    replaceAtomically(gw, config(['two']), 'aam.yaml.new');
    await until(async () => (await status(gw, key, 'one')) === 403, 10_000, 'the third replace to apply');
    const log = gw.g.rt.auditLog!;
    await log.flush();
    const reloads = queryEvents(log.db, { type: 'admin', order: 'asc', limit: 100 }).filter((e) => e.admin?.action === 'config_reloaded');
    assert.equal(reloads.length, 3, 'one reload per replace (temp files do not trigger reloads of their own)');
    assert.ok(reloads.every((e) => e.admin?.actor === 'file-watch'));
  } finally { await gw.close(); }
});

test('a failed file-watch reload is recorded (config_reload_failed, actor file-watch, the error) and the old config keeps serving', async () => {
  const gw = await startTestGateway(config(['one']));
  try {
    const key = gw.key('tester');
    const good = gw.g.rt.compiled.version;
    const log = gw.g.rt.auditLog!;
    const failures = async () => { await log.flush(); return queryEvents(log.db, { type: 'admin', order: 'asc', limit: 100 }).filter((e) => e.admin?.action === 'config_reload_failed'); };
    replaceAtomically(gw, yaml(config(['one']), doc('Model', 'three', { targets: [{ provider: 'nope', model: 'd' }] })), 'aam.yaml.tmp');
    await until(async () => (await failures()).length > 0, 10_000, 'a config_reload_failed event');
    const [ev] = await failures();
    assert.equal(ev.admin?.actor, 'file-watch');
    assert.equal(ev.admin?.target, good, 'names the config that keeps serving');
    assert.match(String(ev.detail?.error), /unknown Provider "nope"/);
    assert.equal(ev.outcome?.status, 'error');
    assert.equal(gw.g.rt.compiled.version, good);
    assert.equal(await status(gw, key, 'one'), 200, 'the last good config keeps serving');
    // The watcher is still armed after the failure: a fixed file applies.
    replaceAtomically(gw, config(['one', 'two']), 'aam.yaml.tmp');
    await until(async () => (await status(gw, key, 'two')) === 200, 10_000, 'the fixed config to apply');
  } finally { await gw.close(); }
});

test('aam serve: a SIGHUP reload whose policy fails to compile logs one line naming the file, the line and the reason, and keeps the old config', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-reload-'));
  const path = join(dir, 'aam.yaml');
  writeFileSync(path, config(['one']));
  const gw = await startServeChild({ config: path, data: join(dir, 'data') });
  try {
    // The schema takes the string; only the policy's compilation (CEL) refuses it, with no YAML at hand.
    const bad = yaml(provider, ...routes, agent, doc('AgentPolicy', 'tester-policy', { identity: { agent: 'tester' }, models: { allow: ['one'] }, tools: [{ resource: 'x.y', actions: ['read'], when: 'identity.team == ' }] }));
    writeFileSync(path, bad);
    const line = bad.split('\n').findIndex((l) => l.includes('identity.team == ')) + 1;
    gw.proc.kill('SIGHUP');
    await until(() => /config_reload_failed/.test(gw.stderr()), 20_000, 'a config_reload_failed log line');
    const failed = gw.stderr().split('\n').filter((l) => l.includes('config_reload_failed'));
    assert.ok(failed.length >= 1);
    const entry = JSON.parse(failed[0]) as { msg: string; error: string };
    assert.match(entry.msg, /keeping the last good config/);
    assert.ok(entry.error.includes(`${path}:${line} (document 5): spec.tools[0].when: CEL syntax error`), entry.error);
    const health = await fetch(`${gw.url}/readyz`);
    assert.equal(health.status, 200, 'the old config keeps serving');
  } finally { await gw.stop(); }
});

test('a reload someone asks for is recorded under their name even when nothing changed (the file watcher may have applied it first)', async () => {
  const gw = await startTestGateway(config(['one']));
  try {
    assert.equal(gw.g.rt.reload({ type: 'user', sub: 'olga', email: 'olga@example.com' }), null);
    assert.equal(gw.g.rt.reload('file-watch'), null);
    const log = gw.g.rt.auditLog!;
    await log.flush();
    const reloads = queryEvents(log.db, { type: 'admin', order: 'asc', limit: 100 }).filter((e) => e.admin?.action === 'config_reloaded');
    assert.equal(reloads.length, 1, 'a watcher that finds nothing new records nothing');
    assert.deepEqual(reloads[0].admin?.actor, { type: 'user', sub: 'olga', email: 'olga@example.com' });
  } finally { await gw.close(); }
});

test('directory events that name the config (or a ConfigMap ..data swap) trigger a reload; others do not', () => {
  assert.equal(isConfigEvent('aam.yaml', 'aam.yaml'), true);
  assert.equal(isConfigEvent('..data', 'aam.yaml'), true);
  assert.equal(isConfigEvent(null, 'aam.yaml'), true);
  assert.equal(isConfigEvent('aam.yaml.swp', 'aam.yaml'), false);
  assert.equal(isConfigEvent('data', 'aam.yaml'), false);
  assert.equal(isConfigEvent('models.yml', null), true);
  assert.equal(isConfigEvent('notes.txt', null), false);
});
