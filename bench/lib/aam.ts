// How the benchmark runs aam: the bench config (routing gpt-4o-mini to the mock), key creation
// through the CLI, and the serve command line.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const AAM_AGENT = 'bench-agent';

/** The benchmark config; bench/aam-bench.yaml is this text for the default mock port 18080. */
export function aamBenchConfig(mockPort: number): string {
  return `# aam config used by \`npm run bench\` (bench/run.ts regenerates it for the mock port in use).
apiVersion: access.envisionai.dev/v1
kind: Provider
metadata: { name: mock }
spec: { type: openai-compatible, baseUrl: "http://127.0.0.1:${mockPort}/v1" }
---
apiVersion: access.envisionai.dev/v1
kind: Model
metadata: { name: gpt-4o-mini }
spec: { targets: [ { provider: mock, model: gpt-4o-mini } ] }
---
apiVersion: access.envisionai.dev/v1
kind: Agent
metadata: { name: ${AAM_AGENT} }
spec: { workload: spiffe://bench/agent/bench, team: bench, environment: dev }
---
apiVersion: access.envisionai.dev/v1
kind: AgentPolicy
metadata: { name: bench-policy }
spec: { identity: { workload: spiffe://bench/agent/bench }, models: { allow: [gpt-4o-mini] } }
`;
}

export function aamMain(repo: string): string {
  return join(repo, 'src/cli/main.ts');
}

/** Runs `aam keys create` and returns the key (the last stdout line); throws with the CLI's output. */
export function createAamKey(node: string, repo: string, configPath: string, dataDir: string): string {
  const r = spawnSync(node, [aamMain(repo), 'keys', 'create', '--agent', AAM_AGENT, '--config', configPath, '--data', dataDir],
    { cwd: repo, encoding: 'utf8', timeout: 30_000 });
  const lines = (r.stdout ?? '').trim().split('\n');
  const key = lines[lines.length - 1]?.trim() ?? '';
  if (r.status !== 0 || !key.startsWith('aam_')) {
    throw new Error(`aam keys create failed (exit ${r.status}): ${(r.stderr || r.stdout || String(r.error)).trim().slice(0, 800)}`);
  }
  return key;
}

export function aamServeArgv(node: string, repo: string, configPath: string, port: number, dataDir: string): string[] {
  return [node, aamMain(repo), 'serve', '--config', configPath, '--port', String(port), '--data', dataDir];
}
