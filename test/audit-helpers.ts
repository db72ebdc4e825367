// Shared fixtures for the audit tests (not a test file itself).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEventInput } from '../src/audit/event.ts';
import { encodeEvent } from '../src/audit/event.ts';
import { BLOCK_COLUMNS, KEYS, openAuditDb, readBlocks } from '../src/audit/store.ts';
import { createSegment, readLines, segmentFileName } from '../src/audit/segment.ts';
import { auditCommands } from '../src/audit/cli.ts';

const made: string[] = [];
process.once('exit', () => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

/** A fresh directory, removed when the test process exits. */
export function tempDir(prefix = 'aam-audit-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function sampleEvent(i: number, over: Partial<AuditEventInput> = {}): AuditEventInput {
  const agent = i % 3 === 0 ? 'finance-analyst' : 'support-bot';
  return {
    type: i % 2 === 0 ? 'decision' : 'model_call',
    request_id: `req-${Math.floor(i / 2)}`,
    identity: { spiffe_id: `spiffe://prod/agent/${agent}`, agent, owner: 'jane@example.com', team: 'finance', environment: 'prod', deployment: 'v3', key_id: 'key_1', method: 'virtual_key' },
    policy: { name: 'finance-analyst-readonly', version: 'sha256:abc', rule: 0, decision: i % 5 === 0 ? 'deny' : 'allow', reason: 'model allowed' },
    model: i % 2 ? { route: 'reasoning-high', provider: 'openai', model: 'gpt-4o', input_tokens: 10 + i, output_tokens: 5, cached_tokens: 0, cost_usd: i % 7 === 0 ? null : 0.0001 * i, latency_ms: 12.5, stream: false } : undefined,
    outcome: { status: 200 },
    ...over,
  };
}

/**
 * A segment file as another process (pid, pid_start) left it: these events' lines, then `tail`
 * (e.g. a torn line). Default pid: one that cannot be running (above Linux's pid limit).
 */
export function writeSegmentFile(dir: string, gen: string, events: readonly AuditEventInput[], opts: { pid?: number; pidStart?: number; tail?: string } = {}): void {
  const header = { gen, pid: opts.pid ?? 2 ** 22 + 7, pid_start: opts.pidStart, opened: new Date().toISOString() };
  const lines = events.map((e) => encodeEvent(e, Date.now()).json);
  writeFileSync(join(dir, segmentFileName(gen)), [JSON.stringify(header), ...lines].join('\n') + '\n' + (opts.tail ?? ''), { mode: 0o600 });
}

/** One event as it sits in storage: its line, the hashes stored with it, its query keys. */
export interface TrailEvent {
  line: string;
  prev: string;
  hash: string;
  keys: (string | null)[];
  /** The line is a complete sealed text (a migrated trail). */
  sealed: boolean;
}

/** Every stored event, in seq order. */
export function trailEvents(dir: string): TrailEvent[] {
  const db = openAuditDb(dir);
  try {
    const out: TrailEvent[] = [];
    for (const b of readBlocks(db)) {
      const lines = readLines(dir, b.segment, b.byte_start, b.byte_end);
      const keys = JSON.parse(b.keys) as (string | null)[];
      let prev = b.prev_hash;
      lines.forEach((line, i) => {
        const hash = b.hashes.slice(i * 64, i * 64 + 64);
        out.push({ line, prev, hash, keys: keys.slice(i * KEYS, i * KEYS + KEYS), sealed: b.sealed === 1 });
        prev = hash;
      });
    }
    return out;
  } finally { db.close(); }
}

/**
 * What an attacker with write access to the data dir can do: rewrite the trail (segment file and
 * block index) from an edited list of its events. Positions are renumbered from the first seq;
 * within a block each event's prev_hash is the hash before it, as the writer stores them.
 */
export function rewriteTrail(dir: string, mutate: (events: TrailEvent[]) => TrailEvent[] | void, blockSize = 100): void {
  const before = trailEvents(dir);
  const events = mutate(before) ?? before;
  const db = openAuditDb(dir);
  try {
    const first = Number(db.prepare('SELECT MIN(first_seq) AS s FROM audit_blocks').get()?.s ?? 1);
    const old = db.prepare('SELECT DISTINCT segment FROM audit_blocks').all().map((r) => String(r.segment));
    const seg = createSegment(dir);
    const start0 = seg.size();
    const ends = seg.appendMany(events.map((e) => e.line));
    seg.close();
    db.exec('BEGIN; DELETE FROM audit_blocks;');
    const insert = db.prepare(`INSERT INTO audit_blocks (${BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    for (let i = 0; i < events.length;) {
      let j = i + 1;
      while (j < events.length && j - i < blockSize && events[j].sealed === events[i].sealed) j++;
      const part = events.slice(i, j);
      const times = part.map((e) => String(e.keys[0])).sort();
      insert.run(first + i, first + j - 1, part[0].prev, part[part.length - 1].hash, times[0], times[times.length - 1], seg.gen, i ? ends[i - 1] : start0, ends[j - 1],
        part[0].sealed ? 1 : 0, part.map((e) => e.hash).join(''), JSON.stringify(part.flatMap((e) => e.keys)));
      i = j;
    }
    db.prepare('INSERT OR REPLACE INTO audit_meta (key, value) VALUES (?, ?)').run(`closed:${seg.gen}`, new Date().toISOString());
    db.exec('COMMIT');
    for (const gen of old) rmSync(join(dir, segmentFileName(gen)), { force: true });
  } finally { db.close(); }
}

/** Run `aam audit <cmd>` in-process against data dir `data`; stdout is captured, stderr too (kept apart). */
export async function runAudit(cmd: string, data: string, values: Record<string, string | boolean> = {}, positionals: string[] = [], config = 'aam.yaml'): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const orig = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => { out += chunk.toString(); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => { err += chunk.toString(); return true; }) as typeof process.stderr.write;
  try {
    const code = await auditCommands[`audit ${cmd.replace(/^audit /, '')}`].run({ values, positionals, g: { config, data } });
    return { code, out, err };
  } finally {
    process.stdout.write = orig;
    process.stderr.write = origErr;
  }
}
