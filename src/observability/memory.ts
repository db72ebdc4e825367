// Memory a started gateway no longer needs. Loading the config and compiling the modules grows
// V8's young generation to its maximum (two semi-spaces of --max-semi-space-size: 16 MB under
// `npm start`) and leaves old-space pages committed; an idle gateway allocates too little for V8's
// memory reducer ever to give them back. One memory-reducing collection once it listens does:
// -20 MB RSS at idle (bench/RESULTS.md, "Memory"). Under load the young generation grows again,
// up to the same maximum, so throughput is unchanged.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** A full, compacting, memory-reducing GC of this thread's heap; returns how long it took (ms). */
export function releaseStartupMemory(): number {
  // gc() exists only behind --expose-gc; the flag is on just long enough to fetch the function
  // from a fresh context, so no module of the gateway ever sees a global gc.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (o: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;
  setFlagsFromString('--no-expose-gc');
  const t0 = performance.now();
  // 'last-resort' is V8's memory-reducing mode: it also shrinks the young generation, which a
  // plain major GC leaves at its size.
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return performance.now() - t0;
}

/**
 * Lets each worker thread's own young-generation limit (resourceLimits.maxYoungGenerationSizeMb:
 * the audit writer's 4 MB) apply. `npm start` sizes the gateway thread's young generation with
 * --max-semi-space-size (throughput), but V8 reads that flag again for every isolate created
 * later and it overrides the workers' limits: the writer ran with the gateway's 16 MB young
 * generation. This thread's heap was sized when it started, so clearing the flag changes only the
 * threads started from now on.
 */
export function workerHeapsUseTheirLimits(): void {
  setFlagsFromString('--max-semi-space-size=0');
}

/** Default of AAM_HEAP_GROWING_PERCENT (see boundHeapGrowth). */
export const HEAP_GROWING_PERCENT = 30;

/**
 * How far V8 lets the old generation grow past what its last full GC kept before the next one
 * starts: AAM_HEAP_GROWING_PERCENT (default 30; 0 leaves V8's own, dynamic factor of up to 4x).
 * Under sustained load a gateway's old generation is mostly short-lived request objects that a
 * scavenge happened to promote, and the socket and body buffers they hold; V8's factor let it
 * grow to ~70 MB around ~25 MB of live heap (peak RSS 211 MB in a c=32+32 mixed run, 147 MB with
 * 30 %, for ~4 % more CPU per request: bench/RESULTS.md, "Memory"). A process-wide V8 flag, read
 * at each collection: set by `aam serve` (not by gateways a test starts in-process).
 */
export function boundHeapGrowth(value: string | undefined): number {
  const pct = value === undefined || value === '' ? HEAP_GROWING_PERCENT : Number(value);
  if (!Number.isSafeInteger(pct) || pct < 0 || pct > 300) {
    throw new Error(`AAM_HEAP_GROWING_PERCENT must be a whole number from 0 to 300 (how far the heap may grow past its live size before a full GC, in percent; 0: V8's own growth), not "${value}"`);
  }
  if (pct > 0) setFlagsFromString(`--heap-growing-percent=${pct}`);
  return pct;
}

/**
 * V8's mid tier, Maglev (AAM_MAGLEV: on unless `0`). Its compile jobs run on V8's background threads
 * beside TurboFan's, and their working memory (zones) comes from malloc: about a second into a
 * gateway's first load they took 26-35 MB of malloc at once, and glibc kept the arena at that size
 * for the life of the process (36-44 MB of arena around 7-16 MB in use). Turning Maglev off keeps the
 * arena at 17-22 MB (loaded peak RSS 137 vs ~150 MB in npm run bench) but costs CPU where it counts:
 * hot functions wait in the baseline tier until TurboFan takes them, so a fresh replica's c=1 request
 * cost 810 vs 570 us of CPU in fleet mode and 450 vs 368 us per stream embedded (quiet, interleaved,
 * bench/RESULTS.md "Memory"). So it stays on; `0` is for memory-tight deployments. A process-wide V8
 * flag (the audit writer thread too), read whenever a function is tiered up: set by `aam serve`
 * first thing (not by gateways a test starts in-process).
 */
export function maglevTier(value: string | undefined): boolean {
  if (value !== undefined && value !== '' && value !== '0' && value !== '1') {
    throw new Error(`AAM_MAGLEV must be 1 (use V8's Maglev compiler tier, the default) or 0 (do not: ~13 MB less RSS under load, more CPU per request), not "${value}"`);
  }
  const on = value !== '0';
  if (!on) setFlagsFromString('--no-maglev');
  return on;
}
