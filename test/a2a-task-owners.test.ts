// The one-process A2A task owners (store/task-owners.ts memoryTaskOwners): an owner bound again as
// it is (a stream's task, named again by each call that continues it) is refreshed in place, not
// deleted, set and made anew; the map stays bounded, an owner bound again having a second chance
// before it goes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryTaskOwners } from '../src/store/task-owners.ts';
import type { TaskOwner } from '../src/store/types.ts';

const ids = (...tasks: string[]) => ({ tasks, contexts: [] as string[] });

test('task owners: the same owner bound again is refreshed in place (same object, later expiry); another skill is a new owner record', () => {
  let now = 1000;
  const store = memoryTaskOwners(10, 100, () => now);
  // The memory store answers at once (no promise).
  const owners = { bind: store.bind.bind(store), get: (callee: string, kind: 'task' | 'context', id: string) => store.get(callee, kind, id) as TaskOwner | undefined };
  owners.bind('echo', { tasks: ['t1'], contexts: ['c1'] }, 'spiffe://a', 'echo');
  const first = owners.get('echo', 'task', 't1') as TaskOwner;
  assert.deepEqual({ ...first, expires: undefined }, { caller: 'spiffe://a', skill: 'echo', expires: undefined });
  now = 1090;
  owners.bind('echo', { tasks: ['t1'], contexts: ['c1'] }, 'spiffe://a', 'echo');
  assert.equal(owners.get('echo', 'task', 't1'), first, 'the same object');
  // Refreshed: alive past the first bind's expiry (1100), gone after the second's (1190).
  now = 1150;
  assert.equal(owners.get('echo', 'task', 't1')?.caller, 'spiffe://a');
  assert.equal(owners.get('echo', 'context', 'c1')?.caller, 'spiffe://a');
  // Another caller cannot take it; the owner's call with another skill records that skill.
  owners.bind('echo', ids('t1'), 'spiffe://b', 'echo');
  assert.equal(owners.get('echo', 'task', 't1')?.caller, 'spiffe://a');
  owners.bind('echo', ids('t1'), 'spiffe://a', 'score');
  assert.equal(owners.get('echo', 'task', 't1')?.skill, 'score');
  now = 1300;
  assert.equal(owners.get('echo', 'task', 't1'), undefined);
});

test('task owners: bounded, the longest held goes first unless it was bound again since it went last in line (a second chance)', () => {
  const owners = memoryTaskOwners(3, 1e9, () => 0);
  for (const t of ['t1', 't2', 't3']) owners.bind('echo', ids(t), 'spiffe://a', 'echo');
  owners.bind('echo', ids('t1'), 'spiffe://a', 'echo'); // t1 bound again: t2 is now the least recent
  owners.bind('echo', ids('t4'), 'spiffe://a', 'echo');
  assert.deepEqual(['t1', 't2', 't3', 't4'].map((t) => owners.get('echo', 'task', t) !== undefined), [true, false, true, true]);
  owners.bind('echo', ids('t5'), 'spiffe://a', 'echo'); // then t3
  // t1 went behind t4 when it had its second chance (t2 went then): t4 goes before it now, then t1.
  owners.bind('echo', ids('t6'), 'spiffe://a', 'echo');
  assert.deepEqual(['t1', 't3', 't4', 't5', 't6'].map((t) => owners.get('echo', 'task', t) !== undefined), [true, false, false, true, true]);
  owners.bind('echo', ids('t7'), 'spiffe://a', 'echo');
  assert.deepEqual(['t1', 't5', 't6', 't7'].map((t) => owners.get('echo', 'task', t) !== undefined), [false, true, true, true]);
});
