// The access path's small parts as a caller and the audit trail see them, with no gateway, so a
// mutant they kill costs about a second: the A2A delegation header (a forged, edited, expired or
// borrowed one is refused), the JSON depth check at the door, credential scrubbing of stream
// events, and per-rule call limits (rate and call budgets). The same behaviour through a gateway:
// a2a-callee, ops-json-depth, tools-budget, a2a-limits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, hkdfSync } from 'node:crypto';
import { DELEGATION_HEADER, chainName, delegate, delegationEvidence, encodeDelegation, outgoingTraceparent, verifyDelegation, type Delegation } from '../src/access/delegation.ts';
import { jsonTooDeep, MAX_JSON_DEPTH } from '../src/access/json-depth.ts';
import { createEventScrubber } from '../src/access/scrub-events.ts';
import { admitRuleCall, UNCOUNTED, type LimitedRule, type RuleRefusal } from '../src/access/rule-limits.ts';
import { AamError } from '../src/access/errors.ts';
import type { AccessRuntime } from '../src/access/runtime-view.ts';
import { MasterKey } from '../src/credentials/master-key.ts';
import { Scrubber } from '../src/credentials/scrub.ts';
import { BudgetLedger, EmbeddedLimiter, RateLimiter } from '../src/policy/limits.ts';
import type { AdmitResult, Limiter } from '../src/store/types.ts';
import type { AgentRecord, Identity } from '../src/identity/types.ts';
import type { StreamEvent } from '../src/providers/types.ts';

const agent = (name: string, spiffeId = `spiffe://prod/agent/${name || 'anon'}`): AgentRecord => ({ name, spiffeId, trustDomain: 'prod', labels: {} });
const who = (name: string, keyId?: string): Identity => ({ agent: agent(name), method: keyId ? 'virtual_key' : 'jwt_svid', keyId });

function thrown(fn: () => unknown): AamError {
  try { fn(); } catch (e) { assert.ok(e instanceof AamError, `an AamError, not ${String(e)}`); return e; }
  assert.fail('expected a refusal');
}

// ---- A2A delegation ----

const MASTER = Buffer.alloc(32, 7);
/** The vault as delegation.ts uses it: the real master key's purpose-bound subkeys. */
const runtimeWith = (master: Buffer) => {
  const key = new MasterKey(master, 'env');
  return { vault: { subkey: (info: string) => key.derive(info) } } as unknown as AccessRuntime;
};
const rt = runtimeWith(MASTER);

/** The signature computed here, not by delegation.ts: HMAC-SHA256 under HKDF(master, "aam a2a delegation hmac v1"). */
function signed(payloadJson: string, master = MASTER): string {
  const payload = Buffer.from(payloadJson).toString('base64url');
  const key = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'aam a2a delegation hmac v1', 32));
  return `v1.${payload}.${createHmac('sha256', key).update(`v1.${payload}`).digest('base64url')}`;
}

const NOW = Date.UTC(2026, 11, 5, 8, 0, 0);
const HOUR = 60 * 60 * 1000;

test('a delegation is signed over its content, bound to the callee, and extends the chain hop by hop', () => {
  const alice = who('alice'), bob = who('bob');
  let ids = 0;
  const d = delegate(undefined, alice, 'bob', 'req_a1', { traceId: () => { ids++; return 'f00d'; } }, NOW);
  assert.deepEqual(d, { id: 'dlg_f00d', hop: 1, chain: ['alice', 'bob'], parent: 'req_a1', callee: 'bob', exp: NOW + HOUR });
  const header = encodeDelegation(rt, d);
  // The wire form is exactly what an independent HMAC of the same payload gives.
  assert.equal(header, signed(JSON.stringify(d)));
  assert.equal(DELEGATION_HEADER, 'x-aam-delegation');
  assert.deepEqual(verifyDelegation(rt, header, bob, NOW), d);
  assert.deepEqual(verifyDelegation(rt, header, bob, NOW + HOUR), d, 'valid up to its expiry');
  assert.equal(verifyDelegation(rt, undefined, bob, NOW), undefined, 'no header: no delegation');
  // Bob calls Carol while serving it: same chain, next hop, no new id.
  const d2 = delegate(d, bob, 'carol', 'req_b1', { traceId: () => { ids++; return 'beef'; } }, NOW + 5);
  assert.deepEqual(d2, { id: 'dlg_f00d', hop: 2, chain: ['alice', 'bob', 'carol'], parent: 'req_b1', callee: 'carol', exp: NOW + 5 + HOUR });
  assert.equal(ids, 1, 'a new id only for a new chain');
  assert.deepEqual(d.chain, ['alice', 'bob'], 'the caller\'s delegation is not changed');
  assert.deepEqual(verifyDelegation(rt, encodeDelegation(rt, d2), who('carol'), NOW), d2);
  // An unregistered caller is named by its SPIFFE ID.
  const anon: Identity = { agent: agent('', 'spiffe://prod/workload/x'), method: 'jwt_svid' };
  assert.equal(chainName(anon), 'spiffe://prod/workload/x');
  assert.deepEqual(delegate(undefined, anon, 'bob', 'r', { traceId: () => '1' }, NOW).chain, ['spiffe://prod/workload/x', 'bob']);
  assert.equal(chainName(bob), 'bob');
  // Evidence: the chain id, hop, parent request and a copy of the chain.
  const ev = delegationEvidence(d2);
  assert.deepEqual(ev, { id: 'dlg_f00d', hop: 2, parent_request_id: 'req_b1', chain: ['alice', 'bob', 'carol'] });
  ev.chain.push('mallory');
  assert.deepEqual(d2.chain, ['alice', 'bob', 'carol']);
});

