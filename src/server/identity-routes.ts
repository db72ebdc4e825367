// Identity endpoints: aam's JWKS, and the token endpoint where an agent exchanges its virtual key
// (or a one-time join token) for a short-lived JWT-SVID.
import { AamError } from '../access/errors.ts';
import { readJson, sendJson } from '../access/request.ts';
import type { Ctx, Routes } from './http.ts';
import { identify, presentedSecret } from '../access/identify.ts';
import { issueAgentSvid, parseTtl, tokenResponse, DEFAULT_TTL_SECONDS } from '../identity/issue.ts';
import { exchangeJoinToken } from '../identity/join-tokens.ts';
import { baseUrl } from './tool-routes.ts';

/** A token request is a few short fields; nothing bigger is read, let alone parsed. */
export const TOKEN_BODY_MAX_BYTES = 8 * 1024;

const WHAT_TO_SEND = 'exchange a virtual key (Authorization: Bearer aam_...) or send {"join_token": "aamjoin_..."}';

interface TokenBody { ttl?: unknown; join_token?: unknown; audience?: unknown; resource?: unknown }

async function tokenBody(ctx: Ctx): Promise<TokenBody> {
  if (ctx.req.headers['content-length'] === '0') return {};
  const raw = await readJson(ctx, TOKEN_BODY_MAX_BYTES);
  return (raw && typeof raw === 'object' ? raw : {}) as TokenBody;
}

async function token(ctx: Ctx): Promise<void> {
  const rt = ctx.rt;
  if (!rt.issuer) throw new AamError(503, 'unavailable', 'the token issuer is not running');
  // Authenticate from the headers before reading the body, so an unauthenticated caller costs no
  // body read or parse. Only a join-token exchange carries its credential in the (small) body.
  const id = presentedSecret(ctx.req.headers) !== undefined ? await identify(ctx) : undefined;
  if (id && id.method !== 'virtual_key') throw new AamError(400, 'invalid_request', WHAT_TO_SEND);
  const body = await tokenBody(ctx);
  let ttlSeconds = DEFAULT_TTL_SECONDS;
  if (body.ttl !== undefined) {
    try { ttlSeconds = parseTtl(String(body.ttl)); } catch (e) { throw new AamError(400, 'invalid_request', (e as Error).message, { param: 'ttl' }); }
  }
  const audience = body.resource !== undefined ? resourceAudience(ctx, body) : typeof body.audience === 'string' ? body.audience : rt.audience[0];
  if (body.resource === undefined && !rt.audience.includes(audience)) throw new AamError(400, 'invalid_request', `audience must be one of ${rt.audience.join(', ')}`, { param: 'audience' });
  if (!id) {
    if (typeof body.join_token !== 'string') {
      await identify(ctx); // no credentials at all: the usual 401 saying what to send
      throw new AamError(400, 'invalid_request', WHAT_TO_SEND); // an X.509-SVID cannot be exchanged
    }
    const r = await exchangeJoinToken(rt.joinTokens, rt.issuer, ctx.cfg.registry, body.join_token, { ttlSeconds, audience });
    if (!r.ok) throw new AamError(401, 'invalid_token', `join token rejected: ${r.message}`);
    rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action: 'svid_issued', target: r.svid.spiffeId, actor: 'join_token' }, outcome: { status: 200 } });
    return sendJson(ctx, 200, tokenResponse(r.svid));
  }
  // The token carries the key and the secret (generation) it was minted from and dies with them;
  // it never outlives the secret's own expiry (key expiry or end of a rotation grace period).
  const until = id.keyGeneration !== undefined ? rt.keyBook.generationValidUntil(id.keyGeneration) : null;
  const svid = await issueAgentSvid(rt.issuer, ctx.cfg.registry, {
    agent: id.agent.name, ttlSeconds, audience, keyId: id.keyId, keyGeneration: id.keyGeneration,
    ...(until !== null ? { notAfter: Math.floor(until / 1000) } : {}),
  });
  rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action: 'svid_issued', target: svid.spiffeId, actor: id.keyId }, outcome: { status: 200 } });
  sendJson(ctx, 200, tokenResponse(svid));
}

/**
 * RFC 8707 `resource`: a token for one MCP route (its URL is the token's only audience), accepted
 * on that route alone. Only aam's own routes can be named: the token is a JWT-SVID for aam.
 */
function resourceAudience(ctx: Ctx, body: TokenBody): string {
  const base = baseUrl(ctx);
  const r = body.resource;
  const hint = `name an MCP route of this gateway, like "${base}/mcp" or "${base}/mcp/<server>"`;
  if (body.audience !== undefined) throw new AamError(400, 'invalid_request', `send "resource" or "audience", not both; "resource" alone makes the route URL the token's audience`, { param: 'resource' });
  if (typeof r !== 'string') throw new AamError(400, 'invalid_request', `"resource" must be a string: ${hint}`, { param: 'resource' });
  if (r === `${base}/mcp`) return r;
  const rest = r.startsWith(`${base}/mcp/`) ? r.slice(base.length + '/mcp/'.length) : '';
  let server = '';
  try { server = decodeURIComponent(rest); } catch { /* refused below */ }
  if (!server || rest.includes('/') || !ctx.cfg.set.mcpServers.has(server)) throw new AamError(400, 'invalid_request', `resource "${r.slice(0, 300)}" is not an MCP route of this gateway: ${hint} (configured servers: ${[...ctx.cfg.set.mcpServers.keys()].join(', ') || 'none'})`, { param: 'resource' });
  return r;
}

export function addIdentityRoutes(routes: Routes): void {
  routes.exact.set('GET /.well-known/jwks.json', (ctx) => {
    if (!ctx.rt.issuer) throw new AamError(503, 'unavailable', 'the token issuer is not running');
    sendJson(ctx, 200, ctx.rt.issuer.jwks(), { 'cache-control': 'public, max-age=300' });
  });
  // On-behalf-of assertions have their own keys: a downstream that accepts them trusts this JWKS only.
  routes.exact.set('GET /identity/v1/obo/jwks.json', (ctx) => {
    if (!ctx.rt.issuer) throw new AamError(503, 'unavailable', 'the token issuer is not running');
    sendJson(ctx, 200, ctx.rt.issuer.oboJwks(), { 'cache-control': 'public, max-age=300' });
  });
  routes.exact.set('POST /identity/v1/token', token);
}
