// Fast, fail-fast test command for mutation testing (Stryker's command runner runs it once per
// mutant) and `npm run test:security`. Usage: node scripts/mutate-tests.ts [--tmp-in-cwd] [group...]
// (groups: scripts/mutate-groups.ts; none = all; AAM_MUTATE_GROUP names them when no argument does;
// AAM_MUTATE_TESTS=a.test.ts,b.test.ts runs those files instead of the groups' lists).
//
// `node --test` has no bail option, so each test file runs as its own `node --test` process (two
// at a time) and the first failing test ("not ok" in its TAP stream) kills every process group
// at once: a killed mutant costs seconds, not the whole list. Killed tests cannot clean up, so
// they get a private TMPDIR that is removed here; with --tmp-in-cwd it lies inside Stryker's
// sandbox, which Stryker removes even when it SIGKILLs this process on a timeout.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectGroups, testsOf } from './mutate-groups.ts';

const CONCURRENCY = 2;
const FAILED = /^\s*not ok \d+/m;
/** The end of the YAML diagnostics block after a "not ok" line. */
const DIAGNOSED = /^\s*not ok \d+[^]*?^\s*\.\.\.$/m;
const DIAGNOSTICS_MS = 1000;

interface Run { file: string; child: ChildProcess; output: string }

function parseArgs(argv: string[]): { tmpInCwd: boolean; names: string[] } {
  const tmpInCwd = argv.includes('--tmp-in-cwd');
  const names = argv.filter((a) => a !== '--tmp-in-cwd');
  const fromEnv = (process.env.AAM_MUTATE_GROUP ?? '').split(',').filter(Boolean);
  return { tmpInCwd, names: names.length > 0 ? names : fromEnv };
}

function startFile(file: string, env: NodeJS.ProcessEnv): Run {
  const child = spawn(process.execPath, ['--test', '--test-reporter=tap', '--test-timeout=60000', file], {
    env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: Run = { file, child, output: '' };
  child.stdout?.on('data', (c: Buffer) => { run.output += c.toString(); });
  child.stderr?.on('data', (c: Buffer) => { run.output += c.toString(); });
  return run;
}

function killGroup(run: Run): void {
  try { if (run.child.pid !== undefined && run.child.exitCode === null) process.kill(-run.child.pid, 'SIGKILL'); } catch { /* already gone */ }
}

/** Runs the files CONCURRENCY at a time; resolves with the first failing run, or null when all pass. */
function runAll(files: string[], env: NodeJS.ProcessEnv): Promise<Run | null> {
  return new Promise((resolve) => {
    const queue = [...files];
    const live = new Set<Run>();
    let done = false;
    let failing = false;
    const finish = (failed: Run | null): void => {
      if (done) return;
      done = true;
      for (const r of live) killGroup(r);
      resolve(failed);
    };
    // The failing file gets a moment to print why (its diagnostics follow the "not ok" line).
    const failFast = (run: Run): void => {
      failing = true;
      for (const r of live) if (r !== run) killGroup(r);
      const timer = setTimeout(() => finish(run), DIAGNOSTICS_MS);
      run.child.once('exit', () => { clearTimeout(timer); finish(run); });
      run.child.stdout?.on('data', () => { if (DIAGNOSED.test(run.output)) { clearTimeout(timer); finish(run); } });
    };
    const next = (): void => {
      if (done || failing) return;
      if (queue.length === 0 && live.size === 0) return finish(null);
      while (live.size < CONCURRENCY && queue.length > 0) {
        const run = startFile(queue.shift()!, env);
        live.add(run);
        run.child.stdout?.on('data', () => { if (!done && !failing && FAILED.test(run.output)) failFast(run); });
        run.child.on('exit', (code) => {
          live.delete(run);
          if (done || failing) return;
          if (code !== 0) return finish(run);
          next();
        });
      }
    };
    next();
  });
}

async function main(): Promise<number> {
  const { tmpInCwd, names } = parseArgs(process.argv.slice(2));
  // AAM_MUTATE_TESTS (comma-separated files) replaces the group's list for one run: a line range
  // whose mutants one fast file kills need not start the group's gateway tests for each survivor.
  const only = (process.env.AAM_MUTATE_TESTS ?? '').split(',').filter(Boolean);
  const files = only.length > 0 ? only : testsOf(selectGroups(names));
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length > 0) throw new Error(`test files listed in ${only.length > 0 ? 'AAM_MUTATE_TESTS' : 'scripts/mutate-groups.ts'} do not exist: ${missing.join(', ')}`);
  const tmp = mkdtempSync(join(tmpInCwd ? process.cwd() : tmpdir(), tmpInCwd ? '.mutate-tmp-' : 'aam-mutate-'));
  const env = { ...process.env, TMPDIR: tmp };
  const started = Date.now();
  try {
    const failed = await runAll(files, env);
    if (failed === null) {
      console.log(`${files.length} test files passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return 0;
    }
    console.log(failed.output.slice(-4000));
    console.log(`FAILED: ${failed.file} (stopped the other test files)`);
    return 1;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();
