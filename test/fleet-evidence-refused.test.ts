// Fleet mode, PostgreSQL stopped mid-run: a model request refused 503 store_unavailable after its
// model_call was written, a stream cut after its 200 head, and an HTTP tool call refused after its
// outcome was written each get an evidence_refused event beside that call once PostgreSQL is back
// (same request id, what the caller got). `aam audit show` prints it from PostgreSQL, `aam policy
// diff` replays the calls only, `aam audit verify` passes, and an edited evidence_refused row fails it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, pgProxy, type FleetTestStore, type PgProxy } from './helpers/fleet.ts';
import { until } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { runAudit } from './audit-helpers.ts';
import { policyDiffCommands } from '../src/cli/policy-diff.ts';
import { startGateway } from '../src/cli/serve.ts';

let store: FleetTestStore;
let proxy: PgProxy;
let sql: postgres.Sql;
let api: Server;
let gw: Awaited<ReturnType<typeof startGateway>> | undefined;
let url = '';
let key = '';
let dir = '';

const config = (toolUrl: string, allow: string[]) => yaml(
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'small', { targets: [{ provider: 'demo', model: 'demo-small' }] }),
  doc('HttpTool', 'crm', { baseUrl: toolUrl, resource: 'crm.accounts', actions: { read: { method: 'GET', path: '/accounts/{id}' } } }),
  doc('Agent', 'writer', { workload: 'spiffe://test/agent/writer', team: 'ops' }),
  doc('AgentPolicy', 'ops', { identity: { team: 'ops' }, models: { allow }, tools: [{ resource: 'crm.accounts', actions: ['read'] }] }),
);

before(async () => {
  store = await fleetStore();
  proxy = await pgProxy(store.databaseUrl, (send) => send());
  sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  api = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"a1"}'); });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  const toolUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  dir = tempDir('aam-fleet-evidence-refused-');
  writeFileSync(join(dir, 'aam.yaml'), config(toolUrl, ['small']));
  writeFileSync(join(dir, 'new.yaml'), config(toolUrl, []));
  gw = await startGateway({ configPath: join(dir, 'aam.yaml'), dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...store.env, AAM_DATABASE_URL: proxy.url, AAM_LOG_LEVEL: 'error' } });
  url = `http://127.0.0.1:${gw.port}`;
  key = (await gw.rt.keyBook.create('writer')).secret;
});

after(async () => {
  proxy?.start();
  await gw?.close();
  proxy?.close();
  await sql?.end();
  await new Promise<void>((r) => api ? api.close(() => r()) : r());
  await store?.drop();
});

const post = (path: string, body: unknown) => fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
const chat = (stream = false) => post('/v1/chat/completions', { model: 'small', stream, messages: [{ role: 'user', content: 'hi' }] });

/** An `aam` command in this process against the fleet's PostgreSQL (AAM_DATABASE_URL), its stdout captured. */
async function fleetCli<T>(run: () => Promise<T>): Promise<T> {
  process.env.AAM_DATABASE_URL = store.databaseUrl;
  try { return await run(); } finally { delete process.env.AAM_DATABASE_URL; }
}

test('PostgreSQL down: each refused or cut call gets evidence_refused beside it once PostgreSQL is back; show, policy diff and verify agree; an edited one is caught', async () => {
  assert.equal((await chat()).status, 200);
  proxy.stop();
  let whole: string, cut: string, tool: string;
  try {
    const r = await chat();
    assert.equal(r.status, 503);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'store_unavailable');
    whole = r.headers.get('x-request-id')!;
    const s = await chat(true);
    assert.equal(s.status, 200, 'the head is out before the evidence\'s commit');
    const text = await s.text();
    assert.match(text, /store_unavailable/);
    assert.doesNotMatch(text, /\[DONE\]/);
    cut = s.headers.get('x-request-id')!;
    const t = await post('/tools/crm/read', { id: 'a1' });
    assert.equal(t.status, 503, await t.clone().text());
    tool = t.headers.get('x-aam-request-id') ?? t.headers.get('x-request-id')!;
  } finally {
    proxy.start();
  }
  const ids = [whole, cut, tool];
  const trail = async () => {
    const rows = await sql<Array<{ request_id: string; type: string; body: string }>>`SELECT request_id, type, body FROM audit_trail WHERE request_id = ANY(${ids}) ORDER BY replica, seq`;
    return new Map(ids.map((id) => [id, rows.filter((x) => x.request_id === id).map((x) => JSON.parse(x.body) as Record<string, unknown>)]));
  };
  let got = await trail();
  await until(async () => (got = await trail(), ids.every((id) => got.get(id)!.some((e) => e.type === 'evidence_refused'))), 20_000, 'the refusals\' evidence committed once PostgreSQL is back');
  const brief = (id: string) => got.get(id)!.map((e) => [e.type, (e.outcome as { status: unknown } | undefined)?.status ?? null, e.answered ?? null]);
  assert.deepEqual(brief(whole), [['model_call', 200, null], ['evidence_refused', 503, 'refused']]);
  assert.deepEqual(brief(cut), [['model_call', 200, null], ['evidence_refused', 503, 'stream_cut']]);
  assert.deepEqual(brief(tool), [['tool.decision', null, null], ['tool.outcome', 200, null], ['evidence_refused', 503, 'refused']]);
  const amended = got.get(whole)!.at(-1)!;
  assert.deepEqual([amended.amends, (amended.identity as { agent: string }).agent, (amended.outcome as { error_class: string }).error_class], ['model_call', 'writer', 'evidence_not_durable']);

  const shown = await fleetCli(() => runAudit('audit show', join(dir, 'data'), {}, [whole]));
  assert.equal(shown.code, 0, shown.err);
  assert.match(shown.out, /evidence_refused .*answered 503: evidence not durable, the model_call above was not acknowledged/);
  const shownCut = await fleetCli(() => runAudit('audit show', join(dir, 'data'), {}, [cut]));
  assert.match(shownCut.out, /stream cut \(200 head sent, then an error event; counted 503\)/);

  // NEW allows no model: the 3 model_calls (and the tool's decision) are replayed, no evidence_refused.
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((c: string | Uint8Array) => { out += c.toString(); return true; }) as typeof process.stdout.write;
  try {
    await fleetCli(async () => policyDiffCommands['policy diff'].run({ values: { 'against-trail': '1h', json: true }, positionals: [join(dir, 'aam.yaml'), join(dir, 'new.yaml')], g: { config: join(dir, 'aam.yaml'), data: join(dir, 'data') } }));
  } finally { process.stdout.write = orig; }
  const diff = JSON.parse(out) as { replayed: number; changed: number };
  assert.deepEqual([diff.replayed, diff.changed], [4, 3], out);

  await gw!.close();
  gw = undefined;
  const ok = await fleetCli(() => runAudit('audit verify', join(dir, 'data')));
  assert.equal(ok.code, 0, ok.out + ok.err);
  await sql`UPDATE audit_events SET body = replace(body, '"status":503', '"status":200') WHERE type = 'evidence_refused' AND request_id = ${whole}`;
  const bad = await fleetCli(() => runAudit('audit verify', join(dir, 'data')));
  assert.equal(bad.code, 1, bad.out);
  assert.match(bad.out, /TAMPERED: fleet trail: altered/);
});