test('a forged, edited, expired, malformed or borrowed delegation is refused, saying what to send instead', () => {
  const bob = who('bob');
  const d: Delegation = delegate(undefined, who('alice'), 'bob', 'req_a1', { traceId: () => 'f00d' }, NOW);
  const header = encodeDelegation(rt, d);
  const refusal = (h: string | string[], id = bob, now = NOW) => thrown(() => verifyDelegation(rt, h, id, now));
  const bad = (h: string | string[], why: RegExp, id = bob, now = NOW) => {
    const e = refusal(h, id, now);
    assert.deepEqual([e.status, e.code], [401, 'invalid_delegation'], String(h).slice(0, 60));
    assert.match(e.message, why);
    assert.match(e.message, /^x-aam-delegation .*; send the header aam gave you with the A2A call you are serving, unchanged, or none$/);
  };
  const [v, payload, sig] = header.split('.');
  // Forged: signed under another master key (another aam), or with no key at all.
  bad(signed(JSON.stringify(d), Buffer.alloc(32, 8)), /has a bad signature \(it was not issued by this aam, or was edited\)/);
  bad(`${v}.${payload}.${createHmac('sha256', '').update(`v1.${payload}`).digest('base64url')}`, /bad signature/);
  // Edited: one more hop, another callee, a later expiry, each with the old signature.
  for (const edit of [{ hop: 1 + d.hop }, { callee: 'mallory' }, { exp: d.exp + HOUR }, { chain: ['bob'] }]) {
    bad(`v1.${Buffer.from(JSON.stringify({ ...d, ...edit })).toString('base64url')}.${sig}`, /bad signature/);
  }
  // A signature changed in one character, cut short, or made longer.
  const flip = sig[5] === 'A' ? 'B' : 'A';
  bad(`${v}.${payload}.${sig.slice(0, 5)}${flip}${sig.slice(6)}`, /bad signature/);
  bad(`${v}.${payload}.${sig.slice(0, -1)}`, /bad signature/);
  bad(`${v}.${payload}.${sig}A`, /bad signature/);
  // Malformed: another version, missing parts, a signed payload that is not JSON.
  bad(`v2.${payload}.${sig}`, /is malformed/);
  bad(`v1.${payload}`, /is malformed/);
  bad(`v1..${sig}`, /is malformed/);
  bad('', /is malformed/);
  bad(signed('{not json'), /is malformed/);
  // Sent twice, or too long to be one aam issued (4 KiB is the most).
  bad([header, header], /must be sent once, at most 4 KiB/);
  bad(`v1.${'a'.repeat(4093)}`, /is malformed/); // 4096 characters: read
  bad(`v1.${'a'.repeat(4094)}`, /must be sent once, at most 4 KiB/);
  // Expired: a replay after the call it was made for is long over; no expiry at all is expired.
  bad(header, /has expired/, bob, NOW + HOUR + 1);
  bad(signed(JSON.stringify({ ...d, exp: undefined })), /has expired/);
  bad(signed(JSON.stringify({ ...d, exp: String(d.exp) })), /has expired/);
  // Borrowed: another agent presenting Bob's delegation (a replay by someone it was not given to).
  const e = refusal(header, who('mallory'));
  assert.deepEqual([e.status, e.code], [403, 'invalid_delegation']);
  assert.equal(e.message, 'x-aam-delegation was issued to agent "bob", not to mallory; an agent may only forward the delegation it was given');
  // Each aam verifies with its own master key: a second one refuses the first one's headers.
  assert.throws(() => verifyDelegation(runtimeWith(Buffer.alloc(32, 9)), header, bob, NOW), /bad signature/);
  assert.deepEqual(verifyDelegation(rt, header, bob, NOW), d, 'and the first still accepts them');
});

