// CPU per stored Response in the embedded store (SQLite, WAL, synchronous=NORMAL), by how many
// puts one transaction writes: what the store's group commit (src/store/responses.ts) trades.
// --items: index rows per put, by how many (ids a client gave its items: the store indexes only
// those; 0 for the bench's request, whose 2 item ids aam derives from its response's id, indexed before).
//   node bench/responses-store-cost.ts [--batch 1,8,32] [--items 0,2] [--n 20000] [--rounds 5]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase } from '../src/store/sqlite.ts';
import { openResponseStore } from '../src/store/responses.ts';
import { localId } from '../src/providers/util.ts';

const { values: opt } = parseArgs({ options: { batch: { type: 'string', default: '1,8,32' }, n: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '5' }, items: { type: 'string', default: '0' } } });
const N = Number(opt.n);
const cpuUs = (): number => { const u = process.cpuUsage(); return u.user + u.system; };
const agent = 'spiffe://bench/agent/bench';
// The bench's Responses request and answer as stored (one input message, one output message).
const input = JSON.stringify([{ type: 'message', role: 'user', content: 'Say hello in one short sentence.', id: 'msg_0123456789abcdef01234567_in0' }]);
const response = JSON.stringify({ id: 'resp_0123456789abcdef01234567', object: 'response', created_at: 1, status: 'completed', background: false, error: null, incomplete_details: null, instructions: 'You are a helpful assistant.', max_output_tokens: 64, model: 'gpt-4o-mini', output: [{ id: 'msg_0123456789abcdef01234567_0', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', annotations: [], logprobs: [], text: 'Hello! How can I help you today?' }] }], parallel_tool_calls: true, previous_response_id: null, reasoning: { effort: null, summary: null }, store: true, temperature: 0.2, text: { format: { type: 'text' } }, tool_choice: 'auto', tools: [], top_p: 1, truncation: 'disabled', usage: { input_tokens: 20, input_tokens_details: { cached_tokens: 0 }, output_tokens: 9, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 29 }, user: null, metadata: {}, completed_at: 2 });
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1];

for (const b of opt.batch.split(',').map(Number)) for (const k of opt.items.split(',').map(Number)) {
  const perPut: number[] = [];
  for (let r = 0; r < Number(opt.rounds); r++) {
    const dir = mkdtempSync(join(tmpdir(), 'aam-store-cost-'));
    const db = openDatabase(dir);
    // A window no put reaches: flush() below is the only write, every `b` puts.
    const store = openResponseStore(db, Date.now, undefined, { ms: 3_600_000, max: Number.MAX_SAFE_INTEGER });
    const t0 = cpuUs();
    for (let i = 0; i < N; i += b) {
      for (let j = 0; j < b; j++) {
        const id = localId('resp_');
        const hex = id.slice(5);
        void store.put({ id, agent, previousId: null, input, response, expiresAt: Date.now() + 86_400_000 }, Array.from({ length: k }, (_, x) => `client_${hex}_${x}`));
      }
      store.flush?.();
    }
    perPut.push((cpuUs() - t0) / N);
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`${b} puts per transaction, ${k} index rows each: ${median(perPut).toFixed(1)} us CPU per put (rounds ${perPut.map((x) => x.toFixed(1)).join(', ')})`);
}
