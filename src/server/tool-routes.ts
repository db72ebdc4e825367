// Tool plane routes: /mcp (all MCP servers the caller may use), /mcp/<server>, /tools/<tool>/<action>,
// and the RFC 9728 metadata MCP clients use to discover how to authenticate.
import type { Ctx, Routes } from './http.ts';
import { AamError, pathSegment } from '../access/errors.ts';
import { keepSseAlive, readJson, sendJson } from '../access/request.ts';
import { openAccess } from '../access/context.ts';
import { toolAccess } from './tool-deps.ts';
import { protectedResourceMetadata, wwwAuthenticate } from '../tools/mcp-metadata.ts';
import type { McpGateway } from '../tools/mcp-shared.ts';
import type { HttpToolProxy } from '../tools/http-tool.ts';

/**
 * Where MCP clients are told to authenticate: AAM_PUBLIC_URL, else the address this connection
 * arrived on. Never the Host header: a client could point other clients' metadata anywhere.
 */
export function baseUrl(ctx: Ctx): string {
  if (ctx.rt.options.publicUrl) return ctx.rt.options.publicUrl;
  const s = ctx.req.socket as { encrypted?: boolean; localAddress?: string; localPort?: number };
  const addr = (s.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  return `${s.encrypted ? 'https' : 'http'}://${addr.includes(':') ? `[${addr}]` : addr}:${s.localPort}`;
}

/** Identify the caller and open its access context; a 401 tells MCP clients where to authenticate. */
async function accessForMcp(ctx: Ctx, path: string) {
  try {
    return toolAccess(await openAccess(ctx));
  } catch (e) {
    if (e instanceof AamError && e.status === 401) {
      throw new AamError(401, e.code, e.message, { headers: { 'www-authenticate': wwwAuthenticate(baseUrl(ctx), path) } });
    }
    throw e;
  }
}


/**
 * The tool planes answer through the MCP SDK and the HTTP tool proxy, not sendJson: aam's id goes
 * on the response here (as on every other route), and replaces the client's x-request-id in the
 * request the plane reads, so the plane keys its evidence by aam's id.
 */
function stampRequestId(ctx: Ctx): void {
  ctx.req.headers['x-request-id'] = ctx.requestId;
  ctx.res.setHeader('x-request-id', ctx.requestId);
}

export function addToolRoutes(routes: Routes, mcp: McpGateway, http: HttpToolProxy): void {
  const mcpHandler = async (ctx: Ctx) => {
    const rest = ctx.path === '/mcp' ? '' : ctx.path.slice('/mcp/'.length);
    if (rest.includes('/')) throw new AamError(404, 'not_found', `no MCP endpoint ${ctx.path}; use /mcp or /mcp/<server>`);
    // RFC 8707: this route's own URL is an audience a token may carry to be accepted here (and only here).
    ctx.resource = baseUrl(ctx) + ctx.path;
    const access = await accessForMcp(ctx, ctx.path);
    const server = rest ? pathSegment(rest, 'MCP server name') : null;
    const body = ctx.req.method === 'POST' ? await readJson(ctx) : undefined;
    stampRequestId(ctx);
    // Session streams (GET /mcp) are idle by nature: comment frames keep proxies from cutting them.
    keepSseAlive(ctx.res, ctx.rt.options.sseKeepaliveMs);
    await mcp.handle(ctx.req, ctx.res, access, server, body);
  };
  routes.exact.set('POST /mcp', mcpHandler);
  routes.exact.set('GET /mcp', mcpHandler);
  routes.exact.set('DELETE /mcp', mcpHandler);
  routes.prefixes.push(['/mcp/', mcpHandler]);
  routes.prefixes.push(['/tools/', async (ctx) => {
    const m = /^\/tools\/([^/]+)\/([^/]+)$/.exec(ctx.path);
    if (!m) throw new AamError(404, 'not_found', 'HTTP tools are called at /tools/<tool>/<action>');
    const access = toolAccess(await openAccess(ctx));
    const tool = pathSegment(m[1], 'tool name');
    const action = pathSegment(m[2], 'action name');
    const body = ctx.req.method === 'GET' || ctx.req.headers['content-length'] === '0' ? {} : await readJson(ctx);
    stampRequestId(ctx);
    await http.handle(ctx.req, ctx.res, access, tool, action, body);
  }]);
  const meta = (path: string) => (ctx: Ctx) => sendJson(ctx, 200, protectedResourceMetadata({ baseUrl: baseUrl(ctx), path }));
  routes.exact.set('GET /.well-known/oauth-protected-resource', meta('/mcp'));
  routes.exact.set('GET /.well-known/oauth-protected-resource/mcp', meta('/mcp'));
  routes.prefixes.push(['/.well-known/oauth-protected-resource/mcp/', (ctx) => meta(ctx.path.slice('/.well-known/oauth-protected-resource'.length))(ctx)]);
}
