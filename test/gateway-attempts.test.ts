// runAttempts (gateway/attempts.ts): the first attempt is made outside the loop (no async frame on
// the path most calls take); a failure of it goes on in the loop from where it left off. These
// pin down that hand-over: each target's breaker is asked once per attempt as before, and the
// first attempt's failure is retried, logged and fallen back from like any other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runAttempts, type Cancel } from '../src/gateway/attempts.ts';
import { CircuitBreaker } from '../src/gateway/breaker.ts';
import { LatencyStats } from '../src/gateway/latency.ts';
import type { Route, Target } from '../src/gateway/routes.ts';
import type { AttemptFailure } from '../src/gateway/upstream.ts';

// Only what runAttempts reads of a target and a route (real breaker and latency stats).
function target(label: string, breaker = new CircuitBreaker()): Target {
  return { label, breaker, latency: new LatencyStats(), provider: { enabled: true, disabledReason: undefined } } as unknown as Target;
}
function route(targets: Target[], attemptsPerTarget = 2): Route {
  return { name: 'r', kind: 'chat', strategy: 'fallback', targets, attemptsPerTarget, backoffMs: 0, guardrails: [], regionViews: new WeakMap() } as unknown as Route;
}
const live: Cancel = { aborted: false, get signal() { return new AbortController().signal; } };
const fail = (next: AttemptFailure['next'], status = 500): AttemptFailure => ({ ok: false, next, status, clientStatus: 502, code: 'upstream_error', message: `failed ${status}` });

test('a half-open first target gets its one trial: its breaker is asked once, not again by the loop', async () => {
  const b = new CircuitBreaker({ threshold: 1, cooldownMs: 0 });
  b.failure(Date.now() - 1); // open, cooldown over: the next allow() is the one trial
  const a = target('a', b);
  const calls: string[] = [];
  const r = await runAttempts(route([a, target('b')]), live, async (t) => { calls.push(t.label); return { ok: true as const, value: t.label }; });
  assert.deepEqual(calls, ['a'], 'the trial went to a');
  assert.ok(r.ok && r.value === 'a');
  assert.equal(b.state, 'closed', 'its success closed the breaker');
});

test("a half-open first target's failed trial is handled by the loop without asking its breaker again", async () => {
  const br = new CircuitBreaker({ threshold: 1, cooldownMs: 60_000 });
  br.failure(Date.now() - 60_001); // open, cooldown over: the next allow() is the one trial
  const a = target('a', br);
  const b = target('b');
  const calls: string[] = [];
  const r = await runAttempts(route([a, b]), live, async (t) => { calls.push(t.label); return t === a ? fail('retry') : { ok: true as const, value: 'b' }; }, undefined, [a, b]);
  assert.deepEqual(calls, ['a', 'b'], 'the trial failed and opened the breaker again: no retry on a');
  assert.ok(r.ok);
  assert.deepEqual(r.attempts.map((x) => `${x.target} ${x.status}`), ['a 500'], 'the failed trial is logged, not taken for a skipped target');
  assert.equal(br.state, 'open');
});

test("the first attempt's failure is retried on the same target, logged, then the next target answers", async () => {
  const a = target('a');
  const b = target('b');
  const calls: string[] = [];
  const answers = [fail('retry'), fail('retry', 503)];
  const r = await runAttempts(route([a, b]), live, async (t) => {
    calls.push(t.label);
    return t === a ? answers.shift()! : { ok: true as const, value: 'from b' };
  }, undefined, [a, b]);
  assert.deepEqual(calls, ['a', 'a', 'b']);
  assert.ok(r.ok);
  assert.equal(r.value, 'from b');
  assert.deepEqual(r.attempts.map((x) => `${x.target} ${x.status}`), ['a 500', 'a 503']);
});

test("the first attempt's 'final' failure ends the call; 'fallback' moves on without a retry", async () => {
  const a = target('a');
  const b = target('b');
  const calls: string[] = [];
  let r = await runAttempts(route([a, b]), live, async (t) => { calls.push(t.label); return fail('final', 400); }, undefined, [a, b]);
  assert.deepEqual(calls, ['a']);
  assert.ok(!r.ok && r.failure.status === 400);
  calls.length = 0;
  r = await runAttempts(route([a, b]), live, async (t) => { calls.push(t.label); return t === a ? fail('fallback', 401) : { ok: true as const, value: 'b' }; }, undefined, [a, b]);
  assert.deepEqual(calls, ['a', 'b']);
  assert.ok(r.ok);
});

test('an open first target is skipped once; every target open says so', async () => {
  const open = () => { const br = new CircuitBreaker({ threshold: 1, cooldownMs: 60_000 }); br.failure(); return br; };
  const a = target('a', open());
  const b = target('b');
  const calls: string[] = [];
  let r = await runAttempts(route([a, b]), live, async (t) => { calls.push(t.label); return { ok: true as const, value: t.label }; }, undefined, [a, b]);
  assert.deepEqual(calls, ['b']);
  assert.ok(r.ok && r.value === 'b');
  r = await runAttempts(route([a, target('c', open())]), live, async () => ({ ok: true as const, value: 'x' }));
  assert.ok(!r.ok);
  assert.match(r.failure.message, /all 2 target\(s\) .*circuit open/);
});

test("a throw or rejection of the first attempt frees a half-open trial slot and rejects", async () => {
  const b = new CircuitBreaker({ threshold: 1, cooldownMs: 0 });
  b.failure(Date.now() - 1);
  const a = target('a', b);
  await assert.rejects(runAttempts(route([a]), live, () => { throw new Error('sync'); }, undefined, [a]), /sync/);
  assert.equal(b.allow(), true, 'the slot was released (a sync throw)');
  b.release();
  await assert.rejects(runAttempts(route([a]), live, () => Promise.reject(new Error('async')), undefined, [a]), /async/);
  assert.equal(b.allow(), true, 'the slot was released (a rejection)');
});

test("read: what an attempt resolved to is read as its outcome, in the first attempt and the loop's alike", async () => {
  const a = target('a');
  const b = target('b');
  const calls: string[] = [];
  // 'bad' reads as unusable (retried on a, then b); a promise read works the same.
  const answers: Record<string, string[]> = { a: ['bad', 'bad'], b: ['good'] };
  const r = await runAttempts(route([a, b]), live, async (t) => { calls.push(t.label); return answers[t.label].shift()!; }, undefined, [a, b],
    (text, t) => (text === 'good' ? Promise.resolve({ ok: true as const, value: `${t.label}:${text}` }) : fail('retry', 502)));
  assert.deepEqual(calls, ['a', 'a', 'b']);
  assert.ok(r.ok && r.value === 'b:good');
  assert.deepEqual(r.attempts.map((x) => `${x.target} ${x.status}`), ['a 502', 'a 502']);
});

test("read: a throw or rejection of it frees a half-open trial slot and rejects", async () => {
  const b = new CircuitBreaker({ threshold: 1, cooldownMs: 0 });
  b.failure(Date.now() - 1);
  const a = target('a', b);
  await assert.rejects(runAttempts(route([a]), live, async () => 'x', undefined, [a], () => { throw new Error('read sync'); }), /read sync/);
  assert.equal(b.allow(), true, 'the slot was released (a throw)');
  b.release();
  await assert.rejects(runAttempts(route([a]), live, async () => 'x', undefined, [a], () => Promise.reject(new Error('read async'))), /read async/);
  assert.equal(b.allow(), true, 'the slot was released (a rejection)');
});
