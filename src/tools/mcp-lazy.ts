// The MCP gateway (catalog, upstream connections, Ajv) loads only once it is needed: when the
// config has MCP servers (at start or after a reload) or on the first request to /mcp; the MCP
// SDK itself loads later still, with the first session a client opens (mcp-gateway.ts). Until then
// this front answers what needs neither: approvals (shared with the HTTP tool proxy), tool digests
// (admin diff/accept/flagged) and status (no servers, so empty).
import type { ConfigSet } from '../config/schema.ts';
import type { ToolDeps } from './types.ts';
import { createMcpShared, type McpGateway, type McpGatewayOptions } from './mcp-shared.ts';

export function createLazyMcpGateway(config: ConfigSet, deps: ToolDeps, opts: McpGatewayOptions = {}): McpGateway {
  const shared = createMcpShared(deps, opts);
  let current = config;
  let loaded: McpGateway | null = null;
  let loading: Promise<McpGateway> | null = null;
  // Built with the config current when the import finishes, so a reload meanwhile is not lost.
  const load = () => loading ??= import('./mcp-gateway.ts').then((m) => (loaded = m.createMcpGateway(current, deps, opts, shared)));
  if (config.mcpServers.size > 0) void load().catch((e: unknown) => deps.log.error({ err: e }, 'MCP gateway failed to load'));

  return {
    async handle(req, res, access, serverName, parsedBody) {
      return (await load()).handle(req, res, access, serverName, parsedBody);
    },
    async reload(next) {
      current = next;
      if (loading) return (await loading).reload(next);
      if (next.mcpServers.size > 0) await load();
    },
    async close() {
      if (loading) await (await loading.catch(() => null))?.close();
    },
    approvals: shared.approvals,
    toolDiff: (server, tool) => (loaded ? loaded.toolDiff(server, tool) : shared.integrity.diff(server, tool)),
    acceptTool: (server, tool, actor) => (loaded ? loaded.acceptTool(server, tool, actor) : shared.integrity.accept(server, tool, actor)),
    flaggedTools: () => shared.integrity.flagged(),
    // No gateway yet means no server configured yet: none to report.
    status: () => (loaded ? loaded.status() : {}),
  };
}
