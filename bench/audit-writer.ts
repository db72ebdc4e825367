// The audit writer thread's cost per event, alone (no HTTP, no worker thread): chat-like
// model_call events (one per request: a sequential request id, its own trace id, --agents agents: 1 as in cpu-per-request) are
// appended to a segment file as the gateway does, then createBatchWriter().write() commits them in
// batches of --batch (c=64 at ~3000 requests/s with the 250 ms flush delay, log.ts FLUSH_DELAY_MS: ~750). Reported: CPU
// microseconds per event of write() (this thread's, with the signed checkpoints copied to a file as the writer thread does) (median of --rounds, each round a fresh trail of --events),
// and SQLite's statements and index rows per event. Trees are interleaved per round, so the
// load of a shared machine falls on each alike.
//   node bench/audit-writer.ts [--events 30000] [--batch 750] [--rounds 7] [--agents 1] [--rps 3000] [TREE...]
// TREE: a worktree of aam (default: this one).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values: opt, positionals } = parseArgs({ allowPositionals: true, options: { events: { type: 'string', default: '30000' }, batch: { type: 'string', default: '750' }, rounds: { type: 'string', default: '7' }, agents: { type: 'string', default: '1' }, rps: { type: 'string', default: '3000' } } });
const AGENTS = Number(opt.agents);
const RPS = Number(opt.rps);
const EVENTS = Number(opt.events);
const BATCH = Number(opt.batch);
const ROUNDS = Number(opt.rounds);
const trees = (positionals.length ? positionals : [join(HERE, '..')]).map((t) => resolve(t));

type Mod = Record<string, any>;
async function load(tree: string): Promise<{ writer: Mod; store: Mod; segment: Mod; event: Mod; keys: Mod }> {
  const at = (f: string): Promise<Mod> => import(pathToFileURL(join(tree, 'src/audit', f)).href);
  return { writer: await at('writer.ts'), store: await at('store.ts'), segment: await at('segment.ts'), event: await at('event.ts'), keys: await at('keys.ts') };
}

// Ids as aam makes them (request id: req_<process><counter>; trace id: time in ms + random), for
// events --rps apart (3000: what one gateway core serves at c=64).
const T0 = Date.now();
function event(i: number): Record<string, unknown> {
  const agent = `agent-${i % AGENTS}`;
  return {
    type: 'model_call', request_id: `req_9f3ac2e1${i.toString(36).padStart(8, '0')}`, trace_id: Math.floor(T0 + (i * 1000) / RPS).toString(16).padStart(12, '0') + randomBytes(10).toString('hex'),
    identity: { spiffe_id: `spiffe://prod/agent/${agent}`, agent, owner: 'jane@example.com', team: 'finance', environment: 'prod', key_id: 'key_0123', method: 'virtual_key' },
    policy: { name: 'finance-readonly', version: 'sha256:4f2c', rule: 0, decision: 'allow', reason: 'model "gpt-4o-mini" is in models.allow' },
    credential: { name: 'openai-key' },
    model: { route: 'gpt-4o-mini', provider: 'openai', model: 'gpt-4o-mini', input_tokens: 812, output_tokens: 210, cached_tokens: 0, cost_usd: 0.00413, latency_ms: 31, stream: false },
    outcome: { status: 200 },
  };
}

interface Round { usPerEvent: number; statements: number; rows: number }

async function round(m: Awaited<ReturnType<typeof load>>): Promise<Round> {
  const dir = mkdtempSync(join(tmpdir(), 'aam-bench-writer-'));
  try {
    const db = m.store.openAuditDb(dir);
    const key = m.keys.loadOrCreateSigningKey(join(dir, 'keys', 'k.key'));
    // Signed checkpoints copied to a file, as the gateway's writer thread does (log.ts: checkpointFilePath).
    const w = m.writer.createBatchWriter(db, dir, key, 1000, { path: join(dir, 'audit-checkpoints.jsonl'), onError: (e: string) => { throw new Error(e); } });
    const seg = m.segment.createSegment(dir);
    const iso = m.event.isoClock();
    // The segment lines and each batch's wire form, as log.ts builds them (not timed).
    const batches: { batch: Record<string, unknown>; cols: (string | null)[][] }[] = [];
    for (let i = 0; i < EVENTS; i += BATCH) {
      const n = Math.min(BATCH, EVENTS - i);
      const enc = Array.from({ length: n }, (_, k) => m.event.encodeEvent(event(i + k), Date.now(), iso));
      const start = seg.size();
      const ends: number[] = seg.appendMany(enc.map((e: { json: string }) => e.json));
      const keys: (string | null)[] = [];
      for (const e of enc) keys.push(...e.cols);
      batches.push({ batch: { segment: seg.gen, start, end: ends[ends.length - 1], count: n, keys: JSON.stringify(keys), minTime: enc[0].cols[0], maxTime: enc[n - 1].cols[0], close: [] }, cols: enc.map((e: { cols: (string | null)[] }) => e.cols) });
    }
    // A tree whose log.ts collects each batch's index keys as it sends it (store.ts blockIndexer) does
    // that in the timed part too: it is work on the same core, moved from the writer thread.
    const send = (b: (typeof batches)[number]): void => {
      if (m.store.blockIndexer) {
        const ix = m.store.blockIndexer();
        for (const c of b.cols) ix.add(c[1], c[2], c[3], c[4]);
        b.batch.index = ix.done();
      }
      w.write(b.batch, []);
    };
    const warm = Math.min(batches.length - 1, Math.ceil(batches.length / 10));
    for (let b = 0; b < warm; b++) send(batches[b]);
    const rowsBefore = Number(db.prepare('SELECT count(*) AS n FROM audit_key_blocks').get().n);
    const timedEvents = batches.slice(warm).reduce((s, b) => s + Number(b.batch.count), 0);
    // This thread's CPU only: the load of other threads (and processes) is not charged to write().
    const c0 = process.threadCpuUsage();
    for (let b = warm; b < batches.length; b++) send(batches[b]);
    const c = process.threadCpuUsage(c0);
    const rows = Number(db.prepare('SELECT count(*) AS n FROM audit_key_blocks').get().n) - rowsBefore;
    seg.close();
    db.close();
    return { usPerEvent: (c.user + c.system) / timedEvents, statements: NaN, rows: rows / timedEvents };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

const mods = await Promise.all(trees.map(load));
const results = trees.map(() => [] as Round[]);
process.stdout.write(`audit writer: ${EVENTS} events, batches of ${BATCH}, ${ROUNDS} rounds interleaved; load ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
for (let r = 0; r < ROUNDS; r++) {
  const order = trees.map((_, i) => i);
  if (r % 2) order.reverse();
  for (const i of order) {
    const x = await round(mods[i]);
    results[i].push(x);
    process.stdout.write(`  round ${r + 1} ${trees[i]}: ${x.usPerEvent.toFixed(2)} us/event, ${x.rows.toFixed(2)} index rows/event\n`);
  }
}
for (const [i, t] of trees.entries()) {
  process.stdout.write(`${t}: median ${median(results[i].map((x) => x.usPerEvent)).toFixed(2)} us/event (${results[i].map((x) => x.usPerEvent.toFixed(2)).join(' ')}), ${median(results[i].map((x) => x.rows)).toFixed(2)} index rows/event\n`);
}
process.stdout.write(`load after: ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
