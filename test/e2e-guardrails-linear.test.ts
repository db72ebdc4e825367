// No input can stall the gateway, end to end: hostile prompts and MCP tool arguments that once
// held the event loop for seconds are scanned in milliseconds; a request with more text than a
// guardrail scans is refused naming max_scan_chars; operator regexes the linear-time engine cannot
// run are config errors from every entry point (bin/aam.js here). The gateway runs in this
// process, so the CPU time a request costs this process is what it held the event loop (plus a
// little client work): bounded generously (seconds, where the fixed code takes milliseconds and
// the old one ~7 s), and CPU time, so a busy machine does not fail it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, auditOf, ROOT, NODE_BIN, type CliResult } from './helpers/e2e.ts';
import { run } from './helpers/hostile-text.ts';
import { stdioServerDoc, tempFile } from './fixtures/mcp-accounts/upstream.ts';

const ALL = ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'];
/** A stall: the old detectors took ~7 s of CPU on the first input below; the fixed ones take milliseconds. */
const STALL_MS = 3000;

let fake: FakeUpstream;
let gw: TestGateway;
const scratch = mkdtempSync(join(tmpdir(), 'aam-linear-'));

function agent(name: string, guardrails: string[], extra: Record<string, unknown> = {}): string[] {
  return [
    doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', `${name}-policy`, { identity: { workload: `spiffe://test/agent/${name}` }, models: { allow: ['gpt'] }, guardrails, ...extra }),
  ];
}

before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 } }),
    doc('Guardrail', 'pii', { on: ['input', 'output'], detect: ALL, keywords: ['project falcon'], regex: ['(a+)+b'], action: 'redact' }),
    doc('Guardrail', 'small-budget', { on: ['input'], detect: ['email'], action: 'redact', max_scan_chars: 1000 }),
    ...agent('guarded', ['pii'], { tools: [{ resource: 'salesforce.accounts', actions: ['search'] }] }),
    ...agent('budgeted', ['small-budget']),
    stdioServerDoc('salesforce', { CALLS_FILE: tempFile('linear-calls.jsonl') }),
  ));
});
after(async () => { await gw?.close(); await fake?.close(); rmSync(scratch, { recursive: true, force: true }); });

/** CPU milliseconds this process (gateway included) spends until `work` settles. */
async function cpuMsOf<T>(work: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const t = process.cpuUsage();
  const result = await work();
  const d = process.cpuUsage(t);
  return { result, ms: (d.user + d.system) / 1000 };
}

const HOSTILE: Array<[string, string]> = [
  ['"://" + "a." x 48000 (96 KB)', '://' + 'a.'.repeat(48_000)],
  ['"+1", 21 digits and "x", 200 KB (~24 us per character before)', run('', '+1' + '1'.repeat(20) + 'x ', 200 * 1024)],
  ['"-----BEGIN PRIVATE KEY-----!" x 3600', run('', '-----BEGIN PRIVATE KEY-----!', 100 * 1024)],
  ['"a" x 100 KB for the operator regex (a+)+b', 'a'.repeat(100 * 1024)],
];

for (const [label, text] of HOSTILE) {
  test(`chat prompt ${label}: scanned in milliseconds`, async (t) => {
    const key = gw.key('guarded');
    await chat(gw.url, key, 'gpt', 'warm up'); // first-request compilation is not the prompt's cost
    const { result, ms } = await cpuMsOf(() => chat(gw.url, key, 'gpt', text));
    assert.equal(result.status, 200, result.text.slice(0, 300));
    t.diagnostic(`${ms.toFixed(0)} ms of CPU`);
    assert.ok(ms < STALL_MS, `request cost ${ms.toFixed(0)} ms of CPU`);
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
  });
}

test('MCP tool arguments with hostile text are scanned in milliseconds', async () => {
  const client = new Client({ name: 'e2e-linear', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${gw.key('guarded')}` } } }));
  try {
    assert.notEqual((await client.callTool({ name: 'salesforce__search_accounts', arguments: { query: 'Acme' } })).isError, true);
    for (const [label, text] of HOSTILE) {
      const { result, ms } = await cpuMsOf(() => client.callTool({ name: 'salesforce__search_accounts', arguments: { query: text } }));
      assert.notEqual(result.isError, true, `${label}: ${JSON.stringify(result).slice(0, 300)}`);
      assert.ok(ms < STALL_MS, `${label}: ${ms.toFixed(0)} ms of CPU`);
    }
  } finally {
    await client.close();
  }
});

test('more text than max_scan_chars: 400 guardrail_blocked naming the guardrail and the setting, upstream not called, audited', async () => {
  fake.reset();
  const ok = await chat(gw.url, gw.key('budgeted'), 'gpt', 'x'.repeat(900));
  assert.equal(ok.status, 200, ok.text);
  const r = await chat(gw.url, gw.key('budgeted'), 'gpt', 'x'.repeat(2000));
  assert.equal(r.status, 400, r.text);
  const err = (r.json as { error: { code: string; message: string; param?: string } }).error;
  assert.equal(err.code, 'guardrail_blocked');
  assert.equal(err.param, 'small-budget');
  assert.match(err.message, /guardrail "small-budget".*max_scan_chars/);
  assert.equal(fake.requests.length, 1, 'the blocked request never reaches the upstream');
  const evs = await auditOf(gw, r.requestId, 'guardrail');
  assert.deepEqual(evs.map((e) => (e as unknown as { guardrail: { findings: Array<{ category: string }> } }).guardrail.findings.map((f) => f.category)), [['scan_limit']]);
});

function aam(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(NODE_BIN, [join(ROOT, 'bin', 'aam.js'), ...args], { cwd: ROOT, env: { ...process.env, AAM_LOG_LEVEL: 'error' } });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d; });
    p.stderr.on('data', (d: Buffer) => { stderr += d; });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('aam validate (bin/aam.js): a regex the linear engine cannot run is an error naming the field; nested quantifiers are fine', async () => {
  const file = (name: string, regex: string[]) => {
    const path = join(scratch, name);
    writeFileSync(path, doc('Guardrail', 'g', { on: ['input'], action: 'block', regex }));
    return path;
  };
  const bad = await aam(['validate', file('bad.yaml', ['ACME-\\d{6}', '(\\w+)-\\1'])]);
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stderr, /spec\.regex\[1\].*cannot run in linear time: it uses a backreference/);
  const good = await aam(['validate', file('good.yaml', ['ACME-\\d{6}', '(a+)+b'])]);
  assert.equal(good.code, 0, good.stdout + good.stderr);
});
