// Start a real aam gateway in-process (real HTTP server, real SQLite) for end-to-end tests.
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type Running } from '../../src/cli/serve.ts';
import { parseConfigTexts } from '../../src/config/load.ts';

export interface TestGateway {
  url: string;
  port: number;
  dataDir: string;
  configPath: string;
  g: Running;
  /** Create a virtual key for an agent (through the same store the CLI uses). */
  key(agent: string): string;
  close(): Promise<void>;
}

import { doc, yaml } from './config-docs.ts';
export { doc, yaml };

export async function startTestGateway(config: string, env: Record<string, string> = {}): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'aam-test-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, config);
  const dataDir = join(dir, 'data');
  // The loader is in this process anyway: validate here rather than start a thread per gateway and reload.
  let g: Running;
  try {
    g = await startGateway({ configPath, dataDir, port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error', ...env }, parseConfig: parseConfigTexts });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true }); // a start that is refused leaves nothing behind
    throw e;
  }
  return {
    url: `http://127.0.0.1:${g.port}`, port: g.port, dataDir, configPath, g,
    key: (agent) => g.rt.keys.create(agent).secret,
    close: async () => { try { await g.close(); } finally { rmSync(dir, { recursive: true, force: true }); } },
  };
}

/** The usual agent + allow-all policy documents for model-plane tests. */
export function agentDocs(models: string[], extra: Record<string, unknown> = {}): string[] {
  return [
    doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', owner: 'qa@example.com', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'tester-policy', { identity: { workload: 'spiffe://test/agent/tester' }, models: { allow: models, ...extra } }),
  ];
}

/**
 * A gateway in front of one plain A2A callee server (started here on a free port): agent "echo" at
 * its /a2a, and "planner" allowed to call it (`key`). close() closes both.
 */
export async function startEchoGateway(callee: Server): Promise<{ gw: TestGateway; key: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => callee.listen(0, '127.0.0.1', resolve));
  const gw = await startTestGateway(yaml(
    doc('Agent', 'echo', { workload: 'spiffe://test/agent/echo', a2a: { url: `http://127.0.0.1:${(callee.address() as AddressInfo).port}/a2a` } }),
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    doc('AgentPolicy', 'planner-calls-echo', { identity: { agent: 'planner' }, agents: [{ agent: 'echo' }] }),
  ));
  return { gw, key: gw.key('planner'), close: async () => { await gw.close(); await new Promise<void>((resolve) => callee.close(() => resolve())); } };
}
