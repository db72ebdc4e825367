// Cost of scrubbing a streamed chat completion: 20 SSE chunks (OpenAI chunk shape, ~150-250
// chars each) with 5 active secrets, versus passing the chunks through unscrubbed.
// Run: node_modules/.bin/node bench/scrub-stream.ts   (writes nothing; numbers go to stdout)
import { Scrubber } from '../src/credentials/scrub.ts';

const secrets = [
  { name: 'openai', value: 'sk-proj-' + 'Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z'.repeat(2) },
  { name: 'anthropic', value: 'sk-ant-api03-' + 'Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp'.repeat(3) },
  { name: 'gemini', value: 'AIzaSyD-' + 'k3Jf8Ls0Qm2Nv7Bx5Cz1Hp9Wr4Ty6Ug' },
  { name: 'salesforce', value: '00D5g000004' + 'abcdefGHIJKL0123456789mnopqrSTUVWXyz'.repeat(2) },
  { name: 'oauth-token', value: 'eyJhbGciOiJSUzI1NiJ9.' + 'eyJzdWIiOiJzcGlmZmU6Ly9wcm9kL2FnZW50L2EifQ'.repeat(3) + '.sig' },
];
const scrubber = new Scrubber(secrets);
const words = 'The quarterly revenue for the finance team grew by 12 percent, driven by new accounts in EMEA and strong renewals. '.split(' ');

/** 20 SSE events; with `leak`, event 10 carries a whole secret and the wire is cut in the middle of it. */
function chunks(leak: boolean): string[] {
  const events = Array.from({ length: 20 }, (_, i) => {
    const content = leak && i === 10 ? `key ${secrets[0].value} ` : words.slice(i % 10, (i % 10) + 2 + (i % 3)).join(' ') + ' ';
    return `data: ${JSON.stringify({ id: 'chatcmpl-9f8e7d6c5b4a', object: 'chat.completion.chunk', created: 1732500000, model: 'gpt-4o-2024-08-06', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
  });
  if (!leak) return events;
  const at = events[10].indexOf(secrets[0].value) + 30;
  const wire = events.slice();
  wire[10] = events[10].slice(0, at);
  wire[11] = events[10].slice(at) + events[11];
  return wire.filter((c) => c.length > 0);
}

function run(label: string, list: string[], iterations: number, fn: (list: string[]) => number): { perStreamUs: number; perChunkUs: number } {
  let sink = 0;
  for (let i = 0; i < 2000; i++) sink += fn(list); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += fn(list);
  const ns = Number(process.hrtime.bigint() - t0);
  const perStreamUs = ns / iterations / 1000;
  const r = { perStreamUs, perChunkUs: perStreamUs / list.length };
  console.log(`${label.padEnd(44)} ${r.perStreamUs.toFixed(2).padStart(8)} us/stream ${r.perChunkUs.toFixed(3).padStart(8)} us/chunk  (sink ${sink % 7})`);
  return r;
}

const passthrough = (list: string[]) => { let n = 0; for (const c of list) n += c.length; return n; };
const scrubbed = (list: string[]) => {
  const st = scrubber.stream();
  let n = 0;
  for (const c of list) n += st.push(c).length;
  return n + st.end().length;
};
const perChunkNonStream = (list: string[]) => { let n = 0; for (const c of list) n += scrubber.scrub(c).text.length; return n; };

const N = 50_000;
const clean = chunks(false);
const leaky = chunks(true);
console.log(`5 secrets -> ${scrubber.size} patterns (raw, base64 std/url x3 alignments, url-encoded, JSON); longest ${scrubber.maxPatternLength} chars`);
console.log(`20 chunks, ${clean.reduce((a, c) => a + c.length, 0)} chars per stream; ${N} streams per row; node ${process.version}`);
const base = run('no scrubbing (pass-through)', clean, N, passthrough);
const s1 = run('stream scrubber, clean stream', clean, N, scrubbed);
const s2 = run('stream scrubber, secret split over 2 chunks', leaky, N, scrubbed);
const s3 = run('scrub() per chunk (no split protection)', clean, N, perChunkNonStream);
console.log(`overhead clean stream: ${(s1.perStreamUs - base.perStreamUs).toFixed(2)} us/stream, ${(s1.perChunkUs - base.perChunkUs).toFixed(3)} us/chunk`);
void s2; void s3;
const out = scrubbed(leaky);
const check = scrubber.stream();
const text = leaky.map((c) => check.push(c)).join('') + check.end();
if (text.includes(secrets[0].value.slice(0, 20)) || !text.includes('[REDACTED:openai]') || out <= 0) throw new Error('bench self-check failed: secret not scrubbed');
