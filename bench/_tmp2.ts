import { config, connectClient, makeDeps, startGateway, startHttpFixture } from '../test/fixtures/mcp-accounts/harness.ts';
const web = await startHttpFixture();
const yaml = `apiVersion: access.envisionai.dev/v1
kind: McpServer
metadata: { name: web }
spec: { transport: streamable-http, url: ${JSON.stringify(web.url)}, timeout_ms: 5000, tools: { search_accounts: { resource: salesforce.accounts, action: search } } }
`;
const deps = makeDeps();
deps.log = { info() {}, warn() {}, error() {} };
deps.audit = { record() {}, async recordDurable(ev) { return ev; } };
const gw = await startGateway(config(yaml), deps);
const c = (await connectClient(gw.base, 'tok-analyst')).client;
const up = gw.gateway; 
const entry = (up as any);
for (let i = 0; i < 300; i++) await c.callTool({ name: 'web__search_accounts', arguments: { query: 'a' } });
const t: number[] = [];
for (let i = 0; i < 2000; i++) { const s = performance.now(); await c.callTool({ name: 'web__search_accounts', arguments: { query: 'a' } }); t.push(performance.now() - s); }
t.sort((a, b) => a - b);
console.log('via p50', t[1000], 'p99', t[1980]);
await c.close(); await gw.close(); await web.close();
