// /healthz latency of a real aam gateway (its own process) while one client (another process)
// posts hostile chat bodies back to back to a policy with a guardrail running every detector.
// The prober sends one /healthz at a time, every 2 ms, over a kept-alive connection. Placement as
// in `npm run bench`: the gateway alone on CPU 1, everything else on CPU 0, all at nice -10 (also
// for the session's autogroup) when run as root, so other work on a shared machine disturbs less.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { adversarialInputs } from '../../test/helpers/hostile-text.ts';
import { AAM_AGENT, aamServeArgv, createAamKey } from './aam.ts';
import { pinnedArgv, setAutogroupNice, startProcess, stopProcess, waitHttp, type PinOptions } from './procs.ts';
import { freePort } from '../../test/helpers/e2e.ts';
import { percentile } from './stats.ts';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NODE = process.execPath;
const HOSTILE_SECONDS = Number(process.env.BENCH_HOSTILE_SECONDS ?? 10);
const NICE = process.getuid?.() === 0 ? -10 : 0;
const GATEWAY_PIN: PinOptions = { cpu: 1, nice: NICE };
const CLIENT_PIN: PinOptions = { cpu: 0, nice: NICE };

export interface HealthzScenario {
  label: string;
  bodyBytes: number;
  samples: number;
  p50: number;
  p99: number;
  max: number;
  hostileRequests: number;
  statuses: string;
  hostileMedianMs: number;
}

export interface HealthzResult { idleP50: number; idleP99: number; scenarios: HealthzScenario[] }

/** Mock provider and route, the bench agent, and a policy attaching one guardrail with every detector. */
function config(mockPort: number): string {
  const doc = (kind: string, name: string, spec: string) => `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec: ${spec}\n`;
  return [
    doc('Provider', 'mock', `{ type: openai-compatible, baseUrl: "http://127.0.0.1:${mockPort}/v1" }`),
    doc('Model', 'gpt-4o-mini', '{ targets: [ { provider: mock, model: gpt-4o-mini } ] }'),
    doc('Agent', AAM_AGENT, '{ workload: spiffe://bench/agent/bench, team: bench, environment: dev }'),
    doc('AgentPolicy', 'bench-policy', '{ identity: { workload: spiffe://bench/agent/bench }, models: { allow: [gpt-4o-mini] }, guardrails: [pii] }'),
    doc('Guardrail', 'pii', '{ on: [input, output], detect: [email, phone, credit_card, ssn, iban, ip_address, secrets], action: block }'),
  ].join('---\n');
}

/** Every adversarial shape, one after the other, `size` characters in all. */
function hostileText(size: number): string {
  const shapes = adversarialInputs(Math.ceil(size / 50));
  return shapes.map(([, t]) => t).join(' ').repeat(2).slice(0, size);
}

/** A chat body with the text as one message, or cut into `parts` messages (many small leaves). */
function chatBody(content: string, parts = 1): Buffer {
  const size = Math.ceil(content.length / parts);
  const messages = Array.from({ length: parts }, (_, i) => ({ role: 'user', content: content.slice(i * size, (i + 1) * size) }));
  return Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages }));
}

/** Poll /healthz until `stop` resolves; latencies in ms. */
async function probe(pool: Pool, stop: Promise<unknown>): Promise<number[]> {
  let done = false;
  void stop.finally(() => { done = true; });
  const out: number[] = [];
  while (!done) {
    const t = performance.now();
    const res = await pool.request({ path: '/healthz', method: 'GET' });
    await res.body.arrayBuffer();
    out.push(performance.now() - t);
    await sleep(2);
  }
  return out.sort((a, b) => a - b);
}

function runClient(url: string, key: string, bodyFile: string): Promise<{ requests: number; statuses: Record<string, number>; medianMs: number }> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = pinnedArgv(CLIENT_PIN, [NODE, join(REPO, 'bench/lib/hostile-client.ts'), url, key, bodyFile, String(HOSTILE_SECONDS)]);
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d; });
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`hostile client exited ${code}`))));
  });
}

export async function healthzUnderHostileLoad(): Promise<HealthzResult> {
  const dir = mkdtempSync(join(tmpdir(), 'aam-bench-detectors-'));
  const prevAutogroup = NICE !== 0 ? setAutogroupNice(NICE) : null;
  const mockPort = await freePort(), aamPort = await freePort();
  const mock = startProcess(CLIENT_PIN, [NODE, join(REPO, 'bench/mock-upstream.js')], { MOCK_PORT: String(mockPort) }, join(dir, 'mock.log'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, config(mockPort));
  const data = join(dir, 'data');
  const key = createAamKey(NODE, REPO, configPath, data);
  const aam = startProcess(GATEWAY_PIN, aamServeArgv(NODE, REPO, configPath, aamPort, data), { AAM_LOG_LEVEL: 'error' }, join(dir, 'aam.log'), REPO);
  const url = `http://127.0.0.1:${aamPort}`;
  try {
    if (!(await waitHttp(`${url}/healthz`, 60_000, 200, aam)) || !(await waitHttp(`http://127.0.0.1:${mockPort}/v1/models`, 10_000, 200, mock))) {
      throw new Error(`gateway or mock did not start; see ${dir}`);
    }
    const pool = new Pool(url, { connections: 1 });
    const idle = await probe(pool, sleep(3000));
    const scenarios: HealthzScenario[] = [];
    const cases = [
      ['10 MB body (over the 1 MiB scan budget)', 10_000_000, 1], ['1 MB body (just under the budget, scanned)', 1_000_000, 1],
      ['1 MB body in 2,000 messages (scanned)', 1_000_000, 2000], ['100 KB body (scanned)', 100_000, 1],
    ] as const;
    for (const [label, chars, parts] of cases) {
      const bodyFile = join(dir, 'body.json');
      const body = chatBody(hostileText(chars), parts);
      writeFileSync(bodyFile, body);
      const client = runClient(url, key, bodyFile);
      const lat = await probe(pool, client);
      const c = await client;
      scenarios.push({
        label, bodyBytes: body.length, samples: lat.length, p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1] ?? NaN,
        hostileRequests: c.requests, statuses: Object.entries(c.statuses).map(([s, n]) => `${n} x ${s}`).join(', '), hostileMedianMs: c.medianMs,
      });
      process.stderr.write(`healthz during ${label}: p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${percentile(lat, 99).toFixed(2)} ms\n`);
    }
    await pool.close();
    return { idleP50: percentile(idle, 50), idleP99: percentile(idle, 99), scenarios };
  } finally {
    await stopProcess(aam);
    await stopProcess(mock);
    rmSync(dir, { recursive: true, force: true });
    if (prevAutogroup !== null) setAutogroupNice(prevAutogroup);
  }
}
