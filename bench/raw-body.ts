// CPU per request of what the chat path does with a client body before the upstream call:
// re-serialised (the adapter's object, JSON.stringify, UTF-8 bytes) against the client's own bytes
// (src/gateway/raw-body.ts: the adapter's rawChatRequest, the route's model and any field aam adds
// put into the bytes). Both include the checks every request gets (depth and member count, parse,
// key count, the wire's parser, the UTF-8 check). The requests are cpu-per-request's
// (bench/cpu-per-request.ts): OpenAI wire non-stream, stream asking for usage, stream not asking
// (aam adds stream_options), and the Anthropic wire to an Anthropic upstream, non-stream and
// stream. A third column, refused: the client's bytes may not go (the last message's text changed,
// as a guardrail's redaction does), so the adapter's body is sent after rawChatRequest compared it.
// Alternated in rounds in one process.   node bench/raw-body.ts [--rounds 7] [--n 200000] [--model NAME] [--pad CHARS]
import { parseArgs } from 'node:util';
import { keyCount, memberCount } from '../src/access/json-keys.ts';
import type { JsonBody } from '../src/access/request.ts';
import { chatUpstream, clientBody } from '../src/gateway/raw-body.ts';
import { parseOpenAIChatRequest } from '../src/providers/openai-parse.ts';
import { parseAnthropicRequest } from '../src/providers/anthropic-parse.ts';
import { openaiAdapter } from '../src/providers/openai.ts';
import { anthropicAdapter } from '../src/providers/anthropic.ts';
import type { ChatRequest, ProviderAdapter } from '../src/providers/types.ts';

const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, n: { type: 'string', default: '200000' }, model: { type: 'string' }, pad: { type: 'string', default: '0' } } });
// --model NAME: the route's target model (put in place of the client's); default: the client's own, as in cpu-per-request.
const MODEL = opt.model;
// --pad N: N more characters (a conversation's worth of text) in the user message.
const PAD = ' lorem ipsum é'.repeat(Math.ceil(Number(opt.pad) / 14)).slice(0, Number(opt.pad));
const ROUNDS = Number(opt.rounds);
const N = Number(opt.n);
const base = { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: `Say hello in one short sentence.${PAD}` }], max_tokens: 64, temperature: 0.2 };
const anthropicBase = { model: 'claude-bench', system: 'You are a helpful assistant.', messages: [{ role: 'user', content: `Say hello in one short sentence.${PAD}` }], max_tokens: 64, temperature: 0.2 };
type Parse = (v: unknown) => { ok: true; req: ChatRequest } | { ok: false };
const kinds: Array<[string, object, Parse, ProviderAdapter]> = [
  ['nonstream', base, parseOpenAIChatRequest, openaiAdapter],
  ['stream', { ...base, stream: true, stream_options: { include_usage: true } }, parseOpenAIChatRequest, openaiAdapter],
  ['stream-nousage', { ...base, stream: true }, parseOpenAIChatRequest, openaiAdapter],
  ['messages', anthropicBase, parseAnthropicRequest, anthropicAdapter],
  ['messages-stream', { ...anthropicBase, stream: true }, parseAnthropicRequest, anthropicAdapter],
];
type Mode = 'reserialised' | 'raw' | 'refused';
const MODES: readonly Mode[] = ['reserialised', 'raw', 'refused'];
/** The request with its last message's text changed (a new messages array and message), as a guardrail's redaction leaves it. */
function redacted(req: ChatRequest): ChatRequest {
  const last = req.messages[req.messages.length - 1];
  return { ...req, messages: [...req.messages.slice(0, -1), { ...last, content: 'Say hello in one [redacted] sentence.' }] };
}
for (const [kind, obj, parse, adapter] of kinds) {
  const buf = Buffer.from(JSON.stringify(obj));
  let sink = 0;
  const step = (mode: Mode) => {
    const m = memberCount(buf);
    if (m < 0) throw 0;
    const value: unknown = JSON.parse(buf.toString('utf8'));
    if (keyCount(value) !== m) throw 1;
    const p = parse(value);
    if (!p.ok) throw 2;
    const client = clientBody({ value, bytes: buf } as JsonBody);
    const stream = p.req.stream === true;
    const req = mode === 'refused' ? redacted(p.req) : p.req;
    const up = chatUpstream(adapter, { ...req, stream }, { model: MODEL ?? (value as { model: string }).model, stream, options: {} }, buf.length, mode === 'reserialised' ? undefined : client);
    if (up instanceof Promise) throw 3;
    const raw = mode === 'raw';
    if (raw !== Buffer.isBuffer(up.body)) throw new Error(`${kind}: ${raw ? 'not' : 'unexpectedly'} raw`);
    sink += typeof up.body === 'string' ? Buffer.from(up.body).length : up.body.length;
  };
  const res: Record<Mode, number[]> = { reserialised: [], raw: [], refused: [] };
  for (let r = 0; r < ROUNDS; r++) for (const mode of MODES) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < N; i++) step(mode);
    const d = process.cpuUsage(t0);
    res[mode].push((d.user + d.system) / N);
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)].toFixed(3);
  const range = (a: number[]) => `${Math.min(...a).toFixed(2)}-${Math.max(...a).toFixed(2)}`;
  console.log(kind, `${buf.length} B`, 're-serialised', med(res.reserialised), `us (${range(res.reserialised)}); raw`, med(res.raw), `us (${range(res.raw)}); refused`, med(res.refused), `us (${range(res.refused)}) (median of ${ROUNDS} rounds, CPU per request)`, sink > 0);
}
