// Export sinks: a webhook that is down and then recovers gets every event exactly once; cursors
// survive a restart; the file sink rotates without losing lines; OTLP reaches a local collector.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { openAuditLog } from '../src/audit/log.ts';
import { startSinks } from '../src/audit/sinks.ts';
import { webhookSink, otlpLogsSink, otlpRecord, signWebhookBody } from '../src/audit/sink-http.ts';
import { resolveOtlp } from '../src/observability/otlp-config.ts';
import type { AuditEvent } from '../src/audit/event.ts';
import { fileSink } from '../src/audit/sink-file.ts';
import { verifyDatabase, verifyExport } from '../src/audit/verify.ts';
import { checkpointSignatureValid } from '../src/audit/checkpoint.ts';
import type { Checkpoint } from '../src/audit/checkpoint.ts';
import { newestCheckpoint, parseCheckpoints } from '../src/audit/anchor.ts';
import { sampleEvent, tempDir } from './audit-helpers.ts';
import { until } from './helpers/e2e.ts';

/** The documented webhook signature (README, AAM_AUDIT_WEBHOOK_SECRET), computed here without aam's signer. */
const documentedSignature = (secret: string, rawBody: string) => 'sha256=' + createHmac('sha256', Buffer.from(secret, 'utf8')).update(Buffer.from(rawBody, 'utf8')).digest('hex');

function listen(handler: (req: IncomingMessage, body: string, res: ServerResponse) => void, port = 0): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, Buffer.concat(chunks).toString('utf8'), res));
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

async function freePort(): Promise<number> {
  const s = await listen(() => undefined);
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

test('webhook down then up: every event delivered exactly once, signed, in order', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  const port = await freePort();
  const secret = 'whsec-test';
  let server: Server | null = null;
  const runner = startSinks(log, [webhookSink({ name: 'siem', url: `http://127.0.0.1:${port}/hook`, secret })], { batchSize: 50, minBackoffMs: 20, maxBackoffMs: 100, pollMs: 50 });
  try {
    for (let i = 0; i < 300; i++) log.record(sampleEvent(i));
    await log.flush();
    await until(() => runner.status()[0].failures > 0, 30_000, 'a refused delivery'); // nobody listens yet
    assert.equal(runner.status()[0].cursor, 0);

    const seen: number[] = [];
    const signed: Array<{ signature: unknown; body: string }> = [];
    let requests = 0;
    server = await listen((req, body, res) => {
      requests++;
      signed.push({ signature: req.headers['x-aam-signature'], body });
      // The first answer after recovery is a 503: that batch must come again, not be skipped.
      if (requests === 1) { res.writeHead(503).end('warming up'); return; }
      // A checkpoint signed meanwhile (the 10 s timer on a slow machine) comes as its own record.
      if (req.headers['x-aam-record'] === 'checkpoints') { res.writeHead(204).end(); return; }
      const payload = JSON.parse(body) as { events: { seq: number }[] };
      assert.equal(req.headers['idempotency-key'], `aam-audit-${payload.events[0].seq}-${payload.events.at(-1)?.seq}`);
      for (const e of payload.events) seen.push(e.seq);
      res.writeHead(204).end();
    }, port);
    for (let i = 300; i < 400; i++) log.record(sampleEvent(i));
    await log.flush();
    await runner.drain(30_000);
    await runner.stop();
    assert.deepEqual(seen, Array.from({ length: 400 }, (_, i) => i + 1));

    // A new runner (a restart) resumes from the stored cursor: only new events are sent.
    seen.length = 0;
    for (let i = 0; i < 20; i++) log.record(sampleEvent(i));
    await log.flush();
    const again = startSinks(log, [webhookSink({ name: 'siem', url: `http://127.0.0.1:${port}/hook`, secret })], { batchSize: 50, pollMs: 50 });
    await again.drain(30_000);
    await again.stop();
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => 401 + i));
    // Each delivery is signed as documented, checked with an HMAC computed here (not with aam's signer).
    assert.ok(signed.length >= 2);
    for (const s of signed) {
      assert.equal(s.signature, documentedSignature(secret, s.body), 'HMAC-SHA256 of the raw body under the shared secret');
      assert.notEqual(s.signature, documentedSignature('other', s.body));
    }
  } finally {
    await runner.stop();
    if (server) { server.closeAllConnections(); await new Promise((r) => server?.close(r)); }
    await log.close();
  }
});