test('the delegation header\'s bytes for a fixed input are pinned (the callee side of another aam version verifies them)', () => {
  const d: Delegation = { id: 'dlg_f00d', hop: 1, chain: ['alice', 'bob'], parent: 'req_a1', callee: 'bob', exp: NOW + HOUR };
  const pinned = 'v1.eyJpZCI6ImRsZ19mMDBkIiwiaG9wIjoxLCJjaGFpbiI6WyJhbGljZSIsImJvYiJdLCJwYXJlbnQiOiJyZXFfYTEiLCJjYWxsZWUiOiJib2IiLCJleHAiOjE3OTY0NjEyMDAwMDB9.Qw1sT3pg-Cb5vgW3qcoNLBUsbf186nXZAKSyH90O0F8';
  assert.equal(encodeDelegation(rt, d), pinned);
  // Escapes and non-ASCII names (UTF-8 in the payload), a long chain, a hop past 1.
  const odd: Delegation = { id: 'dlg_0123456789abcdef', hop: 3, chain: ['spiffe://prod/workload/x', 'ré"\\sumé', '\u2028line', 'carol'], parent: 'req_b2', callee: 'carol', exp: 1 };
  assert.equal(encodeDelegation(rt, odd), 'v1.eyJpZCI6ImRsZ18wMTIzNDU2Nzg5YWJjZGVmIiwiaG9wIjozLCJjaGFpbiI6WyJzcGlmZmU6Ly9wcm9kL3dvcmtsb2FkL3giLCJyw6lcIlxcc3Vtw6kiLCLigKhsaW5lIiwiY2Fyb2wiXSwicGFyZW50IjoicmVxX2IyIiwiY2FsbGVlIjoiY2Fyb2wiLCJleHAiOjF9.gLxDdJHQqSW4eTbx5WuGy23tkRMv9nWmgUi638LnaXk');
  // Made again and again (no state carried from one header to the next), and by a second aam's key its own.
  assert.equal(encodeDelegation(rt, d), pinned);
  assert.equal(encodeDelegation(runtimeWith(Buffer.alloc(32, 9)), d), signed(JSON.stringify(d), Buffer.alloc(32, 9)));
  assert.equal(encodeDelegation(rt, d), pinned);
  // A chain too long for any scratch space a signer keeps: still the independent HMAC's bytes, and verified.
  const long: Delegation = { ...d, chain: Array.from({ length: 200 }, (_, i) => `agent-${i}-${'x'.repeat(40)}`).concat('bob') };
  const header = encodeDelegation(rt, long);
  assert.equal(header, signed(JSON.stringify(long)));
  assert.ok(header.length > 8192);
  assert.equal(encodeDelegation(rt, d), pinned);
  // Payloads of every length around the signer's scratch sizes (its JSON and inner blocks), each
  // made after one of another length: each is the independent HMAC's bytes of its own payload.
  for (let n = 0; n < 400; n += 7) {
    for (const c of [`c${'é'.repeat(n >> 1)}`, `c${'y'.repeat(n)}`]) {
      const x: Delegation = { ...d, chain: ['alice', c], callee: c };
      assert.equal(encodeDelegation(rt, x), signed(JSON.stringify(x)), `chain member of ${c.length} characters`);
      assert.equal(encodeDelegation(rt, d), pinned);
    }
  }
  // A payload with a character outside Latin-1 is signed as its UTF-8 bytes: no two payloads share a signature.
  assert.throws(() => verifyDelegation(rt, `v1.${'\u0165'}${pinned.slice(4)}`, who('bob'), NOW), /bad signature/);
  assert.throws(() => verifyDelegation(rt, `v1.e${'\u0179'}${pinned.slice(5)}`, who('bob'), NOW), /bad signature/);
});

test('an upstream call carries the request span\'s traceparent, or a new span in the request\'s trace', () => {
  assert.equal(outgoingTraceparent({ traceparent: () => '00-aa-bb-01' }, 'c'.repeat(32), { spanId: () => 'x' }), '00-aa-bb-01');
  assert.equal(outgoingTraceparent(undefined, 'c'.repeat(32), { spanId: () => 'd'.repeat(16) }), `00-${'c'.repeat(32)}-${'d'.repeat(16)}-01`);
});

