// Fleet mode, PostgreSQL down, model plane: a request refused because its evidence cannot be
// committed is counted as what its caller was answered (503), in aam_model_requests_total and in
// the usage rollups, as one process counts its own 503s; nothing of it is lost once PostgreSQL is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, pgProxy, type FleetTestStore, type PgProxy } from './helpers/fleet.ts';
import { until } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { startGateway } from '../src/cli/serve.ts';

let store: FleetTestStore;
let proxy: PgProxy;
let sql: postgres.Sql;
let gw: Awaited<ReturnType<typeof startGateway>>;
let url = '';
let key = '';

before(async () => {
  store = await fleetStore();
  proxy = await pgProxy(store.databaseUrl, (send) => send());
  sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  const d = tempDir('aam-fleet-pg-down-counts-');
  const config = join(d, 'aam.yaml');
  writeFileSync(config, yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'small', { targets: [{ provider: 'demo', model: 'demo-small' }] }),
    doc('Model', 'embed', { kind: 'embeddings', targets: [{ provider: 'demo', model: 'demo-embed' }] }),
    doc('Agent', 'writer', { workload: 'spiffe://test/agent/writer', team: 'ops' }),
    doc('AgentPolicy', 'ops', { identity: { team: 'ops' }, models: { allow: ['small', 'embed'] } }),
  ));
  gw = await startGateway({ configPath: config, dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...store.env, AAM_DATABASE_URL: proxy.url, AAM_LOG_LEVEL: 'error' } });
  url = `http://127.0.0.1:${gw.port}`;
  key = (await gw.rt.keyBook.create('writer')).secret;
});

after(async () => {
  proxy?.start();
  await gw?.close();
  proxy?.close();
  await sql?.end();
  await store?.drop();
});

const chat = (stream = false) => fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'small', stream, messages: [{ role: 'user', content: 'hi' }] }) });

const embeddings = () => fetch(`${url}/v1/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'embed', input: 'hi' }) });

async function requestsByStatus(): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^aam_model_requests_total\{agent="writer",[^}]*status="(\d+)"\} (\d+)$/gm)) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  return out;
}

test('PostgreSQL down: a model request refused 503 store_unavailable is counted as 503 in aam_model_requests_total and in the usage rollups written once PostgreSQL is back', async () => {
  assert.equal((await chat()).status, 200);
  proxy.stop();
  const refusedIds: string[] = [];
  try {
    for (const call of [chat, embeddings]) {
      const r = await call();
      const j = (await r.json()) as { error: { code: string } };
      assert.equal(r.status, 503, JSON.stringify(j));
      assert.equal(j.error.code, 'store_unavailable');
      refusedIds.push(r.headers.get('x-request-id')!);
    }
    const counts = await requestsByStatus();
    assert.equal(counts['503'], 2, `the refusals counted as answered: ${JSON.stringify(counts)}`);
    assert.equal(counts['200'], 1, `only the answered request as 200: ${JSON.stringify(counts)}`);
  } finally {
    proxy.start();
  }
  await until(async () => (await chat()).status === 200, 20_000, 'answered again');
  // Nothing lost: the refused requests' evidence is committed, and the rollups kept while PostgreSQL was away are written.
  await until(async () => (await sql`SELECT DISTINCT request_id FROM audit_trail WHERE request_id = ANY(${refusedIds})`).length === 2, 10_000, 'their evidence committed');
  let rows: Array<{ status: number; requests: number; input_tokens: number | null }> = [];
  await until(async () => {
    rows = await sql<typeof rows>`SELECT status, sum(requests)::int AS requests, sum(input_tokens)::int AS input_tokens FROM usage_rollup WHERE agent = 'writer' GROUP BY status ORDER BY status`;
    return rows.find((x) => x.status === 503)?.requests === 2 && (rows.find((x) => x.status === 200)?.requests ?? 0) >= 2;
  }, 10_000, `usage rollups by status as answered: ${JSON.stringify(rows)}`);
  // The upstream answered (and billed) them: their tokens stay counted, under the status the caller got.
  assert.ok((rows.find((x) => x.status === 503)?.input_tokens ?? 0) > 0, JSON.stringify(rows));
});
