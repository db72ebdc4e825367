// Added latency of an authorized tools/call through aam's MCP gateway vs calling the same upstream
// MCP server directly, for a Streamable HTTP upstream and a stdio upstream.
// Run: node_modules/.bin/node bench/mcp-call.ts [calls=3000]
import { createPageStore } from '../src/tools/mcp-pages.ts';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { toolAccess, toolDeps } from '../src/server/tool-deps.ts';
import { Access } from '../src/access/context.ts';
import type { Ctx } from '../src/server/http.ts';
import type { Identity } from '../src/identity/types.ts';
import { createApprovals } from '../src/store/approvals.ts';
import { compileValidator, type Catalog, type CompiledTool, type ServerEntry } from '../src/tools/catalog.ts';
import { callTool, type Runtime, type SessionCtx } from '../src/tools/mcp-call.ts';
import type { Upstream } from '../src/tools/upstream.ts';
import { doc, startTestGateway, yaml } from '../test/helpers/gateway.ts';
import { connectClient } from '../test/helpers/mcp.ts';
import { FIXTURE, NODE, startHttpFixture, stdioServerDoc } from '../test/fixtures/mcp-accounts/upstream.ts';

const N = Number(process.argv[2] ?? 3000);
const WARMUP = 300;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function measure(client: Client, tool: string): Promise<number[]> {
  const args = { query: 'acme', limit: 10 };
  for (let i = 0; i < WARMUP; i++) await client.callTool({ name: tool, arguments: args });
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await client.callTool({ name: tool, arguments: args });
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

const fmt = (ms: number) => `${(ms * 1000).toFixed(ms < 0.1 ? 1 : 0)} us`;
const rows: string[] = [];
function report(label: string, direct: number[], via: number[]): void {
  const line = `| ${label} | ${fmt(pct(direct, 50))} | ${fmt(pct(direct, 99))} | ${fmt(pct(via, 50))} | ${fmt(pct(via, 99))} | ${fmt(pct(via, 50) - pct(direct, 50))} | ${fmt(pct(via, 99) - pct(direct, 99))} |`;
  rows.push(line);
}

// The real gateway: virtual key, policy engine, guardrail step, credential scrubber and audit trail.
process.env.AAM_LOG_LEVEL ??= 'error';
const web = await startHttpFixture();
const workload = 'spiffe://prod/agent/finance-analyst';
const gw = await startTestGateway(yaml(
  stdioServerDoc('crm'),
  doc('McpServer', 'web', { transport: 'streamable-http', url: web.url, timeout_ms: 5000, tools: { search_accounts: { resource: 'salesforce.accounts', action: 'search' } } }),
  doc('Agent', 'finance-analyst', { workload, team: 'finance', environment: 'prod' }),
  doc('AgentPolicy', 'finance-analyst-readonly', { identity: { workload }, tools: [{ resource: 'salesforce.accounts', actions: ['search'], args: { limit: { max: 100 } } }] }),
));

// Streamable HTTP upstream
const directHttp = new Client({ name: 'bench', version: '1' });
await directHttp.connect(new StreamableHTTPClientTransport(new URL(web.url)));
const viaHttp = (await connectClient(gw, gw.key('finance-analyst'))).client;
report('Streamable HTTP upstream', await measure(directHttp, 'search_accounts'), await measure(viaHttp, 'web__search_accounts'));

// stdio upstream
const directStdio = new Client({ name: 'bench', version: '1' });
await directStdio.connect(new StdioClientTransport({ command: NODE, args: [FIXTURE, 'stdio'], stderr: 'ignore' }));
report('stdio upstream (direct = client spawns it over stdio)', await measure(directStdio, 'search_accounts'), await measure(viaHttp, 'crm__search_accounts'));

// aam's own per-call work (resolve, validate, guard, decide, audit, scrub, size check) with the gateway's own
// access steps and a stub upstream, no sockets.
{
  const result: CallToolResult = { content: [{ type: 'text', text: '[{"id":"a1","name":"Acme Corp"}]' }] };
  const upstream = { callTool: async () => result } as unknown as Upstream;
  const def = { name: 'search_accounts', description: 'Search', inputSchema: { type: 'object', properties: { query: { type: 'string' }, limit: { type: 'integer' } }, required: ['query'] } };
  const t: CompiledTool = { server: 'crm', def, resource: 'salesforce.accounts', action: 'search', mutating: false, integrity: { ok: true, digest: '' }, validate: compileValidator(def.inputSchema) };
  const entry = { name: 'crm', spec: { transport: 'stdio' }, upstream, resource: 'crm', tools: new Map([['search_accounts', t]]), defs: [def] } as unknown as ServerEntry;
  const catalog = { servers: new Map([['crm', entry]]), resolve: async () => t } as unknown as Catalog;
  const deps = toolDeps(gw.g.rt);
  const rt: Runtime = { catalog, deps, approvals: createApprovals(deps.db), maxResultBytes: 1 << 20, pages: createPageStore() };
  const identity: Identity = { agent: gw.g.rt.compiled.registry.byName('finance-analyst')!, method: 'virtual_key' };
  // One access context for the whole run: the per-request policy resolution is not part of a call.
  const access = toolAccess(new Access({ rt: gw.g.rt, cfg: gw.g.rt.compiled, requestId: 'bench' } as unknown as Ctx, identity));
  const s: SessionCtx = { identity, access, scope: null, sessionId: () => 'bench', resourceOwner: new Map(), templateOwners: [], subscriptions: new Map() };
  const args = { query: 'acme', limit: 10 };
  for (let i = 0; i < 2000; i++) await callTool(rt, s, 'crm__search_accounts', args, {});
  const out: number[] = [];
  for (let i = 0; i < N * 3; i++) { const t0 = performance.now(); await callTool(rt, s, 'crm__search_accounts', args, {}); out.push(performance.now() - t0); }
  out.sort((a, b) => a - b);
  rows.push(`| aam call pipeline only (in-process, stub upstream, no sockets) | - | - | ${fmt(pct(out, 50))} | ${fmt(pct(out, 99))} | ${fmt(pct(out, 50))} | ${fmt(pct(out, 99))} |`);
}

console.log(`tools/call search_accounts, ${N} sequential calls after ${WARMUP} warm-up, Node ${process.version}\n`);
console.log('| upstream | direct p50 | direct p99 | via aam p50 | via aam p99 | added p50 | added p99 |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);

await directHttp.close();
await directStdio.close();
await viaHttp.close();
await gw.close();
await web.close();