// ---- JSON depth at the door ----

const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n);

test('a body nested deeper than 128 levels is found, at the bracket that went too deep and under its top-level field', () => {
  assert.equal(MAX_JSON_DEPTH, 128);
  assert.equal(jsonTooDeep(Buffer.from(nest(128))), null);
  assert.deepEqual(jsonTooDeep(Buffer.from(nest(129))), { offset: 128, field: null });
  const body = `{"model":"m","response_format":${nest(200)}}`;
  assert.deepEqual(jsonTooDeep(Buffer.from(body)), { offset: body.indexOf('[') + 127, field: 'response_format' });
  // Leading whitespace of any kind: still an object body.
  assert.equal(jsonTooDeep(Buffer.from(` \n\r\t${body}`))?.field, 'response_format');
  // The field is the top-level key: a key deeper down does not replace it.
  assert.equal(jsonTooDeep(Buffer.from(`{"outer":{"inner":${nest(200)}}}`))?.field, 'outer');
  assert.equal(jsonTooDeep(Buffer.from(`{"a\\"b":${nest(200)}}`))?.field, 'a"b');
  // Brackets and escaped quotes inside strings are text, not nesting; an even run of backslashes ends the string.
  assert.equal(jsonTooDeep(Buffer.from(`{"t":"${'['.repeat(300)}","u":"\\"${'{'.repeat(300)}"}`)), null);
  assert.equal(jsonTooDeep(Buffer.from(`{"t":"x\\\\","u":${nest(200)}}`))?.field, 'u');
  assert.equal(jsonTooDeep(Buffer.from(`{"t":"x\\\\\\"${nest(200)}"}`)), null);
  // Closed levels are given back: many shallow siblings are fine.
  assert.equal(jsonTooDeep(Buffer.from(`[${'[[]],'.repeat(500)}{}]`), 3), null);
  assert.equal(jsonTooDeep(Buffer.from(`[${'{"a":{}},'.repeat(300)}{}]`), 3), null);
  assert.deepEqual(jsonTooDeep(Buffer.from('[{"a":[[1]]}]'), 3), { offset: 7, field: null });
  // An unterminated string is left to JSON.parse.
  assert.equal(jsonTooDeep(Buffer.from(`{"a":"${nest(200)}`)), null);
  // A key too long to name (over 200 bytes with its quotes) or not a valid string is not named.
  assert.equal(jsonTooDeep(Buffer.from(`{"${'k'.repeat(199)}":${nest(200)}}`))?.field, 'k'.repeat(199));
  assert.deepEqual(jsonTooDeep(Buffer.from(`{"${'k'.repeat(200)}":${nest(200)}}`))?.field, null);
  assert.deepEqual(jsonTooDeep(Buffer.from(`{"a\u0001":${nest(200)}}`))?.field, null);
  assert.deepEqual(jsonTooDeep(Buffer.from(`{${nest(200)}}`))?.field, null, 'no key seen yet');
  assert.deepEqual(jsonTooDeep(Buffer.from(`["a",${nest(200)}]`)), { offset: 5 + 127, field: null }, 'an array body has no fields');
});

// ---- Credential scrubbing of stream events ----

const SECRET = 'sk-live-4f9a8b7c6d5e4f3a2b1c';
const scrubber = new Scrubber([{ name: 'openai-key', value: SECRET }]);

function scrubEvents(evs: StreamEvent[]): StreamEvent[] {
  const s = createEventScrubber(() => scrubber.stream());
  const out = [...evs.flatMap((e) => s.push(e)), ...s.end()];
  // Nothing held back means no event, not an empty one (nor anything that is not an event).
  for (const e of out) {
    assert.ok(typeof e === 'object' && typeof e.type === 'string', `not an event: ${JSON.stringify(e)}`);
    assert.ok(!(e.type === 'text' && e.text === '') && !(e.type === 'tool_args' && e.delta === ''), `an empty ${e.type} event`);
  }
  return out;
}

