// Longest event-loop turn (thread CPU, which a loaded machine disturbs far less than wall time)
// while a large hostile chat body goes the request path's heavy steps: arriving in 64 KB chunks a
// turn apart, parsed from its bytes (access/json-turns.ts) and turned into the upstream body
// (gateway/long-body.ts). What /healthz waits for behind one such body is about its longest turn.
//   node bench/body-turns.ts [bytes=1000000] [rounds=4]
import { parseJsonInTurns } from '../src/access/json-turns.ts';
import { openaiAdapter, parseOpenAIChatRequest } from '../src/providers/openai.ts';
import { chatRequestInTurns } from '../src/gateway/long-body.ts';
import { adversarialInputs } from '../test/helpers/hostile-text.ts';

const size = Number(process.argv[2] ?? 1_000_000);
const rounds = Number(process.argv[3] ?? 4);
const text = adversarialInputs(Math.ceil(size / 50)).map(([, t]) => t).join(' ').repeat(2).slice(0, size);
const body = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] }));
const cpuMs = (): number => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

for (let round = 1; round <= rounds; round++) {
  let last = cpuMs(), longest = 0, turns = 0, running = true;
  const tick = (): void => { const c = cpuMs(); longest = Math.max(longest, c - last); last = c; turns++; if (running) setImmediate(tick); };
  setImmediate(tick);
  await turn();
  const t0 = cpuMs();
  const chunks: Buffer[] = [];
  for (let p = 0; p < body.length; p += 65536) { chunks.push(body.subarray(p, p + 65536)); await turn(); }
  const parsedValue = parseJsonInTurns(Buffer.concat(chunks));
  const parsed = parseOpenAIChatRequest(parsedValue instanceof Promise ? await parsedValue : parsedValue);
  if (!parsed.ok) throw new Error(parsed.message);
  const built = chatRequestInTurns(openaiAdapter, parsed.req, { model: 'x', stream: false, options: {} }, body.length);
  const up = built instanceof Promise ? await built : built;
  const total = cpuMs() - t0;
  running = false;
  await turn();
  console.log(`round ${round}: ${body.length} bytes in, ${Buffer.byteLength(up.body)} bytes up; ${total.toFixed(1)} ms CPU in ${turns} loop turns, longest ${longest.toFixed(2)} ms CPU`);
}
