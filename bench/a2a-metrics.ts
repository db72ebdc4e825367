// Microbenchmark of the A2A metric updates one call makes (Metrics.a2aCall, and a2aFirstEvent
// for a stream), as HopCall.finish and StreamRelay run them; refusals (a2aRefused) apart.
// A call's skill is a string parsed from its body, so each call here gets a fresh copy (its
// hash not yet computed), as on the hot path.
//   node_modules/.bin/node bench/a2a-metrics.ts [--calls 1000000] [--runs 5] [--same]
import { Metrics } from '../src/observability/metrics.ts';

const arg = (name: string, d: number) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) || d : d; };
const calls = arg('--calls', 1_000_000);
const runs = arg('--runs', 5);

// 8 callers, 4 callees, 3 skills each, mostly ok.
const agents = Array.from({ length: 8 }, (_, i) => `agent-${i}`);
const callees = ['scorer', 'planner', 'helper', 'archivist'];
const skillParts = [['sco', 're'], ['ex', 'port'], ['he', 'lp']];
// --same: the same three string objects every call (hashes cached), to tell the lookup from the string.
const same = skillParts.map((p) => p.join(''));
const BLOCK = 1024;
/** A block's skills: fresh copies made untimed just before the block (in cache, as a just-parsed body's strings are). */
const block = (skills: string[]) => { for (let i = 0; i < BLOCK; i++) skills[i] = process.argv.includes('--same') ? same[i % 3] : skillParts[i % 3].join(''); };

function run(m: Metrics, n: number): { call: number; stream: number; refused: number } {
  const skills: string[] = new Array(BLOCK);
  let ms = 0;
  for (let b = 0; b < n; b += BLOCK) {
    block(skills);
    const t = performance.now();
    for (let j = 0; j < BLOCK; j++) { const i = b + j; m.a2aCall(agents[i & 7], callees[i & 3], skills[j], i % 50 ? 'ok' : 'error', 1.5 + (i & 15), i % 50 ? 200 : 502); }
    ms += performance.now() - t;
  }
  const call = (ms * 1e6) / n;
  let t0 = performance.now();
  for (let i = 0; i < n; i++) m.a2aFirstEvent(callees[i & 3], 0.8 + (i & 7));
  const stream = ((performance.now() - t0) * 1e6) / n;
  t0 = performance.now();
  for (let i = 0; i < n; i++) m.a2aRefused(agents[i & 7], callees[i & 3], i & 1 ? 'policy_denied' : 'rate_limited');
  const refused = ((performance.now() - t0) * 1e6) / n;
  return { call, stream, refused };
}

const m = new Metrics();
run(m, calls / 10); // warm-up (JIT)
const out: Array<{ call: number; stream: number; refused: number }> = [];
for (let r = 0; r < runs; r++) out.push(run(m, calls));
const med = (k: 'call' | 'stream' | 'refused') => { const v = out.map((o) => o[k]).sort((a, b) => a - b); return `${v[v.length >> 1].toFixed(0)} ns (${v[0].toFixed(0)}-${v[v.length - 1].toFixed(0)})`; };
console.log(`${calls} calls x ${runs} runs, median (min-max) per call: a2aCall ${med('call')}, a2aFirstEvent ${med('stream')}, a2aRefused ${med('refused')}`);
