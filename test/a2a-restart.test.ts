// A2A state outlives a restart of an embedded aam: the caller who created a task still reaches it
// through a new process on the same data dir (and nobody else does), and a push route aam handed
// a callee still verifies. Without it a deploy of aam turned every task in flight into "task not
// found" for its own caller while the callee kept working on it. Real @a2a-js/sdk agent, two real
// gateways in turn on one data dir; the push routes through the store on a real SQLite file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { memoryPushRoutes } from '../src/store/push-routes.ts';
import { memoryTaskOwners } from '../src/store/task-owners.ts';
import { openExpiringTable, sealedTable } from '../src/store/sqlite-expiring.ts';
import { doc, yaml } from './helpers/config-docs.ts';
import { tempDir } from './helpers/temp.ts';
import { startTestAgents } from './helpers/a2a-agents.ts';

const agents = await startTestAgents([{ name: 'helper', skills: ['help'], aamUrl: () => '', key: () => '' }]);
after(() => agents.close());

const KEY = Buffer.alloc(32, 7);

const CONFIG = yaml(
  doc('Agent', 'helper', { workload: 'spiffe://test/agent/helper', a2a: { url: `${agents.base}/helper` } }),
  doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
  doc('Agent', 'other', { workload: 'spiffe://test/agent/other' }),
  doc('AgentPolicy', 'callers', { identity: { workload: 'spiffe://test/agent/*' }, agents: [{ agent: 'helper' }] }),
);

async function open(dir: string): Promise<Running> {
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, CONFIG);
  return startGateway({ configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error' }, parseConfig: parseConfigTexts });
}

async function rpc(g: Running, key: string, method: string, params: unknown): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${g.port}/a2a/helper`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  return r.text();
}

test('a task created before a restart is still its caller\'s after it, and still nobody else\'s', async () => {
  const dir = tempDir('aam-a2a-restart-');
  const first = await open(dir);
  const keys = { planner: first.rt.keys.create('planner').secret, other: first.rt.keys.create('other').secret };
  let taskId: string;
  try {
    const stream = await rpc(first, keys.planner, 'SendStreamingMessage', { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text: 'stream please' }], metadata: { skill: 'help' } } });
    const first_ = JSON.parse(/^data: (.*)$/m.exec(stream)![1]) as { result: { task: { id: string } } };
    taskId = first_.result.task.id;
    assert.ok(taskId, stream);
    assert.match(await rpc(first, keys.planner, 'GetTask', { id: taskId }), new RegExp(`"id":"${taskId}"`));
  } finally { await first.close(); }
  const second = await open(dir);
  try {
    const mine = JSON.parse(await rpc(second, keys.planner, 'GetTask', { id: taskId })) as { result?: { id: string }; error?: { message: string } };
    assert.equal(mine.result?.id, taskId, `the caller reaches its task after the restart: ${JSON.stringify(mine.error)}`);
    const theirs = JSON.parse(await rpc(second, keys.other, 'GetTask', { id: taskId })) as { error?: { code: number } };
    assert.equal(theirs.error?.code, -32001, 'another caller still cannot');
  } finally { await second.close(); }
});

test('the stores write new owners and routes, load them in a new process, and let expired ones go', () => {
  const file = join(tempDir('aam-a2a-state-'), 'aam.db');
  let t = 1_000_000;
  const now = () => t;
  {
    const db = new DatabaseSync(file);
    const owners = memoryTaskOwners(10, 60_000, now, openExpiringTable(db, 'task_owners', undefined, now));
    const routes = memoryPushRoutes(10, now, sealedTable(openExpiringTable(db, 'push_routes', undefined, now), KEY));
    owners.bind('helper', { tasks: ['t1'], contexts: ['c1'] }, 'spiffe://a', 'help');
    owners.bind('helper', { tasks: ['t1'], contexts: [] }, 'spiffe://b', 'help'); // owned: stays a's
    routes.put('r1', '{"url":"x"}', 30_000);
    routes.put('r2', '{"url":"y","callerToken":"caller-secret-token"}', 120_000);
    owners.flush!();
    routes.flush!();
    db.close();
  }
  t += 40_000;
  const db = new DatabaseSync(file);
  const owners = memoryTaskOwners(10, 60_000, now, openExpiringTable(db, 'task_owners', undefined, now));
  // A route holds the caller's token: sealed at rest, never in the file as written.
  const stored = db.prepare("SELECT value FROM expiring_state WHERE space = 'push_routes'").all() as Array<{ value: string }>;
  assert.ok(stored.length > 0 && stored.every((r) => !r.value.includes('caller-secret-token') && r.value.startsWith('v1:')), JSON.stringify(stored));
  assert.equal(memoryPushRoutes(10, now, sealedTable(openExpiringTable(db, 'push_routes', undefined, now), Buffer.alloc(32, 9))).get('r2'), undefined, 'another key opens nothing');
  const routes = memoryPushRoutes(10, now, sealedTable(openExpiringTable(db, 'push_routes', undefined, now), KEY));
  assert.deepEqual({ ...owners.get('helper', 'task', 't1') as object, expires: undefined, saved: undefined }, { caller: 'spiffe://a', skill: 'help', expires: undefined, saved: undefined });
  assert.equal((owners.get('helper', 'context', 'c1') as { caller: string }).caller, 'spiffe://a');
  assert.equal(owners.get('helper', 'task', 'nope'), undefined);
  assert.equal(routes.get('r1'), undefined, 'expired before the restart');
  assert.equal(routes.get('r2'), '{"url":"y","callerToken":"caller-secret-token"}');
  // A refresh is written once the table's expiry is half a ttl behind, not on every bind (a task named by every call).
  const rows = () => db.prepare("SELECT key, expires FROM expiring_state WHERE space = 'task_owners' ORDER BY key").all() as Array<{ key: string; expires: number }>;
  const t1 = () => { owners.flush!(); return rows().find((r) => r.key.endsWith('t1'))!.expires; };
  owners.bind('helper', { tasks: ['t1'], contexts: [] }, 'spiffe://a', 'help');
  assert.equal(t1(), 1_100_000, '40 s since the write: written');
  t += 20_000;
  owners.bind('helper', { tasks: ['t1'], contexts: [] }, 'spiffe://a', 'help');
  assert.equal(t1(), 1_100_000, '20 s since the write: not written');
  t += 20_000;
  owners.bind('helper', { tasks: ['t1'], contexts: [] }, 'spiffe://a', 'help');
  assert.equal(t1(), 1_140_000);
  db.close();
});
