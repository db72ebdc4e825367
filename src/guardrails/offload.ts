// Large leaves are scanned on a worker thread, so a request with megabytes of text does not hold
// the event loop that answers everyone else. The thread runs the very same scan (scanQueued) on
// the same guardrails and the same tally, so its verdicts and redactions are the walker's own;
// the tally is small (one summary per guardrail and category) and travels whole.
// Started on first use (an idle gateway pays nothing), stopped after a quiet spell (its ~14 MB go
// back), unreferenced while idle, replaced if it dies.
import { Worker } from 'node:worker_threads';
import type { CompiledGuardrail, Tally } from './engine-core.ts';
import type { Queued, ScanOffload } from './structured.ts';
import type { Direction } from './types.ts';

/** A compiled guardrail as the thread needs it (no webhook or schema: the walker's text scan only). */
export interface GuardrailWire {
  name: string; on: Direction[]; action: CompiledGuardrail['action']; detectors: CompiledGuardrail['detectors'];
  regexes: Array<[string, string]>; keywords: [string, string] | null; keywordSpan: number;
  maxChars: number | undefined; maxScanChars: number; onScanLimit: CompiledGuardrail['onScanLimit'];
}

export interface ScanJob { id: number; defs: Array<[number, GuardrailWire]>; gs: number[]; dir: Direction; t: Tally; q: Queued }
export type ScanReply = { id: number; text: string | null; t: Tally } | { id: number; error: string };

export function toWire(g: CompiledGuardrail): GuardrailWire {
  return {
    name: g.name, on: [...g.on], action: g.action, detectors: g.detectors, regexes: g.regexes.map((r) => [r.source, r.flags]),
    keywords: g.keywords === null ? null : [g.keywords.source, g.keywords.flags], keywordSpan: g.keywordSpan,
    maxChars: g.maxChars, maxScanChars: g.maxScanChars, onScanLimit: g.onScanLimit,
  };
}

export function fromWire(w: GuardrailWire): CompiledGuardrail {
  return Object.freeze({
    ...w, on: new Set(w.on), regexes: w.regexes.map(([s, f]) => new RegExp(s, f)),
    keywords: w.keywords === null ? null : new RegExp(w.keywords[0], w.keywords[1]), webhook: undefined, schema: undefined,
  });
}

export interface ScanThread extends ScanOffload {
  /** Is the thread up (started and not stopped since)? */
  running(): boolean;
  close(): Promise<void>;
}

/** A thread with nothing to scan for this long is stopped. */
const IDLE_MS = 30_000;

export function createScanThread(opts: { idleMs?: number } = {}): ScanThread {
  const idleMs = opts.idleMs ?? IDLE_MS;
  let worker: Worker | null = null;
  let idle: NodeJS.Timeout | null = null;
  // Guardrails are sent once per thread, by id; a config reload compiles new objects (new ids).
  const ids = new WeakMap<CompiledGuardrail, number>();
  let nextId = 0;
  let known = new Set<number>();
  const calls = new Map<number, (r: ScanReply) => void>();
  let seq = 0;

  /** The thread is gone: what it held is scanned on the loop instead (the callers fall back). */
  function failAll(why: string): void {
    worker = null;
    known = new Set();
    for (const [id, cb] of calls) cb({ id, error: `guardrail scan thread stopped: ${why}` });
    calls.clear();
  }

  function start(): Worker {
    const w = new Worker(new URL('./offload-worker.ts', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    w.unref();
    w.on('message', (r: ScanReply) => {
      const cb = calls.get(r.id);
      calls.delete(r.id);
      if (calls.size === 0) {
        w.unref();
        idle = setTimeout(() => { if (worker === w && calls.size === 0) { failAll('idle'); void w.terminate(); } }, idleMs).unref();
      }
      cb?.(r);
    });
    const died = (why: string): void => { if (worker === w) failAll(why); };
    w.on('error', (e) => died(e.message));
    w.on('exit', (code) => died(`exit code ${code}`));
    return w;
  }

  return {
    scan(gs, dir, t, q) {
      if (idle !== null) { clearTimeout(idle); idle = null; }
      const w = worker ??= start();
      const defs: Array<[number, GuardrailWire]> = [];
      const list = gs.map((g) => {
        let id = ids.get(g);
        if (id === undefined) ids.set(g, id = nextId++);
        if (!known.has(id)) { known.add(id); defs.push([id, toWire(g)]); }
        return id;
      });
      const id = ++seq;
      return new Promise<string>((resolve, reject) => {
        calls.set(id, (r) => {
          if ('error' in r) { reject(new Error(r.error)); return; }
          Object.assign(t, r.t);
          resolve(r.text ?? q.text);
        });
        if (calls.size === 1) w.ref();
        w.postMessage({ id, defs, gs: list, dir, t, q } satisfies ScanJob);
      });
    },
    running: () => worker !== null,
    async close() {
      if (idle !== null) { clearTimeout(idle); idle = null; }
      const w = worker;
      if (w === null) return;
      failAll('closed');
      await w.terminate();
    },
  };
}
