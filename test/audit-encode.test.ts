// An event's line (audit/event.ts encodeEvent) is the event's JSON with its time as the first
// member: the very bytes every trail so far holds and hashes. It is made as one flat string, not
// the event's text with the time joined in front (which the audit scrubber then flattened: ~0.8 KB
// more per event on every plane).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { EVENT_HEAD, encodeEvent, eventHead, isoClock, type AuditEventInput } from '../src/audit/event.ts';
import { Scrubber } from '../src/credentials/scrub.ts';

const AT = Date.UTC(2026, 0, 2, 3, 4, 5, 67);
const TIME = '2026-01-02T03:04:05.067Z';

/** How lines were made before: the event's text with the time spliced in front. */
function reference(e: Record<string, unknown>, time = TIME): string {
  const j = JSON.stringify(e.time === undefined ? e : { ...e, time: undefined });
  return '{"time":"' + time + '"' + (j.length > 2 ? ',' + j.slice(1) : '}');
}

function a2aCall(i = 0): AuditEventInput & Record<string, unknown> {
  return {
    type: 'a2a_call', request_id: `req_0123456789abcdef${i}`, trace_id: '0af7651916cd43dd8448eb211c80319c',
    identity: { spiffe_id: 'spiffe://bench/agent/caller', agent: 'caller', owner: 'o@example.com', team: 'bench', environment: 'dev', deployment: undefined, method: 'virtual_key', key_id: 'key_abcdef', token_id: undefined },
    policy: { name: 'bench-policy', version: 'sha256:0123456789abcdef', rule: 'agents[0]', decision: 'allow', reason: 'agents rule 0 allows echo (skill echo) \u00e9\u2028' },
    a2a: { agent: 'echo', skill: 'echo', method: 'SendStreamingMessage', stream: true, delegation: { id: 'dlg_0123456789abcdef', hop: 1, parent_request_id: `req_0123456789abcdef${i}`, chain: ['caller', 'echo'] } },
    credential: { name: 'echo-key', version: 1 }, outcome: { status: 200, latency_ms: 1.25 + i } as AuditEventInput['outcome'],
  };
}

test('an event line has the same bytes as the event text with its time spliced in front, for every shape', () => {
  const proto = Object.defineProperty({ type: 'x', request_id: 'r' }, '__proto__', { value: { a: 1 }, enumerable: true, writable: true, configurable: true });
  const shapes: Array<Record<string, unknown>> = [
    a2aCall() as Record<string, unknown>,
    { type: 'admin', request_id: 'r' },
    { type: 'x', request_id: 'r', time: undefined }, // a time member left undefined: dropped, stamped first
    { type: 'x', request_id: 'r', time: 12 }, // not a string: dropped, stamped first
    { type: 'x', request_id: 'r', 7: 'seven', '01': 'not an index' }, // an integer-like key leads any object
    { 0: 'zero' },
    {},
    proto, // an own member named __proto__
    { ...a2aCall(), [EVENT_HEAD]: undefined } as Record<string, unknown>,
    { ...a2aCall(), [EVENT_HEAD]: eventHead({ type: 'other' }) } as Record<string, unknown>, // a head the event does not start with
    { type: 'x', request_id: 'r', outcome: { status: 200, error: undefined }, detail: { list: [1, undefined, 'a"\\b'] } },
  ];
  for (const e of shapes) {
    const line = encodeEvent(e as AuditEventInput, AT).json;
    assert.equal(line, reference(e));
    assert.equal(encodeEvent(e as AuditEventInput, AT, isoClock()).json, line);
  }
  // A time given is kept where it is (the event's own text).
  const given = { type: 'x', time: '2020-01-01T00:00:00.000Z', request_id: 'r' };
  assert.equal(encodeEvent(given, AT).json, JSON.stringify(given));
  // An event that cannot be encoded becomes the encoding-failure event, as before.
  assert.equal(JSON.parse(encodeEvent({ type: 'x', request_id: 'r', detail: { n: 1n } } as unknown as AuditEventInput, AT).json).outcome.status, 'audit_encoding_error');
});

test('an event line is made as one flat string: encoding and scrubbing an A2A call\'s event allocates well under what the spliced one did', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const sc = new Scrubber([{ name: 'agent-key', value: 'encode-cred-5d1a90c3e7b24f68aa' }]);
  const iso = isoClock();
  const events = Array.from({ length: 64 }, (_, i) => a2aCall(i));
  const N = 2000;
  const keep: string[] = new Array(N);
  for (let i = 0; i < 20000; i++) keep[i % N] = sc.scrub(encodeEvent(events[i & 63], AT + i, iso).json).text; // warm
  const per: number[] = [];
  for (let round = 0; round < 3; round++) {
    gc();
    const before = getHeapStatistics().used_heap_size;
    for (let i = 0; i < N; i++) keep[i] = sc.scrub(encodeEvent(events[i & 63], AT + i, iso).json).text;
    per.push((getHeapStatistics().used_heap_size - before) / N);
  }
  // About 2.1 KB here (the ~770-byte line kept, the copy of the event the time leads, the query
  // keys); with the time spliced in front and the scrubber flattening that, about 3.5 KB.
  const least = Math.min(...per);
  assert.ok(least < 2800, `${least.toFixed(0)} bytes per event (rounds: ${per.map((p) => p.toFixed(0)).join(', ')})`);
  assert.equal(keep[N - 1], reference(events[(N - 1) & 63] as Record<string, unknown>, iso(AT + N - 1)));
});
