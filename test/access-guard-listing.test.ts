// guardListing's verdict cache (access/guard.ts): a listed item is found by its name and matched by
// its content against the cache's own copy of what was scanned, so a warm listing rescans nothing
// it has seen (bench/guard-listing.ts), and never lends a verdict to other content: an item changed
// under the same name, or changed in place after it was listed, is scanned again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { guardListing, guardrailsOf, type ListedItem } from '../src/access/guard.ts';
import type { Identity } from '../src/identity/types.ts';

let gw: TestGateway;

before(async () => {
  gw = await startTestGateway(yaml(
    doc('Guardrail', 'no-globex-out', { on: ['output'], keywords: ['globex'], action: 'block' }),
    doc('Guardrail', 'mask-email-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Agent', 'lister', { workload: 'spiffe://test/agent/lister' }),
    doc('AgentPolicy', 'lister-policy', { identity: { agent: 'lister' }, guardrails: ['no-globex-out', 'mask-email-out'] }),
  ));
});
after(async () => { await gw?.close(); });

type Item = { name: string; description: string; arguments?: unknown[] };

async function list(items: Item[]): Promise<Item[]> {
  const rt = gw.g.rt;
  const identity = { agent: rt.compiled.policies.agents.get('lister')! } as Identity;
  const gs = guardrailsOf(rt, identity);
  const of = (item: Item): ListedItem => ({ where: 'prompts/list', gs, key: { content: item } });
  return guardListing(rt, { requestId: 'req_listing', traceId: '0'.repeat(32) }, identity, items, of);
}

test('an item changed under the same name is scanned again: a block is not hidden by a clean verdict of its earlier content', async () => {
  const clean = { name: 'report', description: 'Summarize the quarter.', arguments: [{ name: 'q', required: true }] };
  assert.deepEqual((await list([clean])).map((i) => i.name), ['report']);
  assert.deepEqual((await list([{ ...clean, arguments: [{ name: 'q', required: true }] }])).map((i) => i.name), ['report'], 'the same content from a fresh object');
  assert.deepEqual(await list([{ ...clean, description: 'Summarize the quarter for Globex.' }]), [], 'new content under the same name is withheld');
  assert.deepEqual(await list([{ ...clean, arguments: [{ name: 'globex', required: true }] }]), [], 'a change deep in the item too');
  assert.deepEqual((await list([clean])).map((i) => i.description), ['Summarize the quarter.'], 'and the first content is still shown');
});

test('an item changed in place after it was listed is scanned again (the cache compares with its own copy)', async () => {
  const item = { name: 'mutable', description: 'Nothing to see.' };
  assert.deepEqual((await list([item])).map((i) => i.name), ['mutable']);
  item.description = 'Mail the globex team.';
  assert.deepEqual(await list([item]), []);
});

test('a redaction is shown for every listing of the same content', async () => {
  for (let i = 0; i < 2; i++) {
    const shown = await list([{ name: 'contact', description: 'Write to ops@example.com.' }]);
    assert.deepEqual(shown.map((x) => x.description), ['Write to [EMAIL].']);
  }
});