test('file sink rotates by size, keeps every line once, and its lines verify as an export', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 1_000_000 });
  const path = join(dir, 'export', 'audit.jsonl');
  const runner = startSinks(log, [fileSink({ path, maxBytes: 20_000, keep: 50 })], { batchSize: 37, pollMs: 20 });
  for (let i = 0; i < 300; i++) log.record(sampleEvent(i));
  await log.flush();
  await runner.drain(60_000);
  await runner.stop();
  const files = readdirSync(join(dir, 'export')).filter((f) => f.startsWith('audit.jsonl'));
  assert.ok(files.length > 5, `expected rotation, got ${files.join(',')}`);
  // Oldest first: audit.jsonl.N ... audit.jsonl.1, audit.jsonl.
  const ordered = files.sort((a, b) => suffix(b) - suffix(a));
  const text = ordered.map((f) => readFileSync(join(dir, 'export', f), 'utf8')).join('');
  for (const f of ordered) assert.ok(readFileSync(join(dir, 'export', f)).length <= 20_000);
  const r = verifyExport(text, log.publicKeyPem());
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.events, 300);
  await log.close();
});

function suffix(f: string): number {
  const m = /\.(\d+)$/.exec(f);
  return m ? Number(m[1]) : 0;
}

test('OTLP logs sink posts /v1/logs JSON that a local collector can read', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  const records: { attributes: { key: string; value: Record<string, string> }[]; severityText: string; body: { stringValue: string } }[] = [];
  const collector = await listen((req, body, res) => {
    assert.equal(req.url, '/v1/logs');
    assert.equal(req.headers['content-type'], 'application/json');
    const payload = JSON.parse(body) as { resourceLogs: { scopeLogs: { logRecords: typeof records }[] }[] };
    records.push(...payload.resourceLogs[0].scopeLogs[0].logRecords);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  const port = (collector.address() as AddressInfo).port;
  const runner = startSinks(log, [otlpLogsSink(resolveOtlp('logs', { endpoint: `http://127.0.0.1:${port}`, env: {} })!)], { pollMs: 20 });
  for (let i = 0; i < 10; i++) log.record(sampleEvent(i, { trace_id: '0af7651916cd43dd8448eb211c80319c' }));
  await log.flush();
  await runner.drain(60_000);
  await runner.stop();
  assert.equal(records.length, 10);
  const seqs = records.map((r) => r.attributes.find((a) => a.key === 'aam.audit.seq')?.value.intValue);
  assert.deepEqual(seqs, Array.from({ length: 10 }, (_, i) => String(i + 1)));
  assert.equal(records[0].severityText, 'WARN'); // seq 1 is a deny in the sample data
  assert.equal(JSON.parse(records[3].body.stringValue).seq, 4);
  await new Promise((r) => collector.close(r));
  await log.close();
});

test('every sink gets each signed checkpoint as its own record, after the events it covers, once across restarts', async () => {
  const dir = tempDir();
  // No timer checkpoints (10 s by default, reachable on a slow machine): the list below is exact.
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 100, batchSize: 50, checkpointIntervalMs: 3_600_000 });
  const pub = log.publicKeyPem();
  const secret = 'whsec-cp';
  let maxSeq = 0;
  const hooked: { seqSeen: number; cps: Checkpoint[] }[] = [];
  const hook = await listen((req, body, res) => {
    assert.equal(req.headers['x-aam-signature'], signWebhookBody(secret, body));
    const payload = JSON.parse(body) as { events?: { seq: number }[]; checkpoints?: Checkpoint[] };
    if (req.headers['x-aam-record'] === 'checkpoints') {
      assert.match(String(req.headers['idempotency-key']), /^aam-checkpoint-\d+-[0-9a-f]{16}$/);
      hooked.push({ seqSeen: maxSeq, cps: payload.checkpoints ?? [] });
    } else {
      assert.equal(req.headers['x-aam-record'], 'events');
      for (const e of payload.events ?? []) maxSeq = Math.max(maxSeq, e.seq);
    }
    res.writeHead(204).end();
  });
  const logs: { attributes: { key: string; value: Record<string, string> }[]; body: { stringValue: string } }[] = [];
  const collector = await listen((_req, body, res) => {
    logs.push(...(JSON.parse(body) as { resourceLogs: { scopeLogs: { logRecords: typeof logs }[] }[] }).resourceLogs[0].scopeLogs[0].logRecords);
    res.writeHead(200).end('{}');
  });
  const path = join(dir, 'export', 'audit.jsonl');
  const sinks = () => [
    webhookSink({ name: 'siem', url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`, secret }),
    otlpLogsSink(resolveOtlp('logs', { endpoint: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`, env: {} })!),
    fileSink({ path }),
  ];
  const runner = startSinks(log, sinks(), { batchSize: 30, pollMs: 20 });
  for (let i = 0; i < 250; i++) log.record(sampleEvent(i));
  await log.flush();
  assert.equal(await log.checkpoint(), 250);
  await runner.drain(60_000);
  assert.deepEqual(runner.status().map((s) => s.checkpoints), [3, 3, 3]);
  await runner.stop();

  // Webhook: tree sizes 100, 200, 250, each signed and sent only once its events were.
  const sent = hooked.flatMap((h) => h.cps.map((c) => ({ c, seqSeen: h.seqSeen })));
  assert.deepEqual(sent.map((x) => x.c.tree_size), [100, 200, 250]);
  for (const { c, seqSeen } of sent) {
    assert.ok(checkpointSignatureValid(c, pub));
    assert.ok(seqSeen >= c.tree_size, `checkpoint ${c.tree_size} came before its events (${seqSeen} delivered)`);
  }
  // OTLP: a log record of its own kind whose body is the checkpoint line.
  const cpLogs = logs.filter((r) => r.attributes.some((a) => a.key === 'event.name' && a.value.stringValue === 'aam.audit.checkpoint'));
  assert.deepEqual(cpLogs.map((r) => r.attributes.find((a) => a.key === 'aam.audit.checkpoint.tree_size')?.value.intValue), ['100', '200', '250']);
  assert.ok(checkpointSignatureValid(parseCheckpoints(cpLogs[2].body.stringValue)[0], pub));
  // File: still verifies as an export, and serves as the outside checkpoint for verify.
  const text = readFileSync(path, 'utf8');
  const asExport = verifyExport(text, pub);
  assert.deepEqual([asExport.ok, asExport.events, asExport.checkpoints], [true, 250, 3], asExport.firstError?.message);
  const held = verifyDatabase(dir, pub, undefined, newestCheckpoint(parseCheckpoints(text)));
  assert.deepEqual([held.ok, held.outside?.tree_size], [true, 250], held.firstError?.message);

  // A restart resumes both cursors: only the new checkpoint is sent.
  hooked.length = 0;
  for (let i = 0; i < 20; i++) log.record(sampleEvent(i));
  await log.flush();
  await log.checkpoint();
  const again = startSinks(log, sinks(), { batchSize: 30, pollMs: 20 });
  await again.drain(60_000);
  await again.stop();
  assert.deepEqual(hooked.flatMap((h) => h.cps.map((c) => c.tree_size)), [270]);
  await new Promise((r) => hook.close(r));
  await new Promise((r) => collector.close(r));
  await log.close();
});

