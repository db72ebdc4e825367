// Cost of guardListing (access/guard.ts): a listing's items through the caller's output
// guardrails, as MCP prompts/resources listings, an A2A card's skills and GET /v1/models run it.
// A listing of 50 MCP-tool-like items (name, ~250-character description, a small input schema),
// every detector on plus a keyword list; two items carry an email (redacted) and one a blocked
// keyword (withheld, recorded for each caller). Modes:
//   cold         a new guardrail list each listing: every item scanned (a reload, a first listing)
//   warm text    item keyed by its content (what prompts/resources listings and the card pass):
//                found by its name, compared by value (--json-key: keyed by its JSON, as before)
//   warm object  item keyed by an object and its name (what tools/list uses via guard())
//   per caller   warm text, each listing by another of 16 callers: the verdicts are shared, the
//                evidence of the withheld item is per caller
//   node_modules/.bin/node bench/guard-listing.ts [--rounds 2000] [--runs 5] [--json-key]
import { guardListing, type ListedItem } from '../src/access/guard.ts';
import { compileGuardrail, type CompiledGuardrail } from '../src/guardrails/engine.ts';
import type { AccessRuntime } from '../src/access/runtime-view.ts';
import type { Identity } from '../src/identity/types.ts';

const arg = (name: string, d: number) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) || d : d; };
const rounds = arg('--rounds', 2000);
const runs = arg('--runs', 5);
const N = 50;

const spec = { on: ['output'] as const, action: 'redact' as const, detect: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'] as const };
const guards = (): readonly CompiledGuardrail[] => [
  compileGuardrail('pii', { ...spec, on: [...spec.on], detect: [...spec.detect] }),
  compileGuardrail('falcon', { on: ['output'], keywords: ['project falcon'], action: 'block' }),
];

const items = Array.from({ length: N }, (_, i) => ({
  name: `tool_${i}`,
  description: `Searches the accounts of the CRM by name, owner or region and returns up to 50 matches with their ids, owners and last activity. Use it before reading an account. Item ${i}. `
    + (i === 7 || i === 31 ? 'Questions: support@example.com.' : i === 42 ? 'Part of project falcon.' : 'Read-only, paginated.'),
  inputSchema: { type: 'object', properties: { query: { type: 'string', description: 'name or owner' }, limit: { type: 'integer', minimum: 1, maximum: 50 }, region: { type: 'string', enum: ['us', 'eu', 'apac'] } }, required: ['query'] },
}));

let events = 0;
const rt = { scanThread: undefined, metrics: null, audit: { record: () => { events++; } }, egress: undefined } as unknown as AccessRuntime;
const callers: Identity[] = Array.from({ length: 16 }, (_, i) => ({ agent: { name: `agent-${i}`, spiffeId: `spiffe://bench/agent/${i}`, team: 'bench' } }) as unknown as Identity);
const at = { requestId: 'req_bench', traceId: '0'.repeat(32) };

async function listing(gs: readonly CompiledGuardrail[], caller: Identity, key: 'text' | 'object'): Promise<number> {
  const of = key === 'text'
    ? (item: typeof items[number]): ListedItem => ({ where: 'prompts/list', gs, key: process.argv.includes('--json-key') ? JSON.stringify(item) : { content: item } })
    : (item: typeof items[number]): ListedItem => ({ where: 'tools/list', gs, key: { obj: item, name: item.name } });
  const out = await guardListing(rt, at, caller, items, of, 'json');
  return out.length;
}

type Mode = 'cold' | 'warm text' | 'warm object' | 'per caller';
async function run(mode: Mode): Promise<number> {
  const warm = guards();
  const n = mode === 'cold' ? Math.max(20, rounds / 20) : rounds;
  await listing(warm, callers[0], mode === 'warm object' ? 'object' : 'text');
  const t0 = performance.now();
  for (let r = 0; r < n; r++) {
    const shown = mode === 'cold' ? await listing(guards(), callers[0], 'text')
      : await listing(warm, mode === 'per caller' ? callers[r & 15] : callers[0], mode === 'warm object' ? 'object' : 'text');
    if (shown !== N - 1) throw new Error(`${shown} items shown`);
  }
  return ((performance.now() - t0) * 1000) / (n * N); // us per item
}

const modes: Mode[] = ['cold', 'warm text', 'warm object', 'per caller'];
await run('cold'); await run('warm text'); // warm-up (JIT)
const res = new Map<Mode, number[]>(modes.map((m) => [m, []]));
for (let r = 0; r < runs; r++) for (const m of modes) res.get(m)!.push(await run(m));
console.log(`guardListing, ${N} items, ${runs} interleaved runs: us per item, median (min-max)`);
for (const m of modes) {
  const v = res.get(m)!.sort((a, b) => a - b);
  console.log(`  ${m.padEnd(12)} ${v[v.length >> 1].toFixed(2)} (${v[0].toFixed(2)}-${v[v.length - 1].toFixed(2)})  = ${(v[v.length >> 1] * N).toFixed(0)} us per listing`);
}
