// CPU per request of what the chat path does with a client body before the upstream call, old way
// (depth check, parse, adapter body, JSON.stringify, UTF-8 bytes) against the raw pass-through
// (depth check counting members, parse, key count, UTF-8 check, same-body check, the client's bytes):
// src/gateway/raw-body.ts. The request is cpu-per-request's (bench/cpu-per-request.ts), alternated
// in rounds in one process.   node bench/raw-body.ts
import { isUtf8 } from 'node:buffer';
import { jsonTooDeep } from '../src/access/json-depth.ts';
import { keyCount, memberCount } from '../src/access/json-keys.ts';
import { parseOpenAIChatRequest } from '../src/providers/openai-parse.ts';
import { openaiAdapter } from '../src/providers/openai.ts';
const base = { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64, temperature: 0.2 };
for (const [kind, obj] of [['nonstream', base], ['stream', { ...base, stream: true, stream_options: { include_usage: true } }]] as const) {
  const buf = Buffer.from(JSON.stringify(obj));
  const target = { model: 'gpt-4o-mini', stream: kind === 'stream', options: {} };
  let sink = 0;
  const old = () => { if (jsonTooDeep(buf)) throw 0; const v = JSON.parse(buf.toString('utf8')); const p = parseOpenAIChatRequest(v); if (!p.ok) throw 0; const up = openaiAdapter.chatRequest({ ...p.req, stream: target.stream }, target); sink += Buffer.from(up.body).length; };
  const neu = () => { const m = memberCount(buf); if (m < 0) throw 0; const v = JSON.parse(buf.toString('utf8')); if (keyCount(v) !== m) throw 1; const p = parseOpenAIChatRequest(v); if (!p.ok) throw 0; if (!isUtf8(buf)) throw 0; const h = openaiAdapter.rawChatRequest!(v, { ...p.req, stream: target.stream }, target); if (!h) throw new Error('not raw'); sink += buf.length; };
  const N = 200_000;
  const res: Record<string, number[]> = { old: [], neu: [] };
  for (let r = 0; r < 7; r++) for (const [name, f] of [['old', old], ['neu', neu]] as const) {
    const t0 = process.cpuUsage(); for (let i = 0; i < N; i++) f(); const d = process.cpuUsage(t0); res[name].push((d.user + d.system) / N);
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[3].toFixed(3);
  console.log(kind, `${buf.length} B`, 'old', med(res.old), 'us; new', med(res.neu), 'us (median of 7 rounds, CPU per request)', sink > 0);
}
