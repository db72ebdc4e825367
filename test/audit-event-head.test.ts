// An event's leading members encoded ahead (EVENT_HEAD, a model call's while its upstream works):
// encodeEvent gives the very bytes it gives the same event without the head, and never uses a head
// whose members the event no longer starts with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EVENT_HEAD, encodeEvent, eventHead, type AuditEventInput } from '../src/audit/event.ts';
import { selectForRecord } from '../src/audit/select.ts';

const AT = Date.UTC(2026, 0, 2, 3, 4, 5, 67);

function members(policy = true) {
  return {
    type: 'model_call' as const, request_id: 'req-1', trace_id: '0af7651916cd43dd8448eb211c80319c',
    identity: { spiffe_id: 'spiffe://aam.local/agent/a', agent: 'a', owner: undefined, team: 'ops', environment: 'dev', deployment: undefined, method: 'virtual_key', key_id: 'key_1', token_id: undefined },
    policy: policy ? { name: 'p', version: 'sha256:v', rule: 0, decision: 'allow', reason: 'model "m" is in models.allow \u00e9\u2028' } : undefined,
  };
}

/** The event recordCallEvidence makes, with or without its head. */
function callEvent(m: ReturnType<typeof members>, withHead: boolean): AuditEventInput {
  return {
    type: m.type, request_id: m.request_id, trace_id: m.trace_id, identity: m.identity, policy: m.policy,
    [EVENT_HEAD]: withHead ? eventHead(m) : undefined,
    guardrails: undefined, credential: { name: 'openai', version: 2 },
    model: { route: 'r', provider: 'openai', model: 'gpt', stream: false, input_tokens: 3, output_tokens: 4, cached_tokens: null, cost_usd: 0.5, latency_ms: 1.25, cache: null },
    outcome: { status: 200, error_class: undefined, error: undefined },
  };
}

test('an event with its head encodes to the same bytes and keys as without it (as recordEvidence and audit.record pass it on)', () => {
  for (const policy of [true, false]) {
    const plain = callEvent(members(policy), false);
    const shapes: Array<(e: AuditEventInput) => AuditEventInput> = [
      (e) => e,
      (e) => ({ ...e, client_request_id: 'c-"1"' }), // recordEvidence appends the client's id
      (e) => selectForRecord(e, ['identity', 'policy', 'action']), // audit.record: model cut to the action
      (e) => selectForRecord({ ...e, client_request_id: 'x' }, ['identity']),
    ];
    for (const shape of shapes) {
      const a = encodeEvent(shape(plain), AT);
      const b = encodeEvent(shape(callEvent(members(policy), true)), AT);
      assert.equal(b.json, a.json);
      assert.deepEqual(b.cols, a.cols);
      assert.deepEqual(JSON.parse(b.json), JSON.parse(a.json));
    }
  }
});

test('the head is what is encoded for its members: encoding it once is the point', () => {
  const m = members();
  const e = callEvent(m, true);
  // The same objects, changed after the head was made: the head's text stands for them (callers
  // make the head from members that do not change; this only shows the head is used).
  m.identity.team = 'changed';
  assert.match(encodeEvent(e, AT).json, /"team":"ops"/);
});

test('a head the event no longer starts with is not used: the whole event is encoded', () => {
  const m = members();
  const headed = callEvent(m, true);
  const cases: AuditEventInput[] = [
    { ...headed, identity: { ...m.identity, agent: 'other' } }, // another value under a head key
    { ...headed, policy: undefined }, // a member dropped to undefined
    (() => { const { policy: _p, ...rest } = headed; return rest as AuditEventInput; })(), // a member gone
    { extra: 1, ...headed } as AuditEventInput, // a member in front of the head's
    { ...headed, time: '2026-01-01T00:00:00.000Z' }, // a time given
    Object.defineProperty({ ...headed }, '__proto__', { value: { x: 1 }, enumerable: true, writable: true, configurable: true }) as AuditEventInput, // a member named __proto__ after the head's
  ];
  for (const e of cases) {
    const { [EVENT_HEAD]: _h, ...plain } = e as AuditEventInput & { [EVENT_HEAD]?: unknown };
    assert.equal(encodeEvent(e, AT).json, encodeEvent(plain as AuditEventInput, AT).json);
  }
  assert.match(encodeEvent(cases[0], AT).json, /"agent":"other"/);
  assert.match(encodeEvent(cases[5], AT).json, /,"__proto__":\{"x":1\}/);
});

test('an event whose members after the head cannot be encoded becomes the encoding-failure event, as without a head', () => {
  const e = { ...callEvent(members(), true), detail: { n: 1n } } as unknown as AuditEventInput;
  const out = JSON.parse(encodeEvent(e, AT).json);
  assert.equal(out.outcome.status, 'audit_encoding_error');
  assert.equal(out.request_id, 'req-1');
});

test('an event may be its own head\'s source while its last members are undefined: they are left to the rest, same bytes once filled in', () => {
  const e: Record<string, unknown> = { ...members(false), a2a: { agent: 'b' }, credential: undefined, outcome: undefined };
  const head = eventHead(e);
  // policy (undefined) is inside the head, credential and outcome (undefined, last) are not.
  assert.deepEqual(head.keys, ['type', 'request_id', 'trace_id', 'identity', 'policy', 'a2a']);
  e.credential = { name: 'c', version: 1 };
  e.outcome = { status: 200 };
  const plain = encodeEvent(e as AuditEventInput, AT).json;
  (e as { [EVENT_HEAD]?: unknown })[EVENT_HEAD] = head;
  assert.equal(encodeEvent(e as AuditEventInput, AT).json, plain);
  assert.match(plain, /"a2a":\{"agent":"b"\},"credential":\{"name":"c","version":1\},"outcome":\{"status":200\}\}$/);
  // An event of only undefined members has an empty head.
  assert.deepEqual(eventHead({ a: undefined }).keys, []);
});
