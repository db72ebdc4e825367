// Streaming time-to-first-chunk probe (wrk cannot see inside a response): sequential requests
// (concurrency 1) over one keep-alive connection, each timed from dispatch to its first body chunk,
// to its first chunk with real content, and to the end of the stream.
// Run as a child process (pinned by the caller); prints one JSON line.
//   PROBE_SPEC='{"origin":..,"path":..,"headers":{..},"bodyFile":..,"warmupN":200,"durationS":10,"maxN":50000}'
import { readFileSync } from 'node:fs';
import { Client } from 'undici';
import { sendOnce } from './http-once.ts';
import type { RequestSpec, Timing } from './http-once.ts';
import { summarize } from './stats.ts';
import type { Summary } from './stats.ts';

export interface ProbeSpec {
  origin: string;
  path: string;
  headers: Record<string, string>;
  bodyFile: string;
  warmupN: number;
  durationS: number;
  maxN: number;
}

export interface ProbeResult {
  requests: number;
  errors: number;
  /** message of the first failed request, to say why */
  firstError?: string;
  non2xx: number;
  /** requests whose stream had no content delta (a broken stream, or a different wire format) */
  noContent: number;
  headers_ms: Summary;
  first_chunk_ms: Summary;
  first_content_ms: Summary;
  total_ms: Summary;
}

export async function runProbe(spec: ProbeSpec): Promise<ProbeResult> {
  const client = new Client(spec.origin, { pipelining: 1, keepAliveTimeout: 60_000 });
  const req: RequestSpec = { path: spec.path, headers: { 'content-type': 'application/json', ...spec.headers }, body: readFileSync(spec.bodyFile) };
  for (let i = 0; i < spec.warmupN; i++) await sendOnce(client, req, true).catch(() => undefined);
  const samples: Timing[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let non2xx = 0;
  const deadline = performance.now() + spec.durationS * 1000;
  while (performance.now() < deadline && samples.length < spec.maxN) {
    try {
      const t = await sendOnce(client, req, true);
      if (t.status === 200) samples.push(t); else non2xx++;
    } catch (err) {
      errors++;
      firstError ??= err instanceof Error ? err.message : String(err);
    }
  }
  await client.close();
  const pick = (f: (t: Timing) => number): Summary => summarize(samples.map(f).filter((v) => Number.isFinite(v)));
  return {
    requests: samples.length, errors, firstError, non2xx,
    noContent: samples.filter((t) => Number.isNaN(t.firstContentMs)).length,
    headers_ms: pick((t) => t.headersMs),
    first_chunk_ms: pick((t) => t.firstChunkMs),
    first_content_ms: pick((t) => t.firstContentMs),
    total_ms: pick((t) => t.totalMs),
  };
}

if (import.meta.main) {
  const spec = JSON.parse(process.env.PROBE_SPEC ?? '') as ProbeSpec;
  runProbe(spec).then((r) => { process.stdout.write(JSON.stringify(r) + '\n'); },
    (err: unknown) => { console.error(err); process.exit(1); });
}
