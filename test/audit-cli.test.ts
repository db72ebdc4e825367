// `aam audit ...` subcommands, run in-process against a real log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openAuditLog } from '../src/audit/log.ts';
import { rewriteTrail, runAudit, sampleEvent, tempDir } from './audit-helpers.ts';

test('audit verify/export/query/show/public-key/prune work end to end and verify fails after tampering', async () => {
  const dir = tempDir();
  // Two segments (1..60, 61..121), so prune has a whole old segment to drop.
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 50, segments: { maxAgeMs: 86_400_000, maxEvents: 60 } });
  for (let i = 0; i < 120; i++) {
    log.record(sampleEvent(i, { time: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString() }));
    if (i === 59) await log.flush();
  }
  // A tool-plane style event with flat fields: kept in the trail and indexed.
  log.record({ type: 'tool.intent', request_id: 'req-flat', agent: 'flat-agent', plane: 'mcp', decision: { effect: 'allow', policy: 'p' } });
  await log.close();

  const pub = await runAudit('audit public-key', dir);
  assert.match(pub.out, /BEGIN PUBLIC KEY/);
  const pemFile = join(dir, 'audit.pub.pem');
  writeFileSync(pemFile, pub.out);

  const v = await runAudit('audit verify', dir, { 'public-key': pemFile });
  assert.equal(v.code, 0, v.out);
  assert.match(v.out, /^OK: .*121 events/);

  const exportFile = join(dir, 'export.jsonl');
  assert.equal((await runAudit('audit export', dir, { out: exportFile })).code, 0);
  assert.equal((await runAudit('audit verify', dir, { 'public-key': pemFile, file: exportFile })).code, 0);
  writeFileSync(exportFile, readFileSync(exportFile, 'utf8').replace('"req-3"', '"req-X"'));
  const bad = await runAudit('audit verify', dir, { 'public-key': pemFile, file: exportFile });
  assert.equal(bad.code, 1);
  assert.match(bad.out, /TAMPERED: .*altered at seq 7/);
  // A file that cannot be read is exit 2 naming the flag (before: exit 1, the code for "tampered", with a bare ENOENT).
  const gone = await runAudit('audit verify', dir, { 'public-key': pemFile, file: join(dir, 'no-such.jsonl') });
  assert.deepEqual([gone.code, gone.err.trim()], [2, `--file ${join(dir, 'no-such.jsonl')}: no such file; give an \`aam audit export\` or sink JSONL file`]);
  const noKey = await runAudit('audit verify', dir, { 'public-key': join(dir, 'no-such.pem') });
  assert.deepEqual([noKey.code, noKey.err.trim()], [2, `--public-key ${join(dir, 'no-such.pem')}: no such file; give the PEM from \`aam audit public-key\``]);

  // --json: one JSON document, as every command's (before: JSON Lines); --jsonl: one event per line, as exports are.
  const q = await runAudit('audit query', dir, { agent: 'flat-agent', json: true });
  const [flat, ...more] = JSON.parse(q.out) as Array<Record<string, unknown>>;
  assert.deepEqual([flat.plane, flat.seq, more.length], ['mcp', 121, 0]);
  const lines = (await runAudit('audit query', dir, { limit: '3', jsonl: true })).out.trim().split('\n');
  assert.deepEqual(lines.map((l) => (JSON.parse(l) as { seq: number }).seq), [121, 120, 119], 'newest first, one per line');
  assert.equal((await runAudit('audit query', dir, { decision: 'allow', agent: 'flat-agent' })).out.split('\n').filter(Boolean).length, 1);

  const show = await runAudit('audit show', dir, {}, ['req-5']);
  assert.equal(show.code, 0);
  assert.deepEqual(show.out.trim().split('\n').map((l) => l.split('  ')[2]), ['decision', 'model_call']);
  const tree = JSON.parse((await runAudit('audit show', dir, { json: true }, ['req-5'])).out) as { request_id: string; events: Array<{ type: string }>; children: unknown[] };
  assert.deepEqual([tree.request_id, tree.events.map((e) => e.type), tree.children], ['req-5', ['decision', 'model_call'], []]);
  assert.deepEqual((await runAudit('audit show', dir, { jsonl: true }, ['req-5'])).out.trim().split('\n').map((l) => (JSON.parse(l) as { type: string }).type), ['decision', 'model_call']);
  assert.equal((await runAudit('audit show', dir, {}, ['nope'])).code, 1);

  const ocsf = join(dir, 'ocsf.jsonl');
  await runAudit('audit export', dir, { out: ocsf, format: 'ocsf' });
  const first = JSON.parse(readFileSync(ocsf, 'utf8').split('\n')[0]) as { class_uid: number };
  assert.equal(first.class_uid, 6003);

  assert.equal((await runAudit('audit prune', dir, { before: '2026-01-01T01:00:00Z' })).code, 0);
  const after = await runAudit('audit verify', dir, { 'public-key': pemFile });
  assert.equal(after.code, 0, after.out);
  assert.match(after.out, /retention checkpoint at 60/);

  // The trail now starts at seq 61: drop event 100 (a block of its own, renumbering the rest).
  rewriteTrail(dir, (events) => events.filter((_, i) => i !== 100 - 61), 1);
  const t = await runAudit('audit verify', dir, { 'public-key': pemFile });
  assert.equal(t.code, 1);
  assert.match(t.out, /removed at seq 100/);
});

