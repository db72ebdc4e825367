// What the A2A stream relay (a2a/gateway.ts StreamRelay.emit/framed) does per streamed event, in
// process: JSON.parse, task states and ids (bind), the cross-part scrub (scrubAcross), the artifact
// text joined across chunks (chunks.ts ArtifactText) and the raw check (raw.ts: may the event go
// out as the callee wrote it), on two event sets: the echo agent's stream (bench/a2a-echo-agent.ts:
// task, one artifact, completed) and a longer one (task submitted, status updates with a message,
// an artifact in six chunks, completed, the final task with its artifact and history). No
// guardrail, the embedded store (nothing waits), five active credentials, none in the text.
//   node bench/a2a-stream-events.ts [--rounds 5] [--streams 20000] [--steps] TREE [TREE...]
// Each TREE (a worktree of aam) runs in a child process of its own, rounds interleaved; per round:
// us CPU per stream and per event (process.cpuUsage, user + system, the median of batches of
// 1,000 streams), a digest of what one stream wrote (the trees must agree), and bytes allocated per
// stream (used heap before and after a batch of 100 streams, the median of five batches with no GC
// inside (v8.GCProfiler): a batch with one is measured again). A tree with src/a2a/event-walk.ts runs its
// relay's sequence (one walk per event); without, the sequence before it (main at 4981c18).
// --steps: the old sequence cut after each step (parse; + states/ids; + scrubAcross; + ArtifactText;
// + raw check), so each step's share shows as the difference. A tree whose chunks.ts has mayAppend
// reads each stream as a whole answer read at once (StreamRelay.start): no ArtifactText when no
// event spells `append` (the echo set).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GCProfiler, getHeapStatistics } from 'node:v8';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '5' }, streams: { type: 'string', default: '20000' }, steps: { type: 'boolean', default: false }, child: { type: 'string' }, step: { type: 'string' } },
});

const SECRETS = [
  { name: 'openai', value: 'sk-proj-' + 'Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z'.repeat(2) },
  { name: 'anthropic', value: 'sk-ant-api03-' + 'Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp'.repeat(3) },
  { name: 'gemini', value: 'AIzaSyD-' + 'k3Jf8Ls0Qm2Nv7Bx5Cz1Hp9Wr4Ty6Ug' },
  { name: 'a2a-callee', value: 'a2a-bench-token-7c1e9f03b2d84a65' },
  { name: 'oauth-token', value: 'eyJhbGciOiJSUzI1NiJ9.' + 'eyJzdWIiOiJzcGlmZmU6Ly9wcm9kL2FnZW50L2EifQ'.repeat(3) + '.sig' },
];

const rpc = (result: unknown) => JSON.stringify({ jsonrpc: '2.0', id: 1, result });
const ECHO = [
  rpc({ task: { id: 't1', contextId: 'c1', status: { state: 'TASK_STATE_WORKING' } } }),
  rpc({ artifactUpdate: { taskId: 't1', contextId: 'c1', artifact: { artifactId: 'a1', parts: [{ text: 'score account 42 for risk' }] } } }),
  rpc({ statusUpdate: { taskId: 't1', contextId: 'c1', status: { state: 'TASK_STATE_COMPLETED' } } }),
];
const words = 'The quarterly revenue for the finance team grew by 12 percent, driven by new accounts in EMEA and strong renewals. '.split(' ');
const chunk = (i: number) => words.slice((i * 3) % 12, ((i * 3) % 12) + 6).join(' ') + ' ';
const user = { messageId: 'm1', role: 'ROLE_USER', parts: [{ text: 'score account 42 for risk' }] };
const status = (state: string, text?: string) => ({ state, ...(text ? { message: { messageId: `s-${state}`, role: 'ROLE_AGENT', parts: [{ text }] } } : {}), timestamp: '2026-12-07T22:00:00.000Z' });
const LONG = [
  rpc({ task: { id: 't1', contextId: 'c1', status: status('TASK_STATE_SUBMITTED'), history: [user] } }),
  rpc({ statusUpdate: { taskId: 't1', contextId: 'c1', status: status('TASK_STATE_WORKING', 'reading the account') } }),
  rpc({ statusUpdate: { taskId: 't1', contextId: 'c1', status: status('TASK_STATE_WORKING', 'scoring') } }),
  ...Array.from({ length: 6 }, (_, i) => rpc({ artifactUpdate: { taskId: 't1', contextId: 'c1', artifact: { artifactId: 'a1', name: 'risk', parts: [{ text: chunk(i) }] }, ...(i > 0 ? { append: true } : {}), ...(i === 5 ? { lastChunk: true } : {}) } })),
  rpc({ statusUpdate: { taskId: 't1', contextId: 'c1', status: status('TASK_STATE_COMPLETED') } }),
  rpc({ task: { id: 't1', contextId: 'c1', status: status('TASK_STATE_COMPLETED'), artifacts: [{ artifactId: 'a1', name: 'risk', parts: [{ text: Array.from({ length: 6 }, (_, i) => chunk(i)).join('') }] }], history: [user] } }),
];
const SETS: Record<string, string[]> = { echo: ECHO, long: LONG };

type Obj = Record<string, unknown>;
/** One stream relayed: what it wrote, in characters (and `out`: what it wrote, to check that the trees agree). */
type Stream = ((events: string[]) => number) & { out(events: string[]): string };

