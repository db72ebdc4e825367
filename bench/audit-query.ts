// Audit query benchmark: builds a 1,000,000-event trail in a temp dir (through openAuditLog, the
// writer thread, no HTTP), then times every filter the API, console, live tail and CLI offer with
// the key index (and with --scan, with it switched off: the block scan every query did before),
// the migration of a trail indexed by the previous build, and what the index costs the writer
// per event; then verifies the trail. Writes a section of bench/AUDIT-RESULTS.md.
//   node_modules/.bin/node bench/audit-query.ts [--events 1000000] [--dir DIR] [--scan]
// --dir keeps the trail in DIR (reused when it is already there) to time other builds against it.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openAuditLog } from '../src/audit/log.ts';
import { queryEvents } from '../src/audit/query.ts';
import type { AuditQuery } from '../src/audit/query.ts';
import { backfillKeyIndex, FACET_INDEX_FROM, getMeta, KEY_INDEX_FROM, openAuditDb, setMeta, TRACE_INDEX_FROM } from '../src/audit/store.ts';
import { verifyDatabase } from '../src/audit/verify.ts';
import type { AuditEventInput } from '../src/audit/event.ts';
import { replaceSection } from './lib/report.ts';

const here = dirname(fileURLToPath(import.meta.url));
const arg = process.argv.indexOf('--events');
const total = arg > 0 ? Number(process.argv[arg + 1]) : 1_000_000;
const dirArg = process.argv.indexOf('--dir');
const dir = dirArg > 0 ? process.argv[dirArg + 1] : mkdtempSync(join(tmpdir(), 'aam-bench-query-'));
if (dirArg < 0) process.once('exit', () => rmSync(dir, { recursive: true, force: true }));

const traceOf = (request: number) => `0af76519${request.toString(16).padStart(24, '0')}`;

// Two events per request (decision + model_call); 50 agents round robin, plus one rare agent
// that appears every 10,000 events (the case a scan pays for in full).
function event(i: number): AuditEventInput {
  const agent = i % 10_000 === 5 ? 'rare-agent' : `agent-${Math.floor(i / 2) % 50}`;
  return {
    type: i % 2 ? 'model_call' : 'decision',
    request_id: `req-${Math.floor(i / 2)}`,
    trace_id: traceOf(Math.floor(i / 2)), // one trace per request
    identity: { spiffe_id: `spiffe://prod/agent/${agent}`, agent, owner: 'jane@example.com', team: 'finance', environment: 'prod', deployment: 'v3', key_id: 'key_0123', method: 'virtual_key' },
    policy: { name: 'readonly', version: 'sha256:4f2c', rule: 0, decision: 'allow', reason: 'model is in models.allow' },
    model: { route: 'reasoning-high', provider: 'openai', model: 'gpt-4o', input_tokens: 812, output_tokens: 210, cost_usd: 0.00413, latency_ms: 431 },
    outcome: { status: 200 },
  };
}

async function build(): Promise<{ seconds: number; cpuUsPerEvent: number }> {
  const log = openAuditLog({ dataDir: dir, maxQueue: 200_000, batchSize: 1000, checkpointEvery: 100_000 });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    while (!log.record(event(i))) await log.flush(); // queue full: let the writer catch up
  }
  await log.flush();
  const t1 = performance.now();
  const c1 = process.cpuUsage(c0);
  await log.close();
  return { seconds: (t1 - t0) / 1000, cpuUsPerEvent: (c1.user + c1.system) / total };
}

