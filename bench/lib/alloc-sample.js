// Where a request's allocations come from, dead objects included (node's --heap-prof keeps only the
// live ones, so it shows module loading, not a request's garbage). Preloaded into a gateway under
// load, e.g. `node bench/cpu-per-request.ts --n 20000 --rounds 1 --conc 64 --pin 1 --kind a2a-stream
// "TREE::--import=$PWD/bench/lib/alloc-sample.js"` with ALLOC_SAMPLE_DIR set (default: the tmp dir):
// sampling starts after the first ALLOC_SAMPLE_SKIP requests (2000: warm), stops at SIGTERM, and the
// profile (with `requests`, the count sampled over) goes to <dir>/<pid>.heapprofile. Read it with
// `node bench/lib/alloc-sample.js <file> [top]`: bytes per request by the nearest aam function (node
// internals charged to the aam frame below them), then by function with its callers.
import { Session } from 'node:inspector';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dc from 'node:diagnostics_channel';

if (process.argv[1] && process.argv[1].endsWith('alloc-sample.js')) report(process.argv[2], Number(process.argv[3] ?? 40));
else sample();

function sample() {
  const dir = process.env.ALLOC_SAMPLE_DIR ?? tmpdir();
  const skip = Number(process.env.ALLOC_SAMPLE_SKIP ?? 2000);
  const s = new Session();
  s.connect();
  s.post('HeapProfiler.enable');
  let n = 0;
  let on = false;
  dc.subscribe('http.server.request.start', () => {
    if (++n !== skip || on) return;
    on = true;
    n = 0;
    s.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  });
  process.prependListener('SIGTERM', () => {
    if (!on) return;
    on = false;
    s.post('HeapProfiler.stopSampling', (err, r) => { if (!err) writeFileSync(join(dir, `${process.pid}.heapprofile`), JSON.stringify({ ...r.profile, requests: n })); });
  });
}

function report(file, top) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const per = p.requests;
  const where = (cf) => `${cf.functionName || '(anon)'} ${cf.url.replace(/.*cpu-dist-[^/]+\//, '').replace('file://', '')}:${cf.lineNumber + 1}`;
  const byAam = new Map();
  const byFn = new Map();
  const walk = (node, aam, caller) => {
    const url = node.callFrame.url;
    const own = url !== '' && !url.startsWith('node:') && url.includes('.js') ? where(node.callFrame) : aam;
    const k = `${where(node.callFrame)} <- ${caller}`;
    if (node.selfSize) { byAam.set(own, (byAam.get(own) ?? 0) + node.selfSize); byFn.set(k, (byFn.get(k) ?? 0) + node.selfSize); }
    for (const c of node.children) walk(c, own, where(node.callFrame));
  };
  walk(p.head, '(no aam frame)', '');
  let total = 0;
  for (const v of byAam.values()) total += v;
  const list = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => `${String(Math.round(v / per)).padStart(7)} ${k}`).join('\n');
  console.log(`${Math.round(total / per)} B per request over ${per} requests\n-- by nearest aam function\n${list(byAam)}\n-- by function <- caller\n${list(byFn)}`);
}