/** The relay's per-event sequence, as the tree's gateway.ts runs it (StreamRelay.emit + framed, JSON-RPC binding). */
async function relayOf(tree: string, step: number): Promise<Stream> {
  const m = (p: string) => import(join(tree, 'src', p));
  const { Scrubber } = await m('credentials/scrub.ts');
  const { scrubAcross } = await m('access/egress.ts');
  const chunks = await m('a2a/chunks.ts');
  const { ArtifactText, mayJoin } = chunks;
  // A tree with chunks.ts mayAppend: the stream is the callee's whole answer read at once (the echo
  // agent's), which may append to an artifact only if its text spells `append` (else no ArtifactText).
  const mayAppend: (text: string) => boolean = chunks.mayAppend ?? (() => true);
  const { idsIn, SeenIds, statesIn } = await m('a2a/tasks.ts');
  const raw = await m('a2a/raw.ts');
  const sc = new Scrubber(SECRETS);
  const egress = { scrubber: () => sc, leaked: () => {} };
  const states = { n: 0, taskState() { this.n++; } };
  const walked = existsSync(join(tree, 'src/a2a/event-walk.ts')) && step === 5;
  const EventWalk = walked ? (await m('a2a/event-walk.ts')).EventWalk : null;
  const relay = (events: string[]): string => {
    let out = '';
    const seen = new SeenIds();
    let joined: { pass(r: unknown, e: (r: Obj) => void): unknown; end(e: (r: Obj) => void): void } | null = null;
    const held = (r: Obj) => { out += JSON.stringify({ jsonrpc: '2.0', id: 1, result: r }); };
    const walk = EventWalk ? new EventWalk() : null;
    const appends = mayAppend(events.join('\n'));
    for (const data of events) {
      const ev = JSON.parse(data) as Obj;
      if (step < 2) { out += data; continue; }
      statesIn(ev.result, states);
      idsIn(ev.result, seen);
      let result = ev.result;
      if (walk !== null) {
        walk.read(egress, ev, data);
        result = walk.scrubbed(egress, ev, result);
      } else if (step >= 3) result = scrubAcross(egress, result);
      if (step >= 4 && (joined !== null || (appends && mayJoin(result)))) result = (joined ??= new ArtifactText(egress)).pass(result, held);
      if (result !== ev.result) out += JSON.stringify({ ...ev, result });
      else if (step < 5) out += data;
      else if (walk !== null ? walk.passesRaw(egress, data) : raw.passesRaw(egress, data, ev)) out += data;
      else out += JSON.stringify(ev);
    }
    joined?.end(held);
    return out;
  };
  return Object.assign((events: string[]) => relay(events).length, { out: relay });
}

async function child(tree: string, set: string, step: number, streams: number): Promise<void> {
  const run = await relayOf(tree, step);
  const events = SETS[set];
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += run(events); // warm (optimised)
  // CPU: batches of 1,000 streams, the median batch (a batch the load preempted or a GC landed in
  // counts as one batch). Allocation: batches with no GC inside.
  const cpu: number[] = [];
  for (let b = 0; b < streams / 1000; b++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < 1000; i++) sink += run(events);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  cpu.sort((a, b) => a - b);
  const bytes: number[] = [];
  for (let tries = 0; bytes.length < 5 && tries < 200; tries++) {
    const gc = new GCProfiler();
    gc.start();
    const h0 = getHeapStatistics().used_heap_size;
    for (let i = 0; i < 100; i++) sink += run(events);
    const d = getHeapStatistics().used_heap_size - h0;
    if (gc.stop()!.statistics.length === 0) bytes.push(d / 100);
  }
  bytes.sort((a, b) => a - b);
  const us = cpu[Math.floor(cpu.length / 2)];
  const digest = createHash('sha256').update(String(run.out(events))).digest('hex').slice(0, 12);
  console.log(JSON.stringify({ us, perEvent: us / events.length, bytes: bytes[Math.floor(bytes.length / 2)], out: digest, sink: sink % 7 }));
}

if (opt.child !== undefined) {
  const [tree, set] = opt.child.split('::');
  await child(tree, set, Number(opt.step ?? 5), Number(opt.streams));
} else {
  const trees = (positionals.length ? positionals : [fileURLToPath(new URL('..', import.meta.url))]).map((t) => resolve(t));
  const steps = opt.steps ? [1, 2, 3, 4, 5] : [5];
  const label = ['', 'parse', '+states/ids', '+scrubAcross', '+ArtifactText', 'all (+raw check)'];
  for (const set of Object.keys(SETS)) {
    console.log(`\n${set}: ${SETS[set].length} events, ${SETS[set].reduce((n, e) => n + e.length, 0)} characters of data per stream`);
    const rows = new Map<string, Array<{ us: number; perEvent: number; bytes: number; out: string }>>();
    for (let r = 0; r < Number(opt.rounds); r++) {
      for (const tree of trees) for (const step of steps) {
        const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', `${tree}::${set}`, '--step', String(step), '--streams', opt.streams as string], { encoding: 'utf8' });
        if (p.status !== 0) throw new Error(p.stderr);
        const key = `${tree} ${label[step]}`;
        rows.set(key, [...(rows.get(key) ?? []), JSON.parse(p.stdout)]);
      }
    }
    const med = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const [key, xs] of rows) {
      console.log(`${key.padEnd(60)} ${med(xs.map((x) => x.us)).toFixed(2).padStart(6)} us/stream (${xs.map((x) => x.us.toFixed(2)).join(' ')})  ${med(xs.map((x) => x.perEvent)).toFixed(3)} us/event  ${med(xs.map((x) => x.bytes)).toFixed(0)} B/stream  out ${[...new Set(xs.map((x) => x.out))].join(',')}`);
    }
  }
}
