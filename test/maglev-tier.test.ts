// `aam serve` turns off V8's Maglev tier with AAM_MAGLEV=0 (src/observability/memory.ts): its
// background compile jobs took 26-35 MB of malloc at once when the request path first got hot, and
// glibc kept the arena at that size for good; it is on by default, since without it a fresh
// gateway's requests cost more CPU (bench/RESULTS.md, "Memory"). Seen from outside with V8's
// --trace-opt, which names each function's target tier as it is compiled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { maglevTier } from '../src/observability/memory.ts';
import { ROOT } from './helpers/e2e.ts';
import { serveRefusal, startServeChild, type ServeChild } from './helpers/serve-child.ts';

test('AAM_MAGLEV: 1 or unset keeps V8\'s Maglev tier, 0 turns it off, anything else is refused naming the variable', () => {
  // Checked before the flag is set: this process keeps V8's tiers for the checks that pass.
  for (const bad of ['yes', 'on', 'true', '2', ' 1']) {
    assert.throws(() => maglevTier(bad), /AAM_MAGLEV must be 1 \(use V8's Maglev compiler tier, the default\) or 0 .*not " ?\S*"/, bad);
  }
  assert.equal(maglevTier('1'), true);
  assert.equal(maglevTier(undefined), true);
  assert.equal(maglevTier(''), true);
  assert.equal(maglevTier('0'), false); // last: it sets the process-wide flag
});

const IN_FLIGHT = 4;

/** Serves the demo config with --trace-opt, sends `n` requests to /healthz once it listens, returns what V8 printed. */
async function traceOpt(env: Record<string, string>, n: number): Promise<{ stdout: string; stderr: string; served: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'aam-maglev-'));
  let gw: ServeChild | undefined;
  try {
    gw = await startServeChild({ config: join(ROOT, 'aam.yaml'), data: join(dir, 'data'), env, nodeArgs: ['--trace-opt'] });
    // A few requests in flight at once: the same n requests (the same hotness for V8's tiers),
    // without waiting out n loopback round trips one after another.
    let served = 0;
    let sent = 0;
    const client = async () => {
      while (sent < n) {
        sent++;
        const res = await fetch(`${gw!.url}/healthz`);
        await res.arrayBuffer();
        if (res.status === 200) served++;
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, client));
    // Concurrent compile jobs finish off the main thread: give the last ones a moment to be traced.
    await new Promise((r) => setTimeout(r, 500));
    return { stdout: gw.stdout(), stderr: gw.stderr(), served };
  } finally {
    await gw?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// Node's HTTP server functions: none runs before the gateway listens, all run for every request.
// (Functions hot while the process starts, such as the module loader's and, from the sources, the
// type stripper's, may be compiled with Maglev before `aam serve` can set the flag.)
const REQUEST_PATH = ['parserOnHeadersComplete', 'parserOnIncoming', 'writeHead', '_storeHeader', 'resOnFinish', 'connectionListenerInternal'];
const maglevCompiled = (trace: string): string[] => [...trace.matchAll(/<JSFunction ([^ >]+)[^\]\n]*for optimization to MAGLEV/g)].map((m) => m[1]).filter((f) => REQUEST_PATH.includes(f));

test('aam serve with AAM_MAGLEV=0 runs without Maglev: its hot request path goes to TurboFan alone; by default Maglev compiles it', { timeout: 180_000 }, async () => {
  const off = await traceOpt({ AAM_MAGLEV: '0' }, 3000);
  assert.equal(off.served, 3000);
  assert.match(off.stdout, /target TURBOFAN/, 'the request path got hot enough to be optimized');
  assert.deepEqual(maglevCompiled(off.stdout), [], 'compiled with Maglev');
  // The same load by default: the tier is on, and the check above would see it.
  const on = await traceOpt({}, 3000);
  assert.equal(on.served, 3000);
  assert.notDeepEqual(maglevCompiled(on.stdout), []);
});

test('aam serve refuses a bad AAM_MAGLEV before it listens', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-maglev-'));
  try {
    const outcome = await serveRefusal({ config: join(ROOT, 'aam.yaml'), data: join(dir, 'data'), env: { AAM_MAGLEV: 'yes' } });
    assert.match(outcome, /^aam serve exited \(1\) before listening:\n[\s\S]*AAM_MAGLEV must be 1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
