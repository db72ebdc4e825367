// The guardrail step's helpers (src/access/guard.ts outside its verdict code) as a client and the
// trail see their results, with real compiled guardrails and no gateway, so a mutant they kill
// costs about a second: how a giant stream delta is cut for the output guard (never inside a
// surrogate pair, nothing lost, nothing added), which guardrail lists need a stream guard or rule
// out streaming, and how a redaction is carried over to a stored copy of the same content.
// The verdicts themselves go through the real gateway in test/mutation-access.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamPieces, hasOutputWebhook, chatStreamGuard, sameRedactions, guardrailsOf, redactForReview, recordStreamFindings, guardChatOutput } from '../src/access/guard.ts';
import type { AccessRuntime } from '../src/access/runtime-view.ts';
import { compileGuardrail } from '../src/guardrails/engine.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, setFor } from '../src/policy/compile.ts';
import { Scrubber } from '../src/credentials/scrub.ts';
import { clipAfterScrub } from '../src/access/egress.ts';
import type { Identity } from '../src/identity/types.ts';
import { doc, yaml } from './helpers/config-docs.ts';
import type { ChatResult, StreamEvent } from '../src/providers/types.ts';

const PIECE = 16 * 1024;

const textOf = (evs: StreamEvent[]): string => evs.map((e) => (e.type === 'text' ? e.text : e.type === 'tool_args' ? e.delta : '')).join('');

test('a stream delta up to 16 KiB reaches the output guard whole; a longer one in 16 KiB pieces that join back to it exactly', () => {
  const small: StreamEvent = { type: 'text', text: 'x'.repeat(PIECE) };
  assert.deepEqual(streamPieces(small), [small]);
  assert.equal(streamPieces(small)[0], small, 'the event itself, not a copy');
  const big = 'abcdefghij'.repeat(4000); // 40,000 characters
  const pieces = streamPieces({ type: 'text', text: big });
  assert.deepEqual(pieces.map((p) => [p.type, textOf([p]).length]), [['text', PIECE], ['text', PIECE], ['text', 40_000 - 2 * PIECE]]);
  assert.equal(textOf(pieces), big);
  const one = streamPieces({ type: 'text', text: 'y'.repeat(PIECE + 1) });
  assert.deepEqual(one.map((p) => textOf([p]).length), [PIECE, 1]);
  // Tool-call arguments keep their type and index.
  const args = streamPieces({ type: 'tool_args', index: 3, delta: '{"a":"'.concat('z'.repeat(PIECE), '"}') });
  assert.deepEqual(args.map((p) => [p.type, p.type === 'tool_args' ? p.index : -1]), [['tool_args', 3], ['tool_args', 3]]);
  assert.equal(textOf(args), '{"a":"'.concat('z'.repeat(PIECE), '"}'));
  // Events without text pass as they are.
  for (const ev of [{ type: 'finish', reason: 'stop' }, { type: 'tool_start', index: 0, id: 'c1', name: 'f' }] as StreamEvent[]) assert.deepEqual(streamPieces(ev), [ev]);
});

test('a piece never ends inside a surrogate pair: an emoji on the 16 KiB boundary goes whole to the next piece', () => {
  const s = `${'a'.repeat(PIECE - 1)}😀${'b'.repeat(10)}`;
  const pieces = streamPieces({ type: 'text', text: s });
  assert.deepEqual(pieces.map((p) => textOf([p]).length), [PIECE - 1, 12]);
  assert.ok(textOf([pieces[1]]).startsWith('😀'));
  assert.equal(textOf(pieces), s);
  for (const p of pieces) assert.ok(textOf([p]).isWellFormed(), 'each piece is well-formed UTF-16');
  // An emoji that ends exactly on the boundary is not moved.
  const t = `${'a'.repeat(PIECE - 2)}😀${'b'.repeat(5)}`;
  assert.deepEqual(streamPieces({ type: 'text', text: t }).map((p) => textOf([p]).length), [PIECE, 5]);
  // The first and the last high surrogates (U+10000 and U+10FFFF) on the boundary move whole too.
  for (const pair of ['\u{10000}', '\u{10FFFF}']) {
    const v = `${'a'.repeat(PIECE - 1)}${pair}b`;
    assert.deepEqual(streamPieces({ type: 'text', text: v }).map((p) => textOf([p])), ['a'.repeat(PIECE - 1), `${pair}b`], `U+${pair.codePointAt(0)!.toString(16)}`);
  }
  // A provider may cut a pair between two deltas: a long delta that ends in half of one keeps it,
  // in its last piece (nothing lost, and the cut never loops on the lone half).
  const cut = `${'c'.repeat(PIECE)}\ud83d`;
  assert.deepEqual(streamPieces({ type: 'text', text: cut }).map((p) => textOf([p])), ['c'.repeat(PIECE), '\ud83d']);
  // Many pieces with emoji everywhere: still lossless and well-formed.
  const u = '😀x'.repeat(30_000);
  const many = streamPieces({ type: 'text', text: u });
  assert.equal(textOf(many), u);
  assert.ok(many.every((p) => textOf([p]).isWellFormed() && textOf([p]).length <= PIECE));
});

