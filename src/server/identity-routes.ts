// Identity endpoints: aam's JWKS, and the token endpoint where an agent exchanges its virtual key
// (or a one-time join token) for a short-lived JWT-SVID.
import { AamError } from './errors.ts';
import { readJson, sendJson, type Ctx } from './context.ts';
import type { Routes } from './http.ts';
import { identify } from '../access/identify.ts';
import { issueAgentSvid, parseTtl, tokenResponse, DEFAULT_TTL_SECONDS } from '../identity/issue.ts';
import { exchangeJoinToken } from '../identity/join-tokens.ts';

async function token(ctx: Ctx): Promise<void> {
  const rt = ctx.rt;
  if (!rt.issuer) throw new AamError(503, 'unavailable', 'the token issuer is not running');
  const raw = ctx.req.headers['content-length'] === '0' ? {} : await readJson(ctx).catch((e) => { throw e; });
  const body = (raw && typeof raw === 'object' ? raw : {}) as { ttl?: unknown; join_token?: unknown; audience?: unknown };
  let ttlSeconds = DEFAULT_TTL_SECONDS;
  if (body.ttl !== undefined) {
    try { ttlSeconds = parseTtl(String(body.ttl)); } catch (e) { throw new AamError(400, 'invalid_request', (e as Error).message, { param: 'ttl' }); }
  }
  const audience = typeof body.audience === 'string' ? body.audience : rt.audience[0];
  if (!rt.audience.includes(audience)) throw new AamError(400, 'invalid_request', `audience must be one of ${rt.audience.join(', ')}`, { param: 'audience' });
  if (typeof body.join_token === 'string') {
    const r = await exchangeJoinToken(rt.joinTokens, rt.issuer, ctx.cfg.registry, body.join_token, { ttlSeconds, audience });
    if (!r.ok) throw new AamError(401, 'invalid_token', `join token rejected: ${r.message}`);
    rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action: 'svid_issued', target: r.svid.spiffeId, actor: 'join_token' }, outcome: { status: 200 } });
    return sendJson(ctx, 200, tokenResponse(r.svid));
  }
  const id = await identify(ctx);
  if (id.method !== 'virtual_key') throw new AamError(400, 'invalid_request', 'exchange a virtual key (Authorization: Bearer aam_...) or send {"join_token": "aamjoin_..."}');
  const svid = await issueAgentSvid(rt.issuer, ctx.cfg.registry, { agent: id.agent.name, ttlSeconds, audience, keyId: id.keyId });
  rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action: 'svid_issued', target: svid.spiffeId, actor: id.keyId }, outcome: { status: 200 } });
  sendJson(ctx, 200, tokenResponse(svid));
}

export function addIdentityRoutes(routes: Routes): void {
  routes.exact.set('GET /.well-known/jwks.json', (ctx) => {
    if (!ctx.rt.issuer) throw new AamError(503, 'unavailable', 'the token issuer is not running');
    sendJson(ctx, 200, ctx.rt.issuer.jwks(), { 'cache-control': 'public, max-age=300' });
  });
  routes.exact.set('POST /identity/v1/token', token);
}
