// Golden matrices for the provider translators (agentgateway style: one input, every provider's
// expected output, reviewed as data). UPDATE_GOLDEN=1 rewrites the expected files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { adapterFor, codecFor, parseAnthropicRequest, parseOpenAIChatRequest, SseParser } from '../src/providers/index.ts';
import type { AdapterType } from '../src/providers/index.ts';
import type { StreamEvent, TargetInfo } from '../src/providers/types.ts';
import { golden, GOLDEN_DIR } from './helpers/golden.ts';

const DIR = GOLDEN_DIR;

const TARGETS: Record<string, { type: AdapterType; target: Omit<TargetInfo, 'stream'> }> = {
  openai: { type: 'openai', target: { model: 'gpt-4o', options: {} } },
  anthropic: { type: 'anthropic', target: { model: 'claude-sonnet-4-5', options: {} } },
  gemini: { type: 'gemini', target: { model: 'gemini-2.5-flash', options: {} } },
  azure: { type: 'azure-openai', target: { model: 'gpt-4o', options: { apiVersion: '2024-10-21', deployment: 'prod-gpt4o' } } },
};

const reqDir = join(DIR, 'requests');
const cases = readdirSync(reqDir).filter((f) => /^[^.]+\.json$/.test(f)).map((f) => f.slice(0, -5));

for (const c of cases) {
  test(`request golden: ${c}`, () => {
    const parsed = parseOpenAIChatRequest(JSON.parse(readFileSync(join(reqDir, `${c}.json`), 'utf8')));
    assert.ok(parsed.ok, parsed.ok ? '' : parsed.message);
    for (const [name, { type, target }] of Object.entries(TARGETS)) {
      const up = adapterFor(type).chatRequest(parsed.req, { ...target, stream: parsed.req.stream === true });
      assert.equal(up.headers.authorization, undefined, 'providers never add credentials');
      const view = { method: up.method, path: up.path, headers: up.headers, body: JSON.parse(up.body) as unknown };
      golden(join(reqDir, `${c}.${name}.json`), JSON.stringify(view, null, 2) + '\n');
      // Anthropic's prompt-cache breakpoints (LiteLLM's form) reach Anthropic only: OpenAI answers 400 to them.
      if (name !== 'anthropic') assert.doesNotMatch(up.body, /cache_control/, name);
    }
  });
}

// Anthropic clients (/v1/messages): the same matrix from an Anthropic body. To an Anthropic target
// the translation says what the client said (issue 16: cache_control, thinking blocks, a
// tool_result's is_error), so the client's own bytes may go (rawChatRequest answers `add`, not a body); other
// targets get none of those Anthropic-only fields.
const antDir = join(DIR, 'anthropic-requests');
for (const c of readdirSync(antDir).filter((f) => /^[^.]+\.json$/.test(f)).map((f) => f.slice(0, -5))) {
  test(`request golden (Anthropic client): ${c}`, () => {
    const client = JSON.parse(readFileSync(join(antDir, `${c}.json`), 'utf8')) as Record<string, unknown>;
    const parsed = parseAnthropicRequest(client);
    assert.ok(parsed.ok, parsed.ok ? '' : parsed.message);
    for (const [name, { type, target }] of Object.entries(TARGETS)) {
      const t = { ...target, stream: parsed.req.stream === true };
      const up = adapterFor(type).chatRequest(parsed.req, t);
      const view = { method: up.method, path: up.path, headers: up.headers, body: JSON.parse(up.body) as unknown };
      golden(join(antDir, `${c}.${name}.json`), JSON.stringify(view, null, 2) + '\n');
      if (name === 'anthropic') {
        assert.deepEqual(view.body, { ...client, model: target.model }, 'the Anthropic upstream gets what the client wrote');
        const raw = adapterFor(type).rawChatRequest?.(client, parsed.req, t);
        assert.ok(raw !== undefined && raw.add !== undefined && raw.body === undefined, 'so the client\'s bytes go (raw path)');
      } else {
        assert.doesNotMatch(up.body, /cache_control|"thinking"|redacted_thinking|is_error/, name);
      }
    }
  });
}

/** Deterministic pseudo-random cuts (so a failure reproduces). */
function randomCuts(s: string, seed: number): string[] {
  const out: string[] = [];
  let x = seed;
  let i = 0;
  while (i < s.length) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const n = 1 + (x % 17);
    out.push(s.slice(i, i + n));
    i += n;
  }
  return out;
}

function chunkings(s: string): Array<[string, string[]]> {
  const bytes = Array.from(s);
  const pairs: string[] = [];
  for (let i = 0; i < s.length; i += 2) pairs.push(s.slice(i, i + 2));
  return [['whole', [s]], ['every char', bytes], ['pairs', pairs], ['random 1', randomCuts(s, 1)], ['random 7', randomCuts(s, 7)], ['random 42', randomCuts(s, 42)]];
}

