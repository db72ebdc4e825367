// Fleet mode, audit operations on real PostgreSQL with two `aam serve` replicas: the configured
// sinks get every replica's events and the signed fleet checkpoints, each event once per sink
// (both replicas run the same sinks; one delivers at a time), and the sink's file verifies; the
// console's live tail on one replica shows what the other served; `aam audit export` writes a file
// `aam audit verify --file` checks alone (an edited line fails); `aam audit prune` deletes old
// events fleet-wide and the trail still verifies from the signed cut, while a chain missing its
// oldest rows without that record is reported.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { startServeChild, type ServeChild } from './helpers/serve-child.ts';
import { chat, localServer, runCli, until, type LocalServer } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';

const ADMIN = randomBytes(24).toString('hex');
const MASTER = randomBytes(32).toString('hex');
const HOOK_SECRET = randomBytes(16).toString('hex');
const CONFIG = yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one']));

let store: FleetTestStore;
let dir: string;
let config: string;
let sql: postgres.Sql;
let secret: string;
let hook: LocalServer;
let sinkFile: string;
const replicas: ServeChild[] = [];
/** What the webhook received: events by "replica:seq" (a repeat is a duplicate), checkpoint records in order. */
const received = { events: [] as string[], checkpoints: [] as Array<{ kind: string; heads: string }>, eventsAtCheckpoint: [] as number[] };

const fleetEnv = () => ({
  ...process.env, ...store.env, AAM_ADMIN_TOKEN: ADMIN, AAM_MASTER_KEY: MASTER, AAM_AUDIT_CHECKPOINT_INTERVAL_MS: '200',
  AAM_AUDIT_WEBHOOK_URL: hook.url, AAM_AUDIT_WEBHOOK_SECRET: HOOK_SECRET, AAM_AUDIT_FILE: sinkFile,
});
const cli = (...args: string[]) => runCli([...args, '--config', config, '--data', join(dir, 'cli-data')], { env: fleetEnv() });
/** The fleet's public keys, as an auditor keeps them (`aam audit public-key`, once). */
let keyFile: string | undefined;
async function publicKeys(): Promise<string> {
  if (keyFile) return keyFile;
  const k = await cli('audit', 'public-key');
  assert.equal(k.code, 0, k.stderr);
  keyFile = join(dir, 'fleet-keys.pem');
  writeFileSync(keyFile, k.stdout);
  return keyFile;
}
/** Each CLI command starts a Node process: several per test take minutes on a loaded 2-core machine. */
const SLOW = { timeout: 400_000 };

/** Every event of every chain has reached the webhook sink. */
async function delivered(): Promise<boolean> {
  const rows = await sql<Array<{ k: string }>>`SELECT replica || ':' || seq AS k FROM audit_trail`;
  const got = new Set(received.events);
  return rows.every((r) => got.has(r.k));
}

before(async () => {
  store = await fleetStore();
  dir = tempDir('aam-fleet-audit-ops-');
  config = join(dir, 'aam.yaml');
  writeFileSync(config, CONFIG);
  sinkFile = join(dir, 'sink', 'audit.jsonl');
  hook = await localServer((req, res, body) => {
    const b = JSON.parse(body) as { events?: Array<{ replica: string; seq: number }>; checkpoints?: Array<{ kind: string; heads: string }> };
    for (const e of b.events ?? []) received.events.push(`${e.replica}:${e.seq}`);
    for (const c of b.checkpoints ?? []) { received.checkpoints.push(c); received.eventsAtCheckpoint.push(received.events.length); }
    res.writeHead(200).end();
  });
  sql = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  for (const i of [0, 1]) {
    const data = join(dir, `data-${i}`);
    mkdirSync(data);
    replicas.push(await startServeChild({ config, data, env: fleetEnv() }));
  }
  const created = await cli('keys', 'create', '--agent', 'tester');
  assert.equal(created.code, 0, created.stderr);
  secret = created.stdout.trim().split('\n').at(-1)!;
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await sql?.end();
  await hook?.close();
  await store?.drop();
});