test('aam audit verify/query/show/export of a data dir without a trail fail (exit 1) naming the dir, and create nothing there', async () => {
  const dir = join(tempDir(), 'typo');
  for (const [cmd, positionals] of [['audit verify', []], ['audit query', []], ['audit show', ['req_1']], ['audit export', []]] as const) {
    const v = await runAudit(cmd, dir, {}, [...positionals]);
    assert.equal(v.code, 1, `${cmd}: ${v.out}`);
    assert.match(v.err, /no audit trail in .*typo \(no audit\.db\)/, cmd);
    assert.doesNotMatch(v.out, /OK/);
    assert.equal(existsSync(dir), false, `${cmd} created no trail and no signing key`);
  }
});

test('aam audit query --team: the events of the agents the config puts in that team, with the other filters; an unknown team says which exist', async () => {
  const dir = tempDir();
  const config = join(dir, 'aam.yaml');
  const agent = (name: string, team: string) => `apiVersion: access.envisionai.dev/v1\nkind: Agent\nmetadata: { name: ${name} }\nspec: { workload: "spiffe://prod/agent/${name}", team: ${team} }\n`;
  writeFileSync(config, [agent('finance-analyst', 'finance'), agent('support-bot', 'support'), agent('idle-bot', 'finance')].join('---\n'));
  const log = openAuditLog({ dataDir: dir });
  for (let i = 0; i < 30; i++) log.record(sampleEvent(i));
  await log.close();
  const query = async (values: Record<string, string | boolean>) => {
    const r = await runAudit('audit query', dir, { json: true, limit: '1000', ...values }, [], config);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as Array<{ seq: number; identity: { agent: string }; policy: { decision: string } }>;
  };
  const finance = await query({ team: 'finance' });
  assert.equal(finance.length, 10);
  assert.ok(finance.every((e) => e.identity.agent === 'finance-analyst'));
  const deny = await query({ team: 'finance', decision: 'deny' });
  assert.deepEqual(deny.map((e) => e.seq), [16, 1], 'events 0 and 15: finance-analyst and a deny');
  assert.deepEqual(await query({ team: 'support', agent: 'finance-analyst' }), [], 'both filters apply');
  const unknown = await runAudit('audit query', dir, { team: 'fnance' }, [], config);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /no Agent in .*aam\.yaml has team "fnance"; teams there: finance, support/);
});

test('aam audit export | head: a reader that stops early ends the export quietly (no "error: write EPIPE"), in either format', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  for (let i = 0; i < 3000; i++) log.record(sampleEvent(i));
  await log.close();
  const { spawnSync } = await import('node:child_process');
  // bin/aam.js: what `npx aam` runs (it imports the CLI rather than running main.ts as a script).
  const cli = join(import.meta.dirname, '..', 'bin', 'aam.js');
  for (const format of ['native', 'ocsf']) {
    const r = spawnSync('/bin/sh', ['-c', `"${process.execPath}" "${cli}" audit export --format ${format} --data "${dir}" | head -c 100 >/dev/null`], { encoding: 'utf8' });
    assert.doesNotMatch(r.stderr, /EPIPE|error/, `${format}: ${r.stderr}`);
  }
});