/** Text and each tool call's arguments as the agent reads them, joined. */
function read(evs: StreamEvent[]): { text: string; args: Record<number, string>; order: string[] } {
  const args: Record<number, string> = {};
  let text = '';
  for (const e of evs) {
    if (e.type === 'text') text += e.text;
    if (e.type === 'tool_args') args[e.index] = (args[e.index] ?? '') + e.delta;
  }
  // Event kinds in order, a run of one kind once (how text is cut into deltas is the scrubber's business).
  const order = evs.map((e) => (e.type === 'tool_args' ? `tool_args:${e.index}` : e.type)).filter((k, i, all) => k !== all[i - 1]);
  return { text, args, order };
}

test('a secret split across text deltas or across one tool call\'s argument deltas is redacted; nothing else is lost', () => {
  const [a, b] = [SECRET.slice(0, 10), SECRET.slice(10)];
  const out = scrubEvents([{ type: 'text', text: `key ${a}` }, { type: 'text', text: `${b} end` }, { type: 'finish', reason: 'stop' }]);
  const r = read(out);
  assert.equal(r.text, 'key [REDACTED:openai-key] end');
  assert.equal(r.order.at(-1), 'finish', 'held text is released before the finish event');
  // Two tool calls streaming at once: each its own stream, a secret split inside one of them.
  const tools = scrubEvents([
    { type: 'tool_start', index: 0, id: 'c0', name: 'f' },
    { type: 'tool_args', index: 0, delta: `{"k":"${a}` },
    { type: 'tool_start', index: 1, id: 'c1', name: 'g' },
    { type: 'tool_args', index: 1, delta: '{"x":"' },
    { type: 'tool_args', index: 0, delta: `${b}"}` },
    { type: 'tool_args', index: 1, delta: `${a}"}` },
  ]);
  const t = read(tools);
  assert.deepEqual(t.args, { 0: '{"k":"[REDACTED:openai-key]"}', 1: `{"x":"${a}"}` });
  assert.doesNotMatch(JSON.stringify(tools), /4f9a8b7c6d5e4f3a2b1c/);
  assert.deepEqual(t.order.slice(0, 1), ['tool_start']);
  // A secret in text before a tool call starts: the text stream ends at the tool call.
  const mixed = scrubEvents([{ type: 'text', text: `see ${a}` }, { type: 'tool_start', index: 0, id: 'c0', name: 'f' }, { type: 'text', text: b }]);
  assert.equal(read(mixed).text, `see ${a}${b}`, 'the pieces on both sides of the tool call are two texts, neither a secret alone');
  assert.deepEqual(read(mixed).order, ['text', 'tool_start', 'text']);
  // A tool call starting does not end another call's argument stream: its held piece still completes.
  const held = scrubEvents([
    { type: 'tool_args', index: 0, delta: a }, { type: 'tool_start', index: 1, id: 'c1', name: 'g' }, { type: 'tool_args', index: 0, delta: b },
  ]);
  assert.deepEqual(read(held).args, { 0: '[REDACTED:openai-key]' });
  assert.deepEqual(read(held).order, ['tool_start', 'tool_args:0']);
  // Other events end every stream: what was held comes out first, then the event itself.
  const ended = scrubEvents([{ type: 'text', text: 'x sk-live' }, { type: 'tool_args', index: 2, delta: 'y sk-li' }, { type: 'finish', reason: 'stop' }, { type: 'text', text: '-4f9a8b7c6d5e4f3a2b1c' }]);
  assert.deepEqual(read(ended).order, ['text', 'tool_args:2', 'text', 'tool_args:2', 'finish', 'text']);
  assert.deepEqual(read(ended).args, { 2: 'y sk-li' });
  assert.equal(read(ended).text, 'x sk-live-4f9a8b7c6d5e4f3a2b1c'.replace(SECRET, 'sk-live' + SECRET.slice(7)), 'two streams: the halves are not joined');
  // After a finish, a tool call with the same index is a new stream: its split secret is still caught.
  const again = scrubEvents([
    { type: 'tool_args', index: 0, delta: 'first' }, { type: 'finish', reason: 'tool_calls' },
    { type: 'tool_args', index: 0, delta: a }, { type: 'tool_args', index: 0, delta: b },
  ]);
  assert.deepEqual(read(again).args, { 0: 'first[REDACTED:openai-key]' });
  // Text that may still become a secret is held whole; clean text before a tool call ends with nothing held.
  assert.deepEqual(read(scrubEvents([{ type: 'text', text: a }])).text, a);
  assert.deepEqual(createEventScrubber(() => scrubber.stream()).push({ type: 'text', text: a }), []);
  assert.deepEqual(createEventScrubber(() => scrubber.stream()).push({ type: 'tool_args', index: 0, delta: a }), []);
  assert.deepEqual(read(scrubEvents([{ type: 'text', text: 'hello' }, { type: 'tool_start', index: 0, id: 'c0', name: 'f' }])).order, ['text', 'tool_start']);
  // Nothing held, nothing added: an empty end, and clean text passes as it came.
  const s = createEventScrubber(() => scrubber.stream());
  assert.deepEqual(s.end(), []);
  assert.deepEqual(s.push({ type: 'text', text: 'hello' }), [{ type: 'text', text: 'hello' }]);
  assert.deepEqual(s.push({ type: 'finish', reason: 'stop' }), [{ type: 'finish', reason: 'stop' }]);
  assert.deepEqual(s.end(), []);
});