/** Medians of 5 runs, in ms: wall time and the CPU time of this process (steadier on a shared machine). */
function time(db: ReturnType<typeof openAuditDb>, q: AuditQuery, runs = 5): { ms: number; cpuMs: number; n: number } {
  const wall: number[] = [];
  const cpu: number[] = [];
  let n = 0;
  for (let r = 0; r < runs; r++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    n = queryEvents(db, q).length;
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return { ms: median(wall), cpuMs: median(cpu), n };
}

const built = existsSync(join(dir, 'audit.db')) ? { seconds: Number.NaN, cpuUsPerEvent: Number.NaN } : await build();
const db = openAuditDb(dir);
if (getMeta(db, TRACE_INDEX_FROM) !== '1') throw new Error(`expected the writer to index trace ids from the first block, ${TRACE_INDEX_FROM}=${getMeta(db, TRACE_INDEX_FROM)}`);
// A trail written by an earlier build (--dir) gets this build's index kinds first, as a start would.
while (backfillKeyIndex(db, 1000)) { /* next slice */ }
const mid = Math.floor(total / 4);
// The newest tenth of the trail, as a time window (the console's and live tail's `since`).
const recent = String(db.prepare('SELECT min_time FROM audit_blocks WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1').get(Math.floor(total * 0.9))?.min_time);
const queries: [string, AuditQuery][] = [
  ['request id (one request, 2 events, a quarter into the trail)', { requestId: `req-${mid}` }],
  ['request id that does not exist', { requestId: 'req-missing' }],
  ['trace id (one trace, 2 events, a quarter into the trail)', { traceId: traceOf(mid) }],
  ['trace id that does not exist', { traceId: 'ffffffffffffffffffffffffffffffff' }],
  ['rare agent (1 event in 10,000), newest 100', { agent: 'rare-agent' }],
  ['common agent (1 in 50), oldest 100', { agent: 'agent-7', order: 'asc' }],
  ['common agent, newest 100', { agent: 'agent-7' }],
  ['team of 5 agents (1 in 10), newest 100', { agents: ['agent-1', 'agent-2', 'agent-3', 'agent-4', 'agent-5'] }],
  ['team holding the rare agent, newest 100', { agents: ['rare-agent', 'agent-gone'] }],
  ['decision allow, newest 100', { decision: 'allow' }],
  ['decision deny (none in the trail)', { decision: 'deny' }],
  ['plane model, newest 100', { plane: 'model' }],
  ['plane tool (none in the trail)', { plane: 'tool' }],
  ['plane admin (none in the trail)', { plane: 'admin' }],
  ['type admin (none in the trail)', { type: 'admin' }],
  ['rare agent and decision deny (none)', { agent: 'rare-agent', decision: 'deny' }],
  ['common agent and plane tool (none)', { agent: 'agent-7', plane: 'tool' }],
  ['team, decision allow, plane model, newest 100', { agents: ['agent-1', 'agent-2'], decision: 'allow', plane: 'model' }],
  ['newest tenth of the trail (since), newest 100', { since: recent }],
  ['newest tenth (since), oldest 100 (the live tail\'s order)', { since: recent, order: 'asc' }],
  ['newest tenth (since) and rare agent', { since: recent, agent: 'rare-agent' }],
  ['newest tenth (since) and plane tool (none)', { since: recent, plane: 'tool' }],
];
const withIndex = queries.map(([, q]) => time(db, q));
// --scan: every query once more with the index switched off (the block scan every query did
// before it existed); at 1M events that takes minutes (a trace id scans every line's bytes).
const scanning = process.argv.includes('--scan');
const markers = [KEY_INDEX_FROM, FACET_INDEX_FROM, TRACE_INDEX_FROM];
const saved = markers.map((m) => getMeta(db, m));
for (const m of markers) db.prepare('DELETE FROM audit_meta WHERE key = ?').run(m);
const scan = scanning ? queries.map(([, q]) => time(db, q, 1)) : [];
markers.forEach((m, i) => { if (saved[i] !== undefined) setMeta(db, m, saved[i]); });

// The migration a trail indexed by the previous build gets at its first start: decisions, types
// and planes of every block (the writer thread does it in slices of 20 blocks between batches).
db.exec("DELETE FROM audit_key_blocks WHERE kind IN ('d', 'y', 'p')");
db.prepare('DELETE FROM audit_meta WHERE key = ?').run(FACET_INDEX_FROM);
let c0 = process.cpuUsage();
let t0 = performance.now();
while (backfillKeyIndex(db, 20)) { /* next slice */ }
const facetMigration = { seconds: (performance.now() - t0) / 1000, cpuUsPerEvent: cpuSince(c0) / total };
// What the writer adds per event: rebuilding the whole index (all but trace ids) is the same work it does per batch.
db.exec("DELETE FROM audit_key_blocks WHERE kind != 't'");
for (const m of [KEY_INDEX_FROM, FACET_INDEX_FROM]) db.prepare('DELETE FROM audit_meta WHERE key = ?').run(m);
c0 = process.cpuUsage();
while (backfillKeyIndex(db, 1000)) { /* next slice */ }
const indexUsPerEvent = cpuSince(c0) / total;
const indexRows = Number(db.prepare("SELECT count(*) AS n FROM audit_key_blocks WHERE kind != 't'").get()?.n);
db.close();
// The chain and checkpoints are untouched by the index: the trail still verifies.
t0 = performance.now();
const verified = verifyDatabase(dir);
const verifySeconds = (performance.now() - t0) / 1000;
if (!verified.ok) throw new Error(`the trail does not verify after the index rebuild: ${JSON.stringify(verified.firstError)}`);

function cpuSince(c: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(c);
  return d.user + d.system;
}

const rows = queries.map(([name], i) => `| ${name} | ${withIndex[i].ms.toFixed(1)} ms | ${withIndex[i].cpuMs.toFixed(1)} ms |${scanning ? ` ${scan[i].ms.toFixed(1)} ms |` : ''} ${withIndex[i].n} |`);
const md = `Measured ${new Date().toISOString()} with \`node_modules/.bin/node bench/audit-query.ts --events ${total}${scanning ? ' --scan' : ''}\` on Node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? '?'}); load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} when it ended (the machine was shared).
A ${total.toLocaleString('en-US')}-event trail (2 events per request, 50 agents, one rare agent every 10,000 events, 1,000-event batches) written through openAuditLog${Number.isNaN(built.seconds) ? ' (an earlier run, reused with --dir)' : ` in ${built.seconds.toFixed(1)} s (${built.cpuUsPerEvent.toFixed(2)} us CPU per event, all threads, index included)`}.
Times are medians of 5 runs of queryEvents (limit 100) on one connection: wall time, and the CPU time of the process (steadier when other processes share the cores)${scanning ? '; "index off" is one run with the key index switched off (the block scan every query did before it)' : ''}.

| query | key index (wall) | CPU | ${scanning ? 'index off (scan) | ' : ''}events |
|---|---|---|${scanning ? '---|' : ''}---|
${rows.join('\n')}

Migration of a trail indexed by the previous build (decisions, types and planes added to every block, 20 blocks per transaction as the writer thread does): ${facetMigration.seconds.toFixed(1)} s, ${facetMigration.cpuUsPerEvent.toFixed(2)} us CPU per event. Rebuilding the whole index but trace ids (${indexRows.toLocaleString('en-US')} rows of audit_key_blocks, the inserts the writer makes per batch): ${indexUsPerEvent.toFixed(2)} us CPU per event, an upper bound on the writer's cost (the rebuild also reads each block's lines back from its segment file for its decisions' planes, which the writer has in memory; trace ids, indexed from the batch's lines as they are committed, are in the build's CPU per event above); the request path (record()) is unchanged. \`verifyDatabase\` after the rebuilds: OK, ${verified.events.toLocaleString('en-US')} events, ${verified.checkpoints} checkpoints, in ${verifySeconds.toFixed(1)} s.`;
console.log(md);
replaceSection(join(here, 'AUDIT-RESULTS.md'), 'audit-query', md, '# Audit benchmark results\n');