test('OTLP log record of a tool plane\'s flat event names the agent, tool and decision; a denial is WARN (before: gen_ai.tool.name "undefined__undefined", no agent, INFO)', () => {
  const e = {
    seq: 7, time: '2026-12-07T11:06:23.223Z', prev_hash: '0'.repeat(64), hash: 'a'.repeat(64), type: 'tool.decision', plane: 'http', request_id: 'req-1',
    spiffe_id: 'spiffe://prod/agent/analyst', agent: 'analyst', auth_method: 'virtual_key', tool: 'crm', action: 'export', resource: 'crm.accounts',
    decision: { effect: 'deny', allowed: false, policy: 'analyst', rule: 0, reason: 'denied' },
  } as unknown as AuditEvent;
  const r = otlpRecord(e) as { severityText: string; attributes: Array<{ key: string; value: { stringValue?: string } }> };
  const a = Object.fromEntries(r.attributes.map((x) => [x.key, x.value.stringValue]));
  assert.equal(r.severityText, 'WARN');
  assert.deepEqual([a['gen_ai.agent.id'], a['gen_ai.agent.name'], a['gen_ai.tool.name'], a['aam.policy.name'], a['aam.policy.decision']],
    ['spiffe://prod/agent/analyst', 'analyst', 'crm', 'analyst', 'deny']);
});

test('OTLP log record of a fleet event names the replica whose chain holds it (aam.audit.replica; the resource names the replica that delivered it)', () => {
  const e = { seq: 3, time: '2026-12-07T11:06:23.223Z', prev_hash: '0'.repeat(64), hash: 'b'.repeat(64), type: 'model_call', request_id: 'req-2', replica: '8dcce006954e' } as unknown as AuditEvent;
  const a = Object.fromEntries((otlpRecord(e) as { attributes: Array<{ key: string; value: { stringValue?: string; intValue?: string } }> }).attributes.map((x) => [x.key, x.value.stringValue ?? x.value.intValue]));
  assert.deepEqual([a['aam.audit.replica'], a['aam.audit.seq']], ['8dcce006954e', '3']);
  assert.equal(Object.hasOwn(Object.fromEntries((otlpRecord({ ...e, replica: undefined } as unknown as AuditEvent) as { attributes: Array<{ key: string }> }).attributes.map((x) => [x.key, 1])), 'aam.audit.replica'), false, 'one process: none');
});