test('which guardrails watch a stream: only output ones get a stream guard, and only an output webhook rules out streaming', () => {
  const inputOnly = compileGuardrail('in', { on: ['input'], keywords: ['falcon'], action: 'block' });
  const output = compileGuardrail('out', { on: ['output'], keywords: ['falcon'], action: 'redact' });
  const hookIn = compileGuardrail('hook-in', { on: ['input'], action: 'block', webhook: { url: 'http://127.0.0.1:9/check' } });
  const hookOut = compileGuardrail('hook-out', { on: ['output'], action: 'block', webhook: { url: 'http://127.0.0.1:9/check' } });
  assert.equal(chatStreamGuard([]), null);
  assert.equal(chatStreamGuard([inputOnly, hookIn]), null);
  const g = chatStreamGuard([inputOnly, output]);
  assert.ok(g);
  // The guard it makes is the output one: it redacts what the stream says.
  const shown = [...g.push({ type: 'text', text: 'about falcon and more' }).events, ...g.end().events];
  assert.doesNotMatch(textOf(shown), /falcon/);
  assert.match(textOf(shown), /about .* and more/);
  assert.equal(hasOutputWebhook([]), false);
  assert.equal(hasOutputWebhook([output, hookIn]), false);
  assert.equal(hasOutputWebhook([inputOnly, hookOut]), true);
  assert.equal(hasOutputWebhook([hookOut, inputOnly]), true);
});

test('a redaction made on one copy of content is made on another copy of it, untouched text stays, and nothing changed is the same object', () => {
  const value = { input: [{ role: 'user', content: 'mail jane@example.com please' }, { role: 'user', content: 'hello' }] };
  const before = ['mail jane@example.com please', 'hello'];
  const after = ['mail [REDACTED:email] please', 'hello'];
  const out = sameRedactions(value, before, after);
  assert.deepEqual(out, { input: [{ role: 'user', content: 'mail [REDACTED:email] please' }, { role: 'user', content: 'hello' }] });
  assert.equal(value.input[0].content, 'mail jane@example.com please', 'the input is not modified');
  assert.equal(sameRedactions(value, before, before), value, 'the same scan result: the same object');
  assert.equal(sameRedactions(value, before, [...before]), value, 'equal texts: the same object');
  // A leaf the scan dropped (undefined) is not a redaction to copy, nor does it undo the redaction
  // of another copy of the same text.
  assert.equal(sameRedactions(value, ['hello'], []), value);
  assert.deepEqual(sameRedactions(value, [before[0], before[0]], [after[0]]).input.map((m) => m.content), [after[0], 'hello']);
  // Every copy of a redacted text is redacted.
  const twice = { a: 'mail jane@example.com please', b: ['mail jane@example.com please'] };
  assert.deepEqual(sameRedactions(twice, before, after), { a: 'mail [REDACTED:email] please', b: ['mail [REDACTED:email] please'] });
});

// Which guardrails a request runs, what a reviewer of a held call is shown, and the evidence of a
// stream's findings (src/access/guard.ts lines 1-60 and 167-172), with a real compiled config.
const config = parseConfigTexts([{ file: 'aam.yaml', text: yaml(
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'chat', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
  doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', team: 'finance', owner: 'ana' }),
  doc('Agent', 'plain', { workload: 'spiffe://prod/agent/plain', team: 'ops' }),
  doc('Guardrail', 'no-falcon', { on: ['output'], keywords: ['falcon'], action: 'redact' }),
  doc('Guardrail', 'no-eagle', { on: ['input'], keywords: ['eagle'], action: 'block' }),
  doc('Guardrail', 'no-owl', { on: ['output'], keywords: ['owl'], action: 'flag' }),
  doc('Guardrail', 'args-schema', { on: ['output'], json_schema: { type: 'object', required: ['limit'] }, action: 'block' }),
  doc('AgentPolicy', 'analyst-guarded', { identity: { agent: 'analyst' }, models: { allow: ['chat'] }, guardrails: ['no-falcon', 'no-eagle'] }),
  doc('AgentPolicy', 'plain-models', { identity: { agent: 'plain' }, models: { allow: ['chat'] } }),
) }]);

