// Added latency (c=1) and throughput (c=64) of an A2A hop through aam, beside the bare pass-through
// proxy and the echo agent called directly, for SendMessage and SendStreamingMessage.
// Run: node_modules/.bin/node bench/a2a-hop.ts [requests=2000]
// The echo agent and the bare proxy are child processes; aam (virtual key, agents rule, guardrail
// step, credential injection, scrubbing door, audit trail) and the load generator share this one.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { doc, startTestGateway, yaml } from '../test/helpers/gateway.ts';

const N = Number(process.argv[2] ?? 2000);
const WARMUP = 300;
const NODE = process.execPath;
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

async function child(script: string, env: Record<string, string>): Promise<{ port: number; proc: ChildProcess }> {
  const proc = spawn(NODE, [script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.on('data', (b: Buffer) => { const m = /(?:listening|on) (\d+)/.exec(b.toString()); if (m) resolve(Number(m[1])); });
    proc.once('exit', (c) => reject(new Error(`${script} exited ${c}`)));
  });
  return { port, proc };
}

const body = (stream: boolean) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: stream ? 'SendStreamingMessage' : 'SendMessage', params: { message: { messageId: 'b1', role: 'ROLE_USER', parts: [{ text: 'score account 42 for risk' }], metadata: { skill: 'echo' } } } });

interface Target { name: string; origin: string; path: string; headers: Record<string, string> }

async function once(pool: Pool, t: Target, stream: boolean): Promise<void> {
  const r = await pool.request({ path: t.path, method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', ...(stream ? { accept: 'text/event-stream' } : {}), ...t.headers }, body: body(stream) });
  const text = await r.body.text();
  if (r.statusCode !== 200 || !text.includes('score account 42')) throw new Error(`${t.name}: HTTP ${r.statusCode} ${text.slice(0, 200)}`);
}

const pct = (s: number[], p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];

async function latency(t: Target, stream: boolean): Promise<number[]> {
  const pool = new Pool(t.origin, { connections: 1 });
  for (let i = 0; i < WARMUP; i++) await once(pool, t, stream);
  const out: number[] = [];
  for (let i = 0; i < N; i++) { const t0 = performance.now(); await once(pool, t, stream); out.push(performance.now() - t0); }
  await pool.close();
  return out.sort((a, b) => a - b);
}

async function throughput(t: Target, stream: boolean, c = 64): Promise<number> {
  const pool = new Pool(t.origin, { connections: c });
  let left = WARMUP;
  const run = async (): Promise<void> => { while (left-- > 0) await once(pool, t, stream); };
  await Promise.all(Array.from({ length: c }, run));
  left = N * 2;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, run));
  const rps = (N * 2) / ((performance.now() - t0) / 1000);
  await pool.close();
  return rps;
}

process.env.AAM_LOG_LEVEL ??= 'error';
process.env.A2A_BENCH_TOKEN = 'a2a-bench-token-7c1e9f03b2d84a65';
const agent = await child(here('./a2a-echo-agent.ts'), { PORT: '0' });
const bare = await child(here('./bare-proxy.ts'), { UPSTREAM_URL: `http://127.0.0.1:${agent.port}`, PORT: String(20000 + Math.floor(Math.random() * 20000)) });
const gw = await startTestGateway(yaml(
  doc('Credential', 'echo-token', { env: 'A2A_BENCH_TOKEN' }),
  doc('Agent', 'echo', { workload: 'spiffe://bench/agent/echo', a2a: { url: `http://127.0.0.1:${agent.port}/a2a`, credential: 'echo-token' } }),
  doc('Agent', 'caller', { workload: 'spiffe://bench/agent/caller', team: 'bench' }),
  doc('AgentPolicy', 'caller-calls-echo', { identity: { agent: 'caller' }, agents: [{ agent: 'echo', skills: ['echo'] }] }),
));
const targets: Target[] = [
  { name: 'direct', origin: `http://127.0.0.1:${agent.port}`, path: '/a2a', headers: {} },
  { name: 'bare proxy', origin: `http://127.0.0.1:${bare.port}`, path: '/a2a', headers: {} },
  { name: 'aam', origin: gw.url, path: '/a2a/echo', headers: { authorization: `Bearer ${gw.key('caller')}` } },
];

const fmt = (ms: number) => `${ms.toFixed(3)} ms`;
console.log(`A2A hop, ${N} sequential requests after ${WARMUP} warm-up (c=1); ${N * 2} requests at c=64; Node ${process.version}\n`);
console.log('| request | target | p50 c=1 | p99 c=1 | RPS c=64 |');
console.log('|---|---|---|---|---|');
const p50: Record<string, number> = {};
const rps: Record<string, number> = {};
for (const stream of [false, true]) {
  for (const t of targets) {
    const l = await latency(t, stream);
    const r = await throughput(t, stream);
    const k = `${stream}:${t.name}`;
    p50[k] = pct(l, 50);
    rps[k] = r;
    console.log(`| ${stream ? 'SendStreamingMessage' : 'SendMessage'} | ${t.name} | ${fmt(pct(l, 50))} | ${fmt(pct(l, 99))} | ${r.toFixed(0)} |`);
  }
}
console.log('\n| request | aam added p50 over bare proxy (c=1) | aam RPS / bare proxy RPS (c=64) |');
console.log('|---|---|---|');
for (const stream of [false, true]) {
  console.log(`| ${stream ? 'SendStreamingMessage' : 'SendMessage'} | ${fmt(p50[`${stream}:aam`] - p50[`${stream}:bare proxy`])} | ${(100 * rps[`${stream}:aam`] / rps[`${stream}:bare proxy`]).toFixed(0)} % |`);
}

await gw.close();
agent.proc.kill();
bare.proc.kill();
delete process.env.A2A_BENCH_TOKEN;
