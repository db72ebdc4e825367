// How the benchmark runs aam: the bench config (routing gpt-4o-mini to the mock), key creation
// through the CLI, and the serve command line. By default that is what `npm start` runs: the
// launcher bin/aam.js with the node flags and environment of package.json's start script
// (serve's environment: AamBuild.env, to pass when spawning). A benchmark can build
// its own copy of dist/ first (buildAam), so edits to src/ made during a long run do not change
// what it measures; BENCH_AAM_FROM=src measures the TypeScript sources instead.
import { execFileSync, spawnSync } from 'node:child_process';
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

/**
 * The A2A hop's documents: the bench agent may call the echo agent's `echo` skill; aam injects
 * `echo-token` (env A2A_BENCH_TOKEN) for the callee.
 */
function a2aBenchDocs(agentPort: number): string {
  return [
    doc('Credential', 'echo-token', { env: 'A2A_BENCH_TOKEN' }),
    doc('Agent', 'echo', { workload: 'spiffe://bench/agent/echo', a2a: { url: `http://127.0.0.1:${agentPort}/a2a`, credential: 'echo-token' } }),
    doc('AgentPolicy', 'caller-calls-echo', { identity: { agent: AAM_AGENT }, agents: [{ agent: 'echo', skills: ['echo'] }] }),
  ].join('---\n');
}

/**
 * The one config both A2A benches serve (bench/a2a-hop.ts and cpu-per-request --kind a2a): the
 * bench config (its bench agent and policy, whose budget every A2A call is admitted against) plus
 * the echo agent, so the two measure the same request against the same config.
 */
export function a2aBenchConfig(mockPort: number, agentPort: number): string {
  return `${aamBenchConfig(mockPort)}---\n${a2aBenchDocs(agentPort)}`;
}

/** A2A_BENCH_TOKEN: the callee credential of the A2A bench (what aam injects for the echo agent). */
export const A2A_BENCH_TOKEN = 'a2a-bench-token-7c1e9f03b2d84a65';

const doc = (kind: string, name: string, spec: unknown): string => `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec: ${JSON.stringify(spec)}\n`;

/** What runs as aam: an entry script, the node flags before it and the environment it adds. */
export interface AamBuild {
  main: string;
  flags: string[];
  env: Record<string, string>;
  /** for reports: which code ran */
  from: string;
}

/** `npm start` as package.json says: "[NAME=value ...] node [flags] bin/aam.js serve". */
export function startCommand(repo: string): { env: Record<string, string>; flags: string[]; text: string } {
  const text = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start;
  const words = text.trim().split(/\s+/);
  const env: Record<string, string> = {};
  while (words.length && /^[A-Z_][A-Z0-9_]*=/.test(words[0])) { const w = words.shift() as string; env[w.slice(0, w.indexOf('='))] = w.slice(w.indexOf('=') + 1); }
  const i = words.indexOf('bin/aam.js');
  if (words[0] !== 'node' || i < 0) throw new Error(`package.json "start" is not "[NAME=value] node [flags] bin/aam.js serve": ${text}`);
  return { env, flags: words.slice(1, i), text };
}

/** What `npm start` / the `aam` command run (bin/aam.js picks dist/ when it is current). */
export function launcher(repo: string): AamBuild {
  const { env, flags } = startCommand(repo);
  return { main: join(repo, 'bin/aam.js'), flags, env, from: 'bin/aam.js' };
}

/** Builds src/ into outDir (scripts/build.ts) and runs that as npm start does; BENCH_AAM_FROM=src: the sources. */
export function buildAam(node: string, repo: string, outDir: string): AamBuild {
  const { env, flags } = startCommand(repo);
  if (process.env.BENCH_AAM_FROM === 'src') return { main: join(repo, 'src/cli/main.ts'), flags, env, from: 'TypeScript sources (src/)' };
  execFileSync(node, ['--disable-warning=ExperimentalWarning', join(repo, 'scripts/build.ts'), '--out', outDir], { cwd: repo, stdio: 'pipe' });
  return { main: join(outDir, 'cli/main.js'), flags, env, from: 'JavaScript built from src/ at the start of the run (scripts/build.ts)' };
}

/** Runs `aam keys create` and returns the key (the last stdout line); throws with the CLI's output. */
export function createAamKey(node: string, repo: string, configPath: string, dataDir: string, build: AamBuild = launcher(repo), env: Record<string, string> = {}): string {
  const r = spawnSync(node, [build.main, 'keys', 'create', '--agent', AAM_AGENT, '--config', configPath, '--data', dataDir],
    { cwd: repo, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  const lines = (r.stdout ?? '').trim().split('\n');
  const key = lines[lines.length - 1]?.trim() ?? '';
  if (r.status !== 0 || !key.startsWith('aam_')) {
    throw new Error(`aam keys create failed (exit ${r.status}): ${(r.stderr || r.stdout || String(r.error)).trim().slice(0, 800)}`);
  }
  return key;
}

/** `aam migrate` against the fleet store in env (the CLI does not migrate on its own; replicas do, at start), as an operator would. */
export function aamMigrate(node: string, repo: string, build: AamBuild, env: Record<string, string>): void {
  const m = spawnSync(node, [build.main, 'migrate'], { cwd: repo, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  if (m.status !== 0) throw new Error(`aam migrate failed (exit ${m.status}): ${(m.stderr || m.stdout).trim().slice(0, 500)}`);
}

export function aamServeArgv(node: string, repo: string, configPath: string, port: number, dataDir: string, build: AamBuild = launcher(repo)): string[] {
  return [node, ...build.flags, build.main, 'serve', '--config', configPath, '--port', String(port), '--data', dataDir];
}
