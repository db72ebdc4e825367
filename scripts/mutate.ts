// `npm run mutate [-- group... [-- stryker options]]`: mutation testing of the security-critical
// modules, one Stryker run per group of scripts/mutate-groups.ts (each with its own fast test
// list), at the lowest CPU priority, then one summary line per group from its JSON report.
// Examples: npm run mutate -- keys
//           npm run mutate -- policy -- --mutate src/policy/decide.ts
//           npm run mutate -- keys --retest-survivors         (after adding tests: only the mutants
//             the last run left alive run again; the killed ones are taken from that run's report)
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { selectGroups } from './mutate-groups.ts';

interface Report { files: Record<string, { mutants: Array<{ status: string }> }> }

const KILLED = new Set(['Killed', 'Timeout']);

const STRYKER = join('node_modules', '.bin', 'stryker');

function splitArgs(argv: string[]): { names: string[]; retest: boolean; stryker: string[] } {
  const cut = argv.indexOf('--');
  const ours = cut < 0 ? argv : argv.slice(0, cut);
  return { names: ours.filter((a) => a !== '--retest-survivors'), retest: ours.includes('--retest-survivors'), stryker: cut < 0 ? [] : argv.slice(cut + 1) };
}

/**
 * Seeds Stryker's incremental file with the last report minus its surviving mutants, so an
 * `--incremental` run tests only those (with the command runner Stryker cannot see which tests
 * changed, so it would otherwise reuse every old result).
 */
function seedRetest(reportFile: string, incrementalFile: string): void {
  if (!existsSync(reportFile)) throw new Error(`--retest-survivors needs a previous report: ${reportFile} does not exist (run npm run mutate first)`);
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as Report;
  for (const f of Object.values(report.files)) f.mutants = f.mutants.filter((m) => KILLED.has(m.status));
  writeFileSync(incrementalFile, JSON.stringify(report));
}

/** "policy: 212 killed, 9 timeout, 13 survived, 0 no coverage, 0 errors: 94.0 % killed (234 mutants)". */
export function summarize(group: string, report: Report): string {
  const counts = new Map<string, number>();
  for (const f of Object.values(report.files)) for (const m of f.mutants) counts.set(m.status, (counts.get(m.status) ?? 0) + 1);
  const n = (s: string): number => counts.get(s) ?? 0;
  const errors = n('CompileError') + n('RuntimeError');
  const valid = n('Killed') + n('Timeout') + n('Survived') + n('NoCoverage');
  const score = valid ? ((n('Killed') + n('Timeout')) / valid) * 100 : 0;
  return `${group}: ${n('Killed')} killed, ${n('Timeout')} timeout, ${n('Survived')} survived, ${n('NoCoverage')} no coverage, ${errors} errors: ${score.toFixed(1)} % killed (${valid} mutants)`;
}

function main(): number {
  const { names, retest, stryker } = splitArgs(process.argv.slice(2));
  const lines: string[] = [];
  let status = 0;
  for (const group of selectGroups(names)) {
    const started = Date.now();
    const file = join('reports', 'mutation', `${group}.json`);
    const extra = retest ? ['--incremental'] : [];
    if (retest) seedRetest(file, join('reports', 'mutation', `${group}.incremental.json`));
    // nice: the mutation run is long and must not slow down anyone else on the machine.
    const r = spawnSync('nice', ['-n', '19', STRYKER, 'run', ...extra, ...stryker], { stdio: 'inherit', env: { ...process.env, AAM_MUTATE_GROUP: group } });
    const minutes = ((Date.now() - started) / 60_000).toFixed(1);
    if (r.status !== 0 || !existsSync(file)) {
      lines.push(`${group}: Stryker failed (exit ${r.status ?? r.signal}) after ${minutes} min`);
      status = 1;
      continue;
    }
    const only = process.env.AAM_MUTATE_TESTS ? ` with only ${process.env.AAM_MUTATE_TESTS}` : '';
    lines.push(`${summarize(group, JSON.parse(readFileSync(file, 'utf8')) as Report)} in ${minutes} min${only}`);
  }
  console.log(`\n${lines.join('\n')}`);
  return status;
}

process.exitCode = main();
