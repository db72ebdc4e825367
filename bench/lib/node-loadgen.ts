// Fallback closed-loop load generator (used only when wrk is unavailable): `conc` keep-alive
// connections, each sending the next request as soon as the previous response has ended.
// Run as a child process (pinned by the caller); prints one JSON line in wrk's summary shape.
//   LOADGEN_SPEC='{"origin":..,"path":..,"headers":{..},"bodyFile":..,"conc":64,"durationS":10}'
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { sendOnce } from './http-once.ts';
import type { RequestSpec } from './http-once.ts';
import { summarize } from './stats.ts';

export interface LoadSpec {
  origin: string;
  path: string;
  headers: Record<string, string>;
  bodyFile: string;
  conc: number;
  durationS: number;
}

export interface LoadResult {
  tool: 'wrk' | 'node';
  requests: number;
  durationS: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  mean_ms: number;
  max_ms: number;
  errors: number;
  /** message of the first failed request, to say why */
  firstError?: string;
  non2xx: number;
}

export async function runNodeLoad(spec: LoadSpec): Promise<LoadResult> {
  const pool = new Pool(spec.origin, { connections: spec.conc, pipelining: 1, keepAliveTimeout: 60_000 });
  const req: RequestSpec = { path: spec.path, headers: { 'content-type': 'application/json', ...spec.headers }, body: readFileSync(spec.bodyFile) };
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let non2xx = 0;
  const start = performance.now();
  const deadline = start + spec.durationS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      try {
        const t = await sendOnce(pool, req, false);
        latencies.push(t.totalMs);
        if (t.status < 200 || t.status > 299) non2xx++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: spec.conc }, worker));
  const elapsedS = (performance.now() - start) / 1000;
  await pool.close();
  if (latencies.length === 0) throw new Error(`no request succeeded (${errors} errors): ${firstError ?? ''}`);
  const s = summarize(latencies);
  return {
    tool: 'node', requests: s.n, durationS: elapsedS, rps: s.n / elapsedS,
    p50_ms: s.p50, p90_ms: s.p90, p99_ms: s.p99, mean_ms: s.mean, max_ms: s.max, errors, firstError, non2xx,
  };
}

if (import.meta.main) {
  const spec = JSON.parse(process.env.LOADGEN_SPEC ?? '') as LoadSpec;
  runNodeLoad(spec).then((r) => { process.stdout.write(JSON.stringify(r) + '\n'); },
    (err: unknown) => { console.error(err); process.exit(1); });
}