// ---- Per-rule call limits ----

interface Seen { limited: string[] }

function limits(limiter: Limiter = new EmbeddedLimiter(new BudgetLedger(), new RateLimiter())) {
  const seen: Seen = { limited: [] };
  const r = { limiter, metrics: { limited: (code: string, name: string) => seen.limited.push(`${code} ${name}`) } } as unknown as AccessRuntime;
  return { rt: r, seen };
}

class Refused extends Error { r: RuleRefusal; constructor(r: RuleRefusal) { super(r.message); this.r = r; } }
const refuse = (r: RuleRefusal) => new Refused(r);
const storeDown = (e: unknown) => new Error(`store down: ${String(e)}`);

const rule = (over: Partial<LimitedRule>): LimitedRule => ({ policy: 'p', index: 1, path: 'tools[1]', rate: null, budget: null, ...over });

function admitNow(l: ReturnType<typeof limits>, id: Identity, r: LimitedRule, plane: 'tool' | 'a2a' = 'tool') {
  const a = admitRuleCall(l.rt, id, r, plane, refuse, storeDown);
  assert.ok(!(a instanceof Promise));
  return a;
}

function refusedBy(fn: () => unknown): RuleRefusal {
  try { fn(); } catch (e) { assert.ok(e instanceof Refused, String(e)); return e.r; }
  assert.fail('expected a refusal');
}

test('a rule\'s rpm holds per agent and per key, per plane, and its refusal names the policy, the rule and when to retry', () => {
  const l = limits();
  const id = who('analyst', 'key_1');
  const r = rule({ rate: { rpm: 2 } });
  assert.equal(admitRuleCall(l.rt, id, rule({}), 'tool', refuse, storeDown), UNCOUNTED, 'no limit: nothing counted');
  admitNow(l, id, r); admitNow(l, id, r);
  const x = refusedBy(() => admitNow(l, id, r));
  assert.equal(x.code, 'rate_limited');
  assert.ok(x.retryAfterSeconds >= 1 && x.retryAfterSeconds <= 60, String(x.retryAfterSeconds));
  assert.deepEqual(x.data, { retry_after_seconds: x.retryAfterSeconds, policy: 'p', rule: 1 });
  // Agent and key are both at the limit: the refusal names one of them.
  assert.match(x.message, new RegExp(`^rate limit exceeded: rpm limit of 2 for tool:p/tools\\[1\\]:(agent:spiffe://prod/agent/analyst|key:key_1) \\(policy p tools\\[1\\]\\); retry after ${x.retryAfterSeconds}s$`));
  assert.deepEqual(l.seen.limited, ['rate_limited analyst']);
  // The same rule on the A2A plane, and another rule, have their own counters.
  admitNow(l, id, r, 'a2a');
  admitNow(l, id, rule({ rate: { rpm: 2 }, index: 2, path: 'tools[2]' }));
  // Another key of the same agent shares the agent's counter; another agent has its own.
  assert.equal(refusedBy(() => admitNow(l, who('analyst', 'key_2'), r)).code, 'rate_limited');
  admitNow(l, who('other', 'key_3'), r);
  // Per key: a second agent behind one key is held by the key's count.
  const k = limits();
  admitNow(k, who('a1', 'shared'), r); admitNow(k, who('a2', 'shared'), r);
  assert.match(refusedBy(() => admitNow(k, who('a3', 'shared'), r)).message, /for tool:p\/tools\[1\]:key:shared /);
  // No metrics sink: still refused.
  const quiet = { ...limits(), rt: { limiter: new EmbeddedLimiter(new BudgetLedger(), new RateLimiter()), metrics: null } as unknown as AccessRuntime, seen: { limited: [] } };
  admitNow(quiet, id, r); admitNow(quiet, id, r);
  assert.equal(refusedBy(() => admitNow(quiet, id, r)).code, 'rate_limited');
});