test('sinks: every replica\'s events reach the webhook and the file once each, checkpoints after the events they cover; the file verifies', SLOW, async () => {
  for (let i = 0; i < 10; i++) assert.equal((await chat(replicas[i % 2].url, secret, 'one', `sink ${i}`)).status, 200);
  await until(async () => (await sql`SELECT 1 FROM audit_checkpoints`).length > 0, 15_000, 'a signed fleet checkpoint');
  await until(delivered, 30_000, 'every event delivered to the webhook');
  await until(() => received.checkpoints.length > 0, 30_000, 'a fleet checkpoint delivered');
  const chains = new Set(received.events.map((k) => k.split(':')[0]));
  assert.ok(chains.size >= 3, `events of both replicas and the CLI arrived (chains: ${[...chains].join(', ')})`);
  const dupes = received.events.filter((k, i) => received.events.indexOf(k) !== i);
  assert.deepEqual(dupes, [], 'no event delivered twice, though both replicas run the sink');
  // Each checkpoint arrived after every event it names.
  received.checkpoints.forEach((c, i) => {
    assert.equal(c.kind, 'fleet_checkpoint');
    const before = new Set(received.events.slice(0, received.eventsAtCheckpoint[i]));
    for (const [replica, seq] of JSON.parse(c.heads) as Array<[string, number]>) assert.ok(before.has(`${replica}:${seq}`), `checkpoint ${i} names ${replica}:${seq} before it was delivered`);
  });
  // The file sink (same path on both replicas: one sink, one cursor) holds each event once and verifies alone.
  await until(() => {
    try { return readFileSync(sinkFile, 'utf8').includes('"fleet_checkpoint"'); } catch { return false; }
  }, 30_000, 'a checkpoint in the sink file');
  const lines = readFileSync(sinkFile, 'utf8').trim().split('\n').filter((l) => l.startsWith('{"kind":"event"'));
  const keys = lines.map((l) => { const e = JSON.parse(l) as { replica: string; seq: number }; return `${e.replica}:${e.seq}`; });
  assert.equal(new Set(keys).size, keys.length, 'no event twice in the file');
  const v = await cli('audit', 'verify', '--file', sinkFile, '--public-key', await publicKeys());
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /OK: fleet trail .*audit\.jsonl: \d+ events in \d+ replica chains/);
});

