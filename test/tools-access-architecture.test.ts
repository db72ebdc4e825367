// The tool plane runs on the request's access context (src/access/context.ts): its policy set is
// resolved once, when the caller is identified, and every decision, listing, limit and guardrail
// of the request uses it. These fail when a tool path goes back to resolving policy on its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');
const toolFiles = readdirSync(join(ROOT, 'src', 'tools')).filter((f) => f.endsWith('.ts')).map((f) => `src/tools/${f}`);

test('src/tools imports no policy, identity, credential, audit or access implementation (types only)', () => {
  for (const f of toolFiles) {
    for (const m of read(f).matchAll(/^import\s+(type\s+)?[^;]*?from\s+'(\.\.\/(policy|identity|credentials|audit|access|guardrails)\/[^']+)'/gm)) {
      assert.ok(m[1], `${f} imports ${m[2]} at run time; take it from ToolDeps or the request's ToolAccess`);
    }
  }
});

test('the tool plane\'s decisions come from the access context\'s policy set, never a fresh lookup', () => {
  const deps = read('src/server/tool-deps.ts');
  assert.doesNotMatch(deps, /\bsetFor\(|\bdecide\(|\btoolVisible\(|\bguardrailsFor\(/, 'tool-deps.ts resolves a policy set itself');
  const routes = read('src/server/tool-routes.ts');
  assert.match(routes, /toolAccess\(await openAccess\(ctx\)\)/, 'tool routes open the access context once per request');
  assert.doesNotMatch(routes, /\bidentify\(/, 'tool routes identify only through openAccess');
});