const SECRET = 'sk-live-4f9a8b7c6d5e4f3a2b1c';

function accessRuntime() {
  const events: Array<Record<string, any>> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  const scrubber = new Scrubber([{ name: 'openai-key', value: SECRET }]);
  const rt = {
    compiled: {
      policies: compilePolicies(config, 'v-guard'),
      guardrails: new Map([...config.guardrails.values()].map((g) => [g.name, compileGuardrail(g.name, g.spec)] as const)),
      guardrailLists: { merged: new WeakMap(), byNames: new WeakMap() },
    },
    audit: { record: (ev: Record<string, unknown>) => { events.push(ev); } },
    // The runtime's scrub (src/runtime.ts): the vault's scrubber, then the clip.
    scrub: (text: string, max?: number) => { const t = scrubber.scrub(text).text; return max === undefined ? t : clipAfterScrub(t, max); },
  };
  return { rt: rt as unknown as AccessRuntime, events };
}

const names = (gs: readonly { name: string }[]): string[] => gs.map((g) => g.name);

test('a request runs its policies\' guardrails, then the route\'s new ones, each once and known ones only; none is an empty list', () => {
  const { rt } = accessRuntime();
  const policies = rt.compiled.policies;
  const analyst: Identity = { agent: policies.agents.get('analyst')!, method: 'virtual_key', keyId: 'k1' };
  const plain: Identity = { agent: policies.agents.get('plain')!, method: 'virtual_key', keyId: 'k2' };
  assert.deepEqual(names(guardrailsOf(rt, analyst)), ['no-falcon', 'no-eagle']);
  assert.deepEqual(names(guardrailsOf(rt, analyst, ['no-owl', 'no-falcon'])), ['no-falcon', 'no-eagle', 'no-owl']);
  assert.deepEqual(names(guardrailsOf(rt, analyst, ['no-owl'], setFor(analyst.agent, policies))), ['no-falcon', 'no-eagle', 'no-owl']);
  assert.deepEqual(names(guardrailsOf(rt, plain)), []);
  assert.deepEqual(names(guardrailsOf(rt, plain, ['no-owl'])), ['no-owl']);
  // A route naming a guardrail the config does not have adds nothing (validation reports it).
  assert.deepEqual(names(guardrailsOf(rt, plain, ['gone'])), []);
  // Resolved once per config: the next request with the same lists allocates nothing.
  const route = ['no-owl'];
  assert.equal(guardrailsOf(rt, analyst, route), guardrailsOf(rt, analyst, route));
  assert.equal(guardrailsOf(rt, analyst), guardrailsOf(rt, analyst));
});

test('a held call\'s arguments as reviewers see them: PII and secrets redacted, credentials scrubbed, clipped at 64 KiB', () => {
  const { rt } = accessRuntime();
  const shown = redactForReview(rt, { to: 'jane@example.com', phone: '+1 415 555 0100', key: SECRET, note: 'ship it' });
  assert.doesNotMatch(shown, /jane@example\.com|555 0100|4f9a8b7c/);
  assert.match(shown, /"note":"ship it"/);
  assert.match(shown, /REDACTED/);
  // Every PII detector (card, SSN, IBAN, IP address) and the secrets one (tokens aam holds no credential for).
  const pii = { card: '4111 1111 1111 1111', ssn: '123-45-6789', iban: 'DE89370400440532013000', ip: '203.0.113.42', aws: 'AKIAIOSFODNN7EXAMPLE', github: 'ghp_abcdefghijklmnopqrstuvwxyz0123456789' };
  const seen = redactForReview(rt, pii);
  for (const [k, v] of Object.entries(pii)) assert.ok(!seen.includes(v), `${k} redacted: ${seen}`);
  // Secrets a PII detector does not know are scrubbed as credentials.
  assert.match(redactForReview(rt, { text: `use ${SECRET}x` }), /\[REDACTED:openai-key\]/);
  assert.equal(redactForReview(rt, undefined), '{}');
  assert.equal(redactForReview(rt, null), '{}');
  const big = redactForReview(rt, { blob: 'a'.repeat(100_000) });
  assert.ok(big.length <= 64 * 1024 + 64 && big.length >= 64 * 1024 - 64, `clipped near 64 KiB: ${big.length}`);
  assert.ok(big.startsWith('{"blob":"aaa'));
});

