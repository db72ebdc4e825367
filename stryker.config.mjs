// Mutation testing of aam's security-critical modules (README, "Mutation testing").
// Run it with `npm run mutate [-- group...]`, which runs Stryker once per group of
// scripts/mutate-groups.ts with AAM_MUTATE_GROUP set; plain `npx stryker run` mutates every group
// against every group's tests (correct, but slower).
import { groups, selectGroups } from './scripts/mutate-groups.ts';

const names = selectGroups((process.env.AAM_MUTATE_GROUP ?? '').split(',').filter(Boolean));
const label = names.length === 1 ? names[0] : 'all';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: names.flatMap((n) => groups[n].mutate),
  // Each mutant runs a fresh process (no coverage analysis with this runner: coverageAnalysis is
  // 'off'), so the test command is a short, fail-fast list per group, not `npm test`.
  testRunner: 'command',
  commandRunner: { command: `node scripts/mutate-tests.ts --tmp-in-cwd ${names.join(' ')}` },
  coverageAnalysis: 'off',
  // Instrumented files are still run by Node's type stripping; Stryker's inserted code is plain
  // JavaScript, and `// @ts-nocheck` (disableTypeChecks) is a comment, so both stay erasable.
  disableTypeChecks: true,
  checkers: [],
  // Two cores shared with others, and each test command already runs two files at a time.
  concurrency: 1,
  // A mutant that makes the suite hang (a loop that never ends, a promise never settled) is a
  // timeout after 1.5 x the clean run plus 20 s: generous, because the machine is shared.
  timeoutFactor: 1.5,
  timeoutMS: 20_000,
  dryRunTimeoutMinutes: 10,
  ignorePatterns: ['data', 'bench/results', 'bench/tmp', 'reports', '*.log'],
  reporters: ['clear-text', 'progress-append-only', 'json', 'html'],
  jsonReporter: { fileName: `reports/mutation/${label}.json` },
  htmlReporter: { fileName: `reports/mutation/${label}.html` },
  incrementalFile: `reports/mutation/${label}.incremental.json`,
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 85, break: null },
};
