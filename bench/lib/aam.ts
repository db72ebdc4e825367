// How the benchmark runs aam: the bench config (routing gpt-4o-mini to the mock), key creation
// through the CLI, and the serve command line.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The Agent in bench/aam-bench.yaml that benchmark keys are created for. */
export const AAM_AGENT = 'bench-agent';

const CONFIG = join(dirname(fileURLToPath(import.meta.url)), '..', 'aam-bench.yaml');
const DEFAULT_MOCK = '127.0.0.1:18080';

/** The benchmark config: bench/aam-bench.yaml (the one copy; also read by shared-target/aam.sh) for this mock port. */
export function aamBenchConfig(mockPort: number): string {
  return readFileSync(CONFIG, 'utf8').replaceAll(DEFAULT_MOCK, `127.0.0.1:${mockPort}`);
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
