// The README's walkthroughs outside the quickstart, checked where that needs no IdP or store: the
// A2A and RoleBinding snippets load as written (with only the documents they name), and the fleet's
// shell snippet sets every variable a fleet `aam` command needs (session 32's walk: it lacked
// AAM_MASTER_KEY, so `aam keys create` made a key and then failed to record it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers/e2e.ts';
import { doc } from './helpers/config-docs.ts';
import { parseConfigTexts } from '../src/config/load.ts';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
/** The text of a section, from its heading to the next heading of the same or a higher level. */
function section(heading: string): string {
  const at = readme.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `README has "${heading}"`);
  const level = heading.split(' ')[0];
  const next = readme.slice(at + heading.length + 2).search(new RegExp(`\\n#{1,${level.length}} `));
  return readme.slice(at, next < 0 ? undefined : at + heading.length + 2 + next);
}
/** The fenced blocks of one language in a text. */
const blocks = (text: string, lang: string): string[] => [...text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)\\n```', 'g'))].map((m) => m[1]);
/** YAML documents as the README shows them, each given the apiVersion it leaves out. */
const withApiVersion = (text: string): string => text.split(/^---$/m).map((d) => (/^apiVersion:/m.test(d) ? d : `apiVersion: access.envisionai.dev/v1\n${d.replace(/^\n/, '')}`)).join('---\n');

test('the A2A walkthrough\'s Agent and AgentPolicy load as written, given the caller Agent and the Credential they name', () => {
  const [snippet] = blocks(section('### Agents calling agents (A2A)'), 'yaml');
  assert.ok(snippet?.includes('kind: AgentPolicy'), 'the A2A section shows its config');
  const set = parseConfigTexts([{ file: 'README.md', text: [
    withApiVersion(snippet),
    doc('Agent', 'planner', { workload: 'spiffe://prod/agent/planner' }),
    doc('Credential', 'scorer-token', { env: 'SCORER_TOKEN' }),
  ].join('\n---\n') }]);
  assert.deepEqual([...set.agents.keys()].sort(), ['planner', 'risk-scorer']);
  assert.equal(set.policies.get('planner')?.spec.agents?.[0].agent, 'risk-scorer');
});

test('the console\'s RoleBinding snippet loads as written', () => {
  const snippets = blocks(section('## Console and single sign-on'), 'yaml').filter((b) => b.includes('kind: RoleBinding'));
  assert.equal(snippets.length, 1);
  const set = parseConfigTexts([{ file: 'README.md', text: snippets[0] }]);
  assert.equal(set.roleBindings.get('platform-operators')?.spec.role, 'operator');
});

test('the fleet snippet sets every variable a fleet aam command needs, before its first aam command', () => {
  const [sh] = blocks(section('## Run a fleet'), 'sh');
  const firstCommand = sh.split('\n').findIndex((l) => /^npx aam /.test(l));
  const exported = sh.split('\n').slice(0, firstCommand).map((l) => /^export (\w+)=/.exec(l)?.[1]).filter(Boolean);
  assert.deepEqual(exported, ['AAM_DATABASE_URL', 'AAM_REDIS_URL', 'AAM_MASTER_KEY']);
});
