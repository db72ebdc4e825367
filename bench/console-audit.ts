// Console audit pages at 1M events: a real gateway (startGateway, in this process) serving a trail
// built by `bench/audit-query.ts --dir DIR`, timed over HTTP as the console fetches them: the
// audit page with each filter (agent, team, decision, plane, time, trace) and the request page
// (its events and the latest signed checkpoint). Writes a section of bench/AUDIT-RESULTS.md.
//   node_modules/.bin/node bench/console-audit.ts --dir DIR
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGateway } from '../src/cli/serve.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { replaceSection } from './lib/report.ts';

const dirArg = process.argv.indexOf('--dir');
if (dirArg < 0) throw new Error('usage: bench/console-audit.ts --dir DIR (a trail from bench/audit-query.ts --dir DIR)');
const dataDir = process.argv[dirArg + 1];
const work = mkdtempSync(join(tmpdir(), 'aam-bench-console-'));
process.once('exit', () => rmSync(work, { recursive: true, force: true }));
const TOKEN = 'console-latency-admin-token-0123456789abcdef';
const doc = (kind: string, name: string, spec: unknown) => `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec: ${JSON.stringify(spec)}\n`;
const agents = [...[1, 2, 3, 4, 5].map((i) => doc('Agent', `agent-${i}`, { workload: `spiffe://prod/agent/agent-${i}`, team: 'five' })), doc('Agent', 'rare-agent', { workload: 'spiffe://prod/agent/rare-agent', team: 'rare' })];
const configPath = join(work, 'aam.yaml');
writeFileSync(configPath, [doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }), ...agents].join('---\n'));
const t0 = performance.now();
const g = await startGateway({ configPath, dataDir, port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: TOKEN }, parseConfig: parseConfigTexts });
const startSeconds = (performance.now() - t0) / 1000;
const url = `http://127.0.0.1:${g.port}`;
const since = new Date(Date.now() - 24 * 3600e3).toISOString();
const paths: [string, string][] = [
  ['audit page, no filter (newest 100)', '/admin/v1/audit'],
  ['agent rare-agent', '/admin/v1/audit?agent=rare-agent'],
  ['team rare (the rare agent)', '/admin/v1/audit?team=rare'],
  ['team five (5 agents)', '/admin/v1/audit?team=five'],
  ['decision deny (none)', '/admin/v1/audit?decision=deny'],
  ['plane tool (none)', '/admin/v1/audit?plane=tool'],
  ['plane model + decision allow + team five', '/admin/v1/audit?plane=model&decision=allow&team=five'],
  ['since 24 h + agent rare-agent', `/admin/v1/audit?since=${since}&agent=rare-agent`],
  ['trace id (one trace, a quarter into the trail)', `/admin/v1/audit?trace_id=0af76519${(250_000).toString(16).padStart(24, '0')}`],
  ['request page (req-250000: events + latest checkpoint)', '/admin/v1/audit/requests/req-250000'],
  ['request page, request id that does not exist', '/admin/v1/audit/requests/req-missing'],
  ['console page (HTML)', '/console'],
];
const rows: string[] = [];
for (const [name, p] of paths) {
  const ms: number[] = []; let n = 0; let status = 0;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    const res = await fetch(url + p, { headers: { authorization: `Bearer ${TOKEN}` } });
    const body = await res.text(); status = res.status;
    ms.push(performance.now() - t);
    if (body.startsWith('{')) n = ((JSON.parse(body) as { data?: unknown[] }).data ?? []).length;
  }
  ms.sort((a, b) => a - b);
  rows.push(`| ${name} | ${ms[2].toFixed(1)} ms | ${status} | ${n} |`);
}
await g.close();
const md = `Measured ${new Date().toISOString()} with \`node_modules/.bin/node bench/console-audit.ts --dir DIR\` on Node ${process.version}, ${cpus().length} CPUs; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} when it ended (the machine was shared).
The console's audit requests over HTTP (admin token; the same handlers serve the console session) against a gateway started on the 1,000,000-event trail of the audit-query section (up in ${startSeconds.toFixed(1)} s); medians of 5, the JSON body read whole.

| request | median of 5 | status | events |
|---|---|---|---|
${rows.join('\n')}`;
console.log(md);
replaceSection(join(dirname(fileURLToPath(import.meta.url)), 'AUDIT-RESULTS.md'), 'console-audit', md, '# Audit benchmark results\n');