test('the live tail on replica A shows an event replica B served', async () => {
  const ctrl = new AbortController();
  const res = await fetch(`${replicas[0].url}/admin/v1/audit/stream?agent=tester`, { headers: { authorization: `Bearer ${ADMIN}` }, signal: ctrl.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const reader = res.body!.getReader();
  let text = '';
  try {
    // The tail fixed where it starts before answering: this request comes after it, not as history.
    const served = await chat(replicas[1].url, secret, 'one', 'tail me');
    assert.equal(served.status, 200);
    const deadline = Date.now() + 20_000;
    while (!text.includes(served.requestId) && Date.now() < deadline) {
      const c = await reader.read();
      if (c.done) break;
      text += new TextDecoder().decode(c.value);
    }
    assert.ok(text.includes(served.requestId), `the tail on A shows B's request ${served.requestId}: ${text.slice(0, 500)}`);
    const frame = text.split('\n\n').find((f) => f.includes(served.requestId))!;
    const [row] = await sql<Array<{ replica: string; seq: string }>>`SELECT replica, seq FROM audit_trail WHERE request_id = ${served.requestId} ORDER BY seq LIMIT 1`;
    assert.match(frame, new RegExp(`^id: ${row.replica}:${row.seq}$`, 'm'), 'the SSE id names the chain and seq');
    assert.ok(frame.includes(`"replica":"${row.replica}"`), 'the event names the replica that served it');
  } finally { ctrl.abort(); }
});

test('export: the whole fleet trail as a file that verifies alone; an edited line fails', SLOW, async () => {
  const file = join(dir, 'export.jsonl');
  const x = await cli('audit', 'export', '--out', file);
  assert.equal(x.code, 0, x.stderr);
  assert.match(x.stderr, /exported \d+ events of \d+ replica chains, \d+ checkpoints/);
  const keys = await publicKeys();
  const v = await cli('audit', 'verify', '--file', file, '--public-key', keys);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  const [{ n }] = await sql<Array<{ n: string }>>`SELECT count(*) AS n FROM audit_trail`;
  assert.match(v.stdout, new RegExp(`: ${n} events in`), 'every event of the fleet is in the export');
  // Without the key the auditor trusts, no verdict.
  assert.equal((await cli('audit', 'verify', '--file', file)).code, 2);
  // An edited event line is caught, naming its chain and seq.
  const lines = readFileSync(file, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes('"status":200') && l.startsWith('{"kind":"event"'));
  const edited = join(dir, 'edited.jsonl');
  writeFileSync(edited, lines.map((l, j) => (j === i ? l.replace('"status":200', '"status":500') : l)).join('\n'));
  const t = await cli('audit', 'verify', '--file', edited, '--public-key', keys);
  assert.equal(t.code, 1, t.stdout);
  assert.match(t.stdout, /TAMPERED: fleet trail: altered in replica [\w-]+ at seq \d+/);
});

test('export --since: each chain starts right after a signed head, so the shorter file verifies too', SLOW, async () => {
  const keys = await publicKeys();
  const [{ n }] = await sql<Array<{ n: string }>>`SELECT count(*) AS n FROM audit_trail`;
  await until(async () => {
    const [c] = await sql<Array<{ heads: string }>>`SELECT heads FROM audit_checkpoints ORDER BY id DESC LIMIT 1`;
    const [h] = await sql<Array<{ n: string }>>`SELECT count(*) AS n FROM audit_chains WHERE head_seq > 0`;
    return c !== undefined && (JSON.parse(c.heads) as unknown[]).length === Number(h.n);
  }, 15_000, 'a checkpoint naming every chain');
  assert.equal((await chat(replicas[0].url, secret, 'one', 'after the checkpoint')).status, 200);
  const part = join(dir, 'since.jsonl');
  const since = new Date(Date.now() - 1000).toISOString();
  assert.equal((await cli('audit', 'export', '--since', since, '--out', part)).code, 0);
  const ps = await cli('audit', 'verify', '--file', part, '--public-key', keys);
  assert.equal(ps.code, 0, ps.stdout + ps.stderr);
  assert.match(ps.stdout, /chain\(s\) start after a signed checkpoint/);
  assert.ok(readFileSync(part, 'utf8').split('\n').filter((l) => l.startsWith('{"kind":"event"')).length < Number(n), 'the --since export is shorter');
});

test('prune: old events go fleet-wide, the trail verifies from the signed cut; rows removed without one are reported', SLOW, async () => {
  await until(delivered, 30_000, 'the sinks delivered everything (prune keeps what they have not)');
  const [{ n: before }] = await sql<Array<{ n: string }>>`SELECT count(*) AS n FROM audit_trail`;
  const p = await cli('audit', 'prune', '--before', new Date(Date.now() + 1000).toISOString());
  assert.equal(p.code, 0, p.stdout + p.stderr);
  assert.match(p.stdout, /dropped \d+ events of \d+ replica chain\(s\)/);
  assert.match(p.stdout, /"kind":"fleet_retention"/);
  const [{ n: left }] = await sql<Array<{ n: string }>>`SELECT count(*) AS n FROM audit_trail`;
  assert.ok(Number(left) < Number(before), `events were deleted (${before} -> ${left})`);
  const v = await cli('audit', 'verify');
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /chain\(s\) start at a signed retention cut/);
  // New traffic after the prune chains on from the cut; an export of the pruned trail verifies alone.
  for (const r of replicas) assert.equal((await chat(r.url, secret, 'one', 'after prune')).status, 200);
  const file = join(dir, 'after-prune.jsonl');
  assert.equal((await cli('audit', 'export', '--out', file)).code, 0);
  const fv = await cli('audit', 'verify', '--file', file, '--public-key', await publicKeys());
  assert.equal(fv.code, 0, fv.stdout + fv.stderr);
  // Without its signed retention record, a chain missing its oldest rows is tampered with.
  const saved = await sql`SELECT time, cuts, key_id, signature FROM audit_retention`;
  await sql`DELETE FROM audit_retention`;
  const t = await cli('audit', 'verify');
  assert.equal(t.code, 1, t.stdout);
  assert.match(t.stdout, /TAMPERED: fleet trail: removed in replica [\w-]+ at seq 1/);
  for (const r of saved) await sql`INSERT INTO audit_retention (time, cuts, key_id, signature) VALUES (${r.time}, ${r.cuts}, ${r.key_id}, ${r.signature})`;
  // A forged record (not signed by a fleet key) vouches for nothing.
  await sql`UPDATE audit_retention SET signature = ${Buffer.alloc(64).toString('base64')}`;
  const forged = await cli('audit', 'verify');
  assert.equal(forged.code, 1, forged.stdout);
  assert.match(forged.stdout, /bad_checkpoint/);
});