test('a stream\'s findings are evidence once, with guardrail, category and count, never the text; a clean stream records nothing', () => {
  const { rt, events } = accessRuntime();
  const policies = rt.compiled.policies;
  const analyst: Identity = { agent: policies.agents.get('analyst')!, method: 'virtual_key', keyId: 'k1' };
  const at = { requestId: 'req-9', traceId: 'b'.repeat(32) };
  const gs = guardrailsOf(rt, analyst, ['no-owl']);
  const clean = chatStreamGuard(gs)!;
  clean.push({ type: 'text', text: 'nothing to see' });
  clean.end();
  recordStreamFindings(rt, at, analyst, clean);
  assert.equal(events.length, 0);
  const g = chatStreamGuard(gs)!;
  g.push({ type: 'text', text: 'a falcon, an owl and a falcon' });
  g.end();
  recordStreamFindings(rt, at, analyst, g);
  assert.equal(events.length, 1);
  const ev = events[0];
  assert.deepEqual({ type: ev.type, request_id: ev.request_id, trace_id: ev.trace_id }, { type: 'guardrail', request_id: 'req-9', trace_id: 'b'.repeat(32) });
  assert.deepEqual([ev.identity.agent, ev.identity.team, ev.identity.owner, ev.identity.key_id, ev.identity.method], ['analyst', 'finance', 'ana', 'k1', 'virtual_key']);
  assert.deepEqual({ direction: ev.guardrail.direction, where: ev.guardrail.where, verdict: ev.guardrail.verdict }, { direction: 'output', where: 'stream', verdict: 'redact_or_flag' });
  assert.deepEqual(ev.guardrail.findings.toSorted((a: { guardrail: string }, b: { guardrail: string }) => a.guardrail.localeCompare(b.guardrail)),
    [{ guardrail: 'no-falcon', category: 'keyword', count: 2 }, { guardrail: 'no-owl', category: 'keyword', count: 1 }]);
  assert.doesNotMatch(JSON.stringify(events), /falcon,|an owl/);
  // A block is recorded even when the blocking guardrail left no finding in this guard.
  recordStreamFindings(rt, at, analyst, clean, 'no-falcon');
  assert.equal(events.length, 2);
  assert.equal(events[1].guardrail.verdict, 'block');
  assert.deepEqual(events[1].guardrail.findings, []);
  // No audit trail (aam validate, AAM_AUDIT=off): nothing recorded, nothing thrown.
  recordStreamFindings({ ...rt, audit: null } as AccessRuntime, at, analyst, g);
});

test('a complete chat answer under output guardrails: redacted in its text and tool-call arguments, everything else kept; a clean one is the same object', async () => {
  const { rt, events } = accessRuntime();
  const analyst: Identity = { agent: rt.compiled.policies.agents.get('analyst')!, method: 'virtual_key', keyId: 'k1' };
  const at = { requestId: 'req-out', traceId: 'c'.repeat(32) };
  // A JSON Schema guardrail checks tool payloads only: a chat answer is content, never checked against it.
  const gs = guardrailsOf(rt, analyst, ['no-owl', 'args-schema']);
  const answer = (text: string, args: string): ChatResult => ({
    id: 'chatcmpl-1', model: 'chat', created: 1, text, finishReason: 'tool_calls', usage: { inputTokens: 3, outputTokens: 4 },
    toolCalls: [{ id: 'call-1', type: 'function', function: { name: 'note', arguments: args } }],
  });
  const seen = answer('a falcon flew by', '{"bird":"falcon","n":1}');
  const out = await guardChatOutput(rt, at, analyst, gs, seen);
  assert.deepEqual(out, answer('a [KEYWORD] flew by', '{"bird":"[KEYWORD]","n":1}'));
  assert.deepEqual(seen, answer('a falcon flew by', '{"bird":"falcon","n":1}'), 'the provider\'s answer itself is not edited');
  assert.equal(events.length, 1);
  assert.deepEqual([events[0].request_id, events[0].guardrail.direction, events[0].guardrail.where, events[0].guardrail.verdict], ['req-out', 'output', 'completion', 'redact']);
  // Clean: handed back as it came (the gateway then forwards the provider's own bytes), and no evidence.
  const clean = answer('a sparrow flew by', '{"bird":"sparrow"}');
  assert.equal(await guardChatOutput(rt, at, analyst, gs, clean), clean);
  assert.equal(events.length, 1);
});
