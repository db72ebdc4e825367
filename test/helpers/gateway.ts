// Start a real aam gateway in-process (real HTTP server, real SQLite) for end-to-end tests.
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// node:http as a type only: an ES import of it loads Node's bundled undici (and http2, tls), which
// test/memory-builtins.test.ts, importing this file, checks a gateway does not load.
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

/** What a callee test needs: the gateway, the caller's key, and close() for both. */
export interface CalleeGateway { gw: TestGateway; key: string; close(): Promise<void> }

/**
 * A gateway in front of one plain A2A callee server (listening here on a free port): agent `agent`
 * at its /a2a (with `a2a` settings beside the url, e.g. a credential), `caller` allowed to call it
 * (`key`), and `docs` beside them. close() closes both, the callee's open streams too.
 */
export async function startCalleeGateway(callee: Server, opts: { agent: string; caller: string; a2a?: Record<string, unknown>; docs?: string[] }): Promise<CalleeGateway> {
  await new Promise<void>((resolve) => callee.listen(0, '127.0.0.1', resolve));
  const { agent, caller } = opts;
  const gw = await startTestGateway(yaml(
    ...opts.docs ?? [],
    doc('Agent', agent, { workload: `spiffe://test/agent/${agent}`, a2a: { url: `http://127.0.0.1:${(callee.address() as AddressInfo).port}/a2a`, ...opts.a2a } }),
    doc('Agent', caller, { workload: `spiffe://test/agent/${caller}` }),
    doc('AgentPolicy', `${caller}-calls-${agent}`, { identity: { agent: caller }, agents: [{ agent }] }),
  ));
  return {
    gw, key: gw.key(caller),
    close: async () => { await gw.close(); callee.closeAllConnections(); await new Promise<void>((resolve) => callee.close(() => resolve())); },
  };
}

/** Agent "echo" behind `callee`, and "planner" allowed to call it. */
export const startEchoGateway = (callee: Server): Promise<CalleeGateway> => startCalleeGateway(callee, { agent: 'echo', caller: 'planner' });
