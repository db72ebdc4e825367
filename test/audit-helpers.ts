// Shared fixtures for the audit tests (not a test file itself).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEventInput } from '../src/audit/event.ts';

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
