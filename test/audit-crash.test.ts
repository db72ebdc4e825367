// kill -9 under load: the chain still verifies and every acknowledged durable event is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { openAuditLog } from '../src/audit/log.ts';
import { verifyDatabase } from '../src/audit/verify.ts';
import { loadOrCreateSigningKey } from '../src/audit/keys.ts';
import { sampleEvent, tempDir } from './audit-helpers.ts';
import { readEvents } from '../src/audit/store.ts';

const here = dirname(fileURLToPath(import.meta.url));
const node = join(here, '..', 'node_modules', '.bin', 'node');

test('SIGKILL under load loses no acknowledged event and the chain verifies', async () => {
  const dir = tempDir();
  const pub = loadOrCreateSigningKey(join(dir, 'keys', 'audit-signing.key')).publicKeyPem;
  const child = spawn(node, [join(here, 'audit-crash-child.ts'), dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const acked = new Map<number, string>();
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  let buf = '';
  const killAt = 400 + Math.floor(Math.random() * 400);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`child too slow; ${acked.size} acks; stderr: ${stderr}`)); }, 90_000);
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const [, seq, hash] = l.split(' ');
        acked.set(Number(seq), hash);
      }
      if (acked.size >= killAt && !child.killed) { child.kill('SIGKILL'); clearTimeout(timer); }
    });
    child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited early: ${stderr}`))));
  });

  const r = verifyDatabase(dir, pub);
  assert.equal(r.ok, true, r.firstError?.message);
  assert.ok(r.lastSeq > killAt, `only ${r.lastSeq} events on disk`);
  const db = new DatabaseSync(join(dir, 'audit.db'), { readOnly: true });
  const stored = new Map([...readEvents(db)].map((e) => [e.seq, e.hash]));
  for (const [seq, hash] of acked) assert.equal(stored.get(seq), hash, `acknowledged seq ${seq} missing or different`);
  db.close();

  // The log reopens on the crashed data and extends the same chain.
  // It first chains the killed process's uncommitted lines (thousands): on a loaded CPU that took
  // longer than the default 10 s durable wait.
  const log = openAuditLog({ dataDir: dir, durableTimeoutMs: 60_000 });
  assert.equal(log.stats().lastSeq, r.lastSeq);
  await log.recordDurable(sampleEvent(1));
  await log.close();
  const after = verifyDatabase(dir, pub);
  assert.equal(after.ok, true, after.firstError?.message);
  assert.equal(after.unsignedTail, 0);
});