test('a rule\'s call budget counts forwarded calls once, gives back dropped ones, and says when it resets', () => {
  const l = limits();
  const id = who('analyst', 'key_1');
  const r = rule({ budget: { calls_per_day: 2 } });
  const a = admitNow(l, id, r);
  assert.notEqual(a, UNCOUNTED);
  a.forwarded(); a.forwarded(); a.dropped(); // counted once; a later drop gives nothing back
  const b = admitNow(l, id, r);
  b.dropped(); b.dropped(); b.forwarded(); // given back once; a later forward counts nothing
  admitNow(l, id, r).forwarded();
  const x = refusedBy(() => admitNow(l, id, r));
  const midnight = new Date(); midnight.setUTCHours(24, 0, 0, 0);
  assert.equal(x.code, 'budget_exceeded');
  assert.deepEqual(x.data, { retry_after_seconds: x.retryAfterSeconds, policy: 'p', rule: 1, resets_at: midnight.toISOString() });
  const wait = Math.ceil((midnight.getTime() - Date.now()) / 1000);
  assert.ok(Math.abs(x.retryAfterSeconds - wait) <= 2, `${x.retryAfterSeconds} s to midnight UTC, about ${wait}`);
  assert.equal(x.message, `tool call budget exhausted: policy "p" tools[1].budget allows 2 calls per day for agent:spiffe://prod/agent/analyst, and 2 were made; it will reset at ${midnight.toISOString()}`);
  assert.deepEqual(l.seen.limited, ['budget_exceeded analyst']);
  // A2A calls and monthly budgets say so.
  const m = limits();
  const month = rule({ budget: { calls_per_month: 1 }, path: 'agents[0]', index: 0 });
  admitNow(m, id, month, 'a2a').forwarded();
  const y = refusedBy(() => admitNow(m, id, month, 'a2a'));
  assert.match(y.message, /^A2A call budget exhausted: policy "p" agents\[0\]\.budget allows 1 calls per month for agent:spiffe:\/\/prod\/agent\/analyst, and 1 were made; it will reset at \d{4}-\d\d-01T00:00:00\.000Z$/);
  assert.equal(y.data.rule, 0);
  assert.ok(y.retryAfterSeconds >= 1);
  // A rate and a budget on one rule: both hold.
  const both = limits();
  const rb = rule({ rate: { rpm: 5 }, budget: { calls_per_day: 1 } });
  admitNow(both, id, rb).forwarded();
  assert.equal(refusedBy(() => admitNow(both, id, rb)).code, 'budget_exceeded');
});

test('a budget refusal due now still tells the caller to wait at least a second', () => {
  const now: AdmitResult = { ok: false, code: 'budget_exceeded', key: 'tool:p/tools[1]:agent:x', resetAt: new Date(Date.now() - 5000), spent: 3, limit: 3, period: 'daily' };
  const l = limits({ admit: () => now, settle() {}, release() {} } as unknown as Limiter);
  const x = refusedBy(() => admitNow(l, who('analyst'), rule({ budget: { calls_per_day: 3 } })));
  assert.equal(x.retryAfterSeconds, 1);
  assert.match(x.message, / for agent:x, and 3 were made/);
});

test('each counted call is settled (one call) or given back exactly once, whatever the plane calls after (a fleet store need not be idempotent)', () => {
  const inner = new EmbeddedLimiter(new BudgetLedger(), new RateLimiter());
  const calls: string[] = [];
  const counting: Limiter = {
    admit: (q) => inner.admit(q),
    settle: (t, cost, tokens) => { calls.push(`settle ${cost} ${tokens}`); inner.settle(t, cost, tokens); },
    release: (t) => { calls.push('release'); inner.release(t); },
  };
  const l = limits(counting);
  const r = rule({ rate: { rpm: 100 }, budget: { calls_per_day: 10 } });
  const a = admitNow(l, who('analyst', 'k'), r);
  a.forwarded(); a.forwarded(); a.dropped();
  assert.deepEqual(calls, ['settle 1 null']);
  const b = admitNow(l, who('analyst', 'k'), r);
  b.dropped(); b.dropped(); b.forwarded();
  assert.deepEqual(calls, ['settle 1 null', 'release']);
});

