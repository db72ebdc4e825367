// Mutation-testing groups: the security-critical modules and the tests that guard them.
// Stryker's command runner cannot tell which test covers which mutant (coverageAnalysis is off),
// so each mutant runs its group's whole list: fast unit tests first (a killed mutant usually dies
// there), then the few end-to-end tests that reach the module through the real gateway.
// One list serves `npm run mutate` (per group) and `npm run test:security` (all groups).

export interface MutateGroup {
  /** Globs of the source files Stryker mutates. */
  mutate: string[];
  /** Test files run against each mutant, cheapest first. */
  tests: string[];
}

const PARTS = ['src/access/delegation.ts', 'src/access/json-depth.ts', 'src/access/scrub-events.ts', 'src/access/rule-limits.ts'];

export const groups: Record<string, MutateGroup> = {
  // Every file in this list but the last starts no gateway; mutation-compile, -limits and -authzen
  // kill their module's mutants in about a second. budget-restart (two gateways in turn, a few
  // seconds) runs last, so only a mutant the others leave alive pays for it.
  policy: {
    mutate: ['src/policy/**/*.ts'],
    tests: [
      'test/mutation-compile.test.ts', 'test/mutation-limits.test.ts', 'test/policy-decide.test.ts', 'test/mutation-policy.test.ts',
      'test/mutation-authzen.test.ts', 'test/mutation-diff.test.ts', 'test/mutation-explain.test.ts', 'test/catalog-policy.test.ts', 'test/policy-authzen.test.ts', 'test/policy-limits.test.ts', 'test/a2a-policy.test.ts',
      'test/budget-restart.test.ts',
    ],
  },
  credentials: {
    mutate: ['src/credentials/**/*.ts'],
    tests: [
      'test/mutation-secret.test.ts', 'test/credentials-scrub.test.ts', 'test/mutation-credentials.test.ts', 'test/mutation-master-key.test.ts', 'test/mutation-vault.test.ts', 'test/mutation-oauth.test.ts', 'test/mutation-inject.test.ts', 'test/credentials-inject.test.ts',
      'test/credentials-vault.test.ts', 'test/credentials-master-key.test.ts', 'test/credentials-echo.test.ts',
      'test/architecture-trust.test.ts',
    ],
  },
  // The access path's two trust seams have their own groups and sharp lists: a group's whole list
  // runs against each surviving mutant, so a list made for one file would slow the others.
  egress: {
    mutate: ['src/access/egress.ts'],
    // mutation-egress starts no gateway: a mutant it kills costs seconds.
    tests: ['test/mutation-egress.test.ts', 'test/architecture-trust.test.ts'],
  },
  guard: {
    mutate: ['src/access/guard.ts'],
    // mutation-guard (no gateway) kills the helpers' mutants in about a second.
    tests: ['test/mutation-guard.test.ts', 'test/mutation-access.test.ts', 'test/tools-http.test.ts', 'test/responses-e2e.test.ts', 'test/stream-guard-turns.test.ts'],
  },
  // Who is calling and may they: mutation-identity runs one gateway with the demo provider (no MCP
  // server), so a mutant it kills costs a few seconds.
  identify: {
    mutate: ['src/access/identify.ts'],
    tests: ['test/mutation-identity.test.ts'],
  },
  // mutation-decide starts no gateway (a real compiled config and limiter): a mutant it kills
  // costs about a second; mutation-identity checks the same answers through a gateway.
  decide: {
    mutate: ['src/access/decide.ts'],
    tests: ['test/mutation-decide.test.ts', 'test/mutation-identity.test.ts'],
  },
  // The access path's small parts: mutation-access-parts starts no gateway (a killed mutant costs
  // about a second); mutation-json-turns tries chosen texts on the sliced JSON parse (about a second
  // too) before json-turns fuzzes it against JSON.parse (~15 s).
  parts: {
    mutate: [...PARTS, 'src/access/json-turns.ts'],
    tests: ['test/mutation-access-parts.test.ts', 'test/mutation-json-turns.test.ts', 'test/json-turns.test.ts'],
  },
  // Request ids, answers, body reading and the JSON checks at the door (over a real HTTP server,
  // the egress door), and the access context: no gateway, a mutant they kill costs about a second.
  request: {
    mutate: ['src/access/request.ts', 'src/access/context.ts'],
    tests: ['test/mutation-request.test.ts', 'test/mutation-context.test.ts'],
  },
  access: {
    mutate: ['src/access/**/*.ts', '!src/access/egress.ts', '!src/access/guard.ts', '!src/access/identify.ts', '!src/access/decide.ts', '!src/access/json-turns.ts', '!src/access/request.ts', '!src/access/context.ts', ...PARTS.map((f) => `!${f}`)],
    // mutation-access-rest (no gateway) kills errors.ts, evidence.ts and linger.ts mutants in seconds.
    tests: ['test/mutation-access-rest.test.ts', 'test/architecture-trust.test.ts', 'test/access-e2e.test.ts', 'test/gateway-e2e.test.ts', 'test/tools-http.test.ts'],
  },
  keys: {
    mutate: ['src/identity/keys.ts', 'src/store/key-mirror.ts'],
    tests: ['test/mutation-keys.test.ts', 'test/keys-propagation.test.ts', 'test/keys-book.test.ts', 'test/keys-mirror.test.ts'],
  },
  verify: {
    mutate: ['src/audit/verify.ts'],
    tests: ['test/mutation-verify.test.ts', 'test/audit-tamper.test.ts', 'test/audit-anchor.test.ts'],
  },
};

/** The named groups, or all of them; an unknown name is an error that lists the known ones. */
export function selectGroups(names: string[]): string[] {
  const known = Object.keys(groups);
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length > 0) throw new Error(`unknown mutation group ${unknown.join(', ')}; known groups: ${known.join(', ')}`);
  return names.length > 0 ? names : known;
}

/** The test files of the given groups, each once, in group order. */
export function testsOf(names: string[]): string[] {
  return [...new Set(names.flatMap((n) => groups[n].tests))];
}