function parseStream(type: AdapterType, chunks: string[]): StreamEvent[] {
  const sse = new SseParser();
  const parser = adapterFor(type).streamParser();
  const events: StreamEvent[] = [];
  for (const ch of chunks) for (const r of sse.push(ch)) events.push(...parser.push(r.data, r.event));
  for (const r of sse.end()) events.push(...parser.push(r.data, r.event));
  events.push(...parser.end());
  return events;
}

function encode(wire: 'openai' | 'anthropic', events: StreamEvent[], includeUsage: boolean): string {
  const codec = codecFor(wire);
  const enc = codec.streamEncoder({ includeUsage, model: 'my-route' });
  let s = '';
  for (const ev of events) s += enc(ev);
  return (s + codec.streamDone).replace(/"created":\d+/g, '"created":0');
}

/** Per-response view independent of event order: what a client finally assembles. */
function assemble(events: StreamEvent[]): unknown {
  let text = '';
  const tools: Array<{ id: string; name: string; args: string }> = [];
  let finish: string | undefined;
  let usage: unknown;
  for (const ev of events) {
    if (ev.type === 'text') text += ev.text;
    else if (ev.type === 'tool_start') tools[ev.index] = { id: ev.id, name: ev.name, args: '' };
    else if (ev.type === 'tool_args') tools[ev.index].args += ev.delta;
    else if (ev.type === 'finish') finish = ev.reason;
    else if (ev.type === 'usage') usage = ev.usage;
    else if (ev.type === 'error') assert.fail(`unexpected error event: ${ev.message}`);
  }
  return { text, tools, finish, usage };
}

const PROVIDER_OF: Record<string, AdapterType> = { openai: 'openai', anthropic: 'anthropic', gemini: 'gemini' };
const streamDir = join(DIR, 'streams');
const transcripts = readdirSync(streamDir).filter((f) => f.endsWith('.sse') && !f.includes('.to-')).map((f) => f.slice(0, -4));

for (const name of transcripts) {
  const type = PROVIDER_OF[name.split('-')[0]];
  const input = readFileSync(join(streamDir, `${name}.sse`), 'utf8');

  test(`stream golden: ${name} parses the same at any chunk boundary`, () => {
    const reference = parseStream(type, [input]);
    for (const [label, chunks] of chunkings(input)) {
      assert.deepEqual(parseStream(type, chunks), reference, `chunking "${label}" changed the events`);
    }
    golden(join(streamDir, `${name}.events.json`), JSON.stringify(reference, null, 1) + '\n');
    const last = reference[reference.length - 1];
    assert.equal(last.type, 'finish', 'a complete stream ends with finish');
    const ui = reference.findIndex((e) => e.type === 'usage');
    assert.ok(ui >= 0 && ui === reference.length - 2, 'usage is reported, right before finish');
  });

  test(`stream golden: ${name} -> openai and anthropic clients`, () => {
    const events = parseStream(type, [input]);
    const toOpenai = encode('openai', events, true);
    const toAnthropic = encode('anthropic', events, true);
    golden(join(streamDir, `${name}.to-openai.sse`), toOpenai);
    golden(join(streamDir, `${name}.to-anthropic.sse`), toAnthropic);
    // The client output, read back by our own upstream parsers, assembles to the same response.
    const want = assemble(events);
    assert.deepEqual(assemble(parseStream('openai', randomCuts(toOpenai, 3))), want);
    assert.deepEqual(assemble(parseStream('anthropic', randomCuts(toAnthropic, 5))), want);
    // Without include_usage the OpenAI client sees no usage chunk, but the finish chunk stays.
    const noUsage = encode('openai', events, false);
    assert.ok(!noUsage.includes('"usage"'), 'usage chunk must be removed when the client did not ask');
    assert.ok(noUsage.includes('"finish_reason":"'));
    assert.ok(noUsage.endsWith('data: [DONE]\n\n'));
  });
}

test('stream golden: a truncated transcript ends with an upstream_incomplete error', () => {
  for (const name of transcripts) {
    const type = PROVIDER_OF[name.split('-')[0]];
    const input = readFileSync(join(streamDir, `${name}.sse`), 'utf8');
    const events = parseStream(type, [input.slice(0, Math.floor(input.length / 2))]);
    const last = events[events.length - 1];
    assert.equal(last.type, 'error', name);
    assert.equal(last.type === 'error' ? last.errorType : '', 'upstream_incomplete', name);
    assert.ok(!events.some((e) => e.type === 'finish'), name);
  }
});