test('a call budget running out raises no budget alert (alerts are for dollar budgets, alert_at)', () => {
  const alerts: unknown[] = [];
  const l = limits(new EmbeddedLimiter(new BudgetLedger({ onAlert: (a) => alerts.push(a) }), new RateLimiter()));
  const r = rule({ budget: { calls_per_day: 2, calls_per_month: 3 } });
  admitNow(l, who('analyst', 'k'), r).forwarded();
  admitNow(l, who('analyst', 'k'), r).forwarded();
  assert.equal(refusedBy(() => admitNow(l, who('analyst', 'k'), r)).code, 'budget_exceeded');
  assert.deepEqual(alerts, []);
});

test('a store that reserved nothing for a call has nothing to settle or give back', () => {
  const calls: string[] = [];
  const l = limits({ admit: () => ({ ok: true, ticket: null }), settle: () => calls.push('settle'), release: () => calls.push('release') } as unknown as Limiter);
  const a = admitNow(l, who('analyst'), rule({ budget: { calls_per_day: 1 } }));
  a.forwarded(); a.dropped();
  assert.deepEqual(calls, []);
});

test('a fleet store that cannot answer refuses the call (a limit is never skipped), and its answer may come later', async () => {
  const id = who('analyst', 'key_1');
  const r = rule({ rate: { rpm: 1 } });
  const broken = limits({ admit: () => { throw new Error('redis gone'); }, settle() {}, release() {} } as unknown as Limiter);
  assert.throws(() => admitRuleCall(broken.rt, id, r, 'tool', refuse, storeDown), /store down: Error: redis gone/);
  const failing = limits({ admit: () => Promise.reject(new Error('timeout')), settle() {}, release() {} } as unknown as Limiter);
  await assert.rejects(Promise.resolve(admitRuleCall(failing.rt, id, r, 'tool', refuse, storeDown)), /store down: Error: timeout/);
  // A fleet answer (a promise) is the same admission or refusal.
  const inner = new EmbeddedLimiter(new BudgetLedger(), new RateLimiter());
  const later = limits({ admit: (q) => Promise.resolve(inner.admit(q)), settle: (t, c, n) => inner.settle(t, c, n), release: (t) => inner.release(t) } as Limiter);
  const a = admitRuleCall(later.rt, id, r, 'tool', refuse, storeDown);
  assert.ok(a instanceof Promise);
  await a;
  await assert.rejects(Promise.resolve(admitRuleCall(later.rt, id, r, 'tool', refuse, storeDown)), (e: unknown) => e instanceof Refused && e.r.code === 'rate_limited');
});

test('the event scrubber relays a text\'s token logprobs only as text that passed it: held text takes its tokens along, redacted text drops them', () => {
  const tok = (token: string) => ({ token, logprob: -0.1, bytes: [], top_logprobs: [] });
  // Clean text: each event keeps its tokens.
  const clean = scrubEvents([{ type: 'text', text: 'hello ', logprobs: [tok('hello'), tok(' ')] }, { type: 'text', text: 'world', logprobs: [tok('world')] }]);
  const tokens = (evs: StreamEvent[]) => evs.flatMap((e) => (e.type === 'text' ? (e.logprobs ?? []).map((l) => (l as { token: string }).token) : []));
  assert.deepEqual(tokens(clean), ['hello', ' ', 'world']);
  // Text held (it could begin a secret) comes out later with its tokens.
  const start = SECRET.slice(0, 3);
  const held = scrubEvents([{ type: 'text', text: `say ${start}`, logprobs: [tok('say'), tok(' '), tok(start)] }, { type: 'text', text: 'xyz', logprobs: [tok('xyz')] }]);
  assert.equal(read(held).text, `say ${start}xyz`);
  assert.deepEqual(tokens(held), ['say', ' ', start, 'xyz']);
  // A secret split across deltas and tokens: the redacted text goes without the tokens that spell the secret.
  const cut = SECRET.length >> 1;
  const out = scrubEvents([
    { type: 'text', text: `key ${SECRET.slice(0, cut)}`, logprobs: [tok('key'), tok(' '), tok(SECRET.slice(0, cut))] },
    { type: 'text', text: `${SECRET.slice(cut)} done`, logprobs: [tok(SECRET.slice(cut)), tok(' done')] },
  ]);
  assert.equal(read(out).text, 'key [REDACTED:openai-key] done');
  const relayed = JSON.stringify(out.map((e) => (e.type === 'text' ? e.logprobs ?? null : null)));
  assert.ok(!relayed.includes(SECRET.slice(0, cut)) && !relayed.includes(SECRET.slice(cut)), relayed);
  assert.deepEqual(tokens(out), ['key', ' '], 'the text before the secret keeps its tokens');
});
