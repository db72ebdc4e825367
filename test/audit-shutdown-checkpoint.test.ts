// SIGTERM on a real `aam serve`: the final signed checkpoint (covering every event of the run)
// reaches the configured sinks before the process exits, not only at its next start; a sink that
// is down does not hold the shutdown longer than AAM_AUDIT_SINK_SHUTDOWN_MS and is named in the log.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAuditDb } from '../src/audit/store.ts';
import { queryEvents } from '../src/audit/query.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { localServer } from './helpers/e2e.ts';
import { startServeChild } from './helpers/serve-child.ts';

const root = mkdtempSync(join(tmpdir(), 'aam-shutdown-checkpoint-'));
after(() => rmSync(root, { recursive: true, force: true }));

const config = (dir: string): string => {
  const file = join(dir, 'aam.yaml');
  writeFileSync(file, yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] })));
  return file;
};

/** The newest event seq in a data dir's trail. */
function headSeq(data: string): number {
  const db = openAuditDb(data);
  try { return Math.max(...queryEvents(db, { order: 'asc', limit: 100_000 }).map((e) => e.seq)); } finally { db.close(); }
}

interface Record { kind: string; tree_size?: number; type?: string; seq?: number; signature?: string }

test('SIGTERM: the final signed checkpoint is in the export file and at the webhook before the process exits', async () => {
  const dir = join(root, 'ok');
  mkdirSync(dir, { recursive: true });
  const exportFile = join(dir, 'export.jsonl');
  const posted: Array<{ record: string; body: { checkpoints?: Record[] } }> = [];
  const hook = await localServer((req, res, body) => {
    posted.push({ record: String(req.headers['x-aam-record']), body: JSON.parse(body) as { checkpoints?: Record[] } });
    res.writeHead(200).end();
  });
  const data = join(dir, 'data');
  const gw = await startServeChild({ config: config(dir), data, env: {
    AAM_AUDIT_FILE: exportFile, AAM_AUDIT_WEBHOOK_URL: hook.url, AAM_AUDIT_WEBHOOK_SECRET: 'shutdown-test-secret-0123456789',
  } });
  try {
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
    gw.proc.kill('SIGTERM');
    assert.equal(await gw.exited, 0, gw.stderr());
    const head = headSeq(data);
    assert.ok(head >= 1, 'the run recorded events');
    // The export file ends with a signed checkpoint of the whole trail.
    assert.ok(existsSync(exportFile), 'the file sink wrote its export');
    const lines = readFileSync(exportFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record);
    const last = lines[lines.length - 1];
    assert.equal(last.kind, 'checkpoint', `last line: ${JSON.stringify(last)}`);
    assert.equal(last.tree_size, head, 'the checkpoint covers every event of the run');
    assert.ok(last.signature);
    assert.ok(lines.some((l) => l.kind === 'event' && l.seq === head), 'and the events it covers came first');
    // The webhook got the same checkpoint as a record of its own.
    const cps = posted.filter((p) => p.record === 'checkpoints').flatMap((p) => p.body.checkpoints ?? []);
    assert.ok(cps.some((c) => c.tree_size === head), `webhook checkpoints: ${JSON.stringify(cps)}`);
  } finally { await gw.stop(); await hook.close(); }
});

test('SIGTERM with a sink that is down: shutdown waits at most AAM_AUDIT_SINK_SHUTDOWN_MS, says so, and exits 0', async () => {
  const dir = join(root, 'down');
  mkdirSync(dir, { recursive: true });
  const hook = await localServer((_req, res) => { res.writeHead(503).end(); });
  const data = join(dir, 'data');
  const gw = await startServeChild({ config: config(dir), data, env: {
    AAM_AUDIT_WEBHOOK_URL: hook.url, AAM_AUDIT_WEBHOOK_SECRET: 'shutdown-test-secret-0123456789', AAM_AUDIT_SINK_SHUTDOWN_MS: '300',
  } });
  try {
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
    const t0 = performance.now();
    gw.proc.kill('SIGTERM');
    assert.equal(await gw.exited, 0, gw.stderr());
    // Generous: a loaded machine is slow to exit; without the bound the wait would be the 30 s hard deadline.
    assert.ok(performance.now() - t0 < 20_000, `exited after ${Math.round(performance.now() - t0)} ms`);
    assert.match(gw.stderr(), /"event":"audit_sinks_not_drained"/);
    assert.match(gw.stderr(), /audit sinks not drained within 300 ms/);
  } finally { await gw.stop(); await hook.close(); }
});
