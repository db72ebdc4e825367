// Step 1 of every access path: who is calling? A virtual key, a JWT-SVID or an mTLS X.509-SVID,
// always resolved to an Agent record. Anything else is a 401 that says what to send instead.
import type { TLSSocket } from 'node:tls';
import { AamError } from './errors.ts';
import type { Ctx } from './request.ts';
import type { AgentRecord, Identity } from '../identity/types.ts';
import { KEY_PREFIX } from '../identity/keys.ts';
import { looksLikeJwt } from '../identity/jwt-svid.ts';
import { trustDomainOfId } from '../policy/compile.ts';

/**
 * The bearer secret from `Authorization: Bearer`, `x-api-key` (Anthropic SDKs) or `api-key` (Azure SDKs).
 * An Authorization header decides alone (a `Basic` one is no credential). Two of them carrying
 * different secrets are refused: which one names the caller would depend on the reader (a proxy,
 * a rate limiter or a log keyed on the other header would disagree with aam's evidence).
 */
export function presentedSecret(headers: Ctx['req']['headers']): string | undefined {
  const auth = headers.authorization;
  const bearer = typeof auth === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(auth)?.[1] : undefined;
  const x = keyHeader(headers['x-api-key']);
  const a = keyHeader(headers['api-key']);
  const first = bearer ?? x ?? a;
  if ((x !== undefined && x !== first) || (a !== undefined && a !== first)) {
    throw unauthorized('two different credentials in one request ("Authorization: Bearer", x-api-key, api-key): send one', 'invalid_api_key');
  }
  return typeof auth === 'string' ? bearer : first;
}

/** A key header's secret, trimmed; none when absent or blank. (No arrays: this runs on every request.) */
function keyHeader(v: string | string[] | undefined): string | undefined {
  if (typeof v !== 'string') return undefined;
  const k = v.trim();
  return k === '' ? undefined : k;
}

function unauthorized(message: string, code: 'missing_credentials' | 'invalid_api_key' | 'invalid_token' = 'invalid_api_key'): AamError {
  return new AamError(401, code, message, { headers: { 'www-authenticate': 'Bearer realm="aam"' } });
}

/** An identity the config does not register (external JWT/X.509): policy may still match it by SPIFFE ID. */
function unregistered(spiffeId: string): AgentRecord {
  return { name: '', spiffeId, trustDomain: trustDomainOfId(spiffeId), labels: {} };
}

/** The caller's identity; no promise unless verifying it waits (a JWT-SVID's keys). Throws 401 when there is none. */
export function identify(ctx: Ctx): Identity | Promise<Identity> {
  const id = resolveIdentity(ctx);
  return id instanceof Promise ? id.then((i) => identified(ctx, i)) : identified(ctx, id);
}

function identified(ctx: Ctx, id: Identity): Identity {
  // Evidence follows: the audit writer thread, if it stopped for idleness, starts now, off this request's path.
  ctx.rt.audit?.warm?.();
  ctx.rt.identitySeen.note(id.agent.name, id.method);
  ctx.span?.setAttributes({ 'gen_ai.agent.id': id.agent.spiffeId, 'gen_ai.agent.name': id.agent.name, 'aam.auth.method': id.method });
  return id;
}

function resolveIdentity(ctx: Ctx): Identity | Promise<Identity> {
  const secret = presentedSecret(ctx.req.headers);
  const { cfg, rt } = ctx;
  if (secret === undefined) {
    const sock = ctx.req.socket as TLSSocket;
    if (sock.encrypted && rt.tls) {
      const peer = rt.tls.identify(sock);
      if (!peer.ok) throw unauthorized(`client certificate rejected: ${peer.reason}`, 'invalid_token');
      const agent = cfg.policies.agents.get(cfg.policies.bySpiffe.get(peer.spiffeId) ?? '') ?? unregistered(peer.spiffeId);
      return { agent, method: 'x509_svid', tokenId: peer.serial };
    }
    throw unauthorized('no credentials: send "Authorization: Bearer <aam virtual key or JWT-SVID>" (create a key with: aam keys create --agent NAME)', 'missing_credentials');
  }
  if (secret.startsWith(KEY_PREFIX)) {
    const r = rt.keyBook.authenticate(secret);
    if (!r.ok) throw unauthorized(`invalid API key: ${r.reason}`);
    const agent = cfg.policies.agents.get(r.key.agent);
    if (!agent) throw unauthorized(`API key ${r.key.id} is bound to agent "${r.key.agent}", which is not in the current config`);
    return { agent, method: 'virtual_key', keyId: r.key.id, keyGeneration: r.generation };
  }
  if (looksLikeJwt(secret) && rt.jwt) return jwtIdentity(ctx, secret, rt.jwt);
  throw unauthorized('unrecognised credential: expected an aam virtual key (aam_...) or a JWT-SVID');
}

async function jwtIdentity(ctx: Ctx, secret: string, jwt: NonNullable<Ctx['rt']['jwt']>): Promise<Identity> {
  const { cfg, rt } = ctx;
  const v = await jwt.verify(secret, ctx.resource);
  if (!v.ok) {
    if (v.status === 503) throw new AamError(503, 'unavailable', `cannot verify JWT-SVID right now: ${v.message}`, { headers: { 'retry-after': '5' } });
    throw unauthorized(`invalid JWT-SVID (${v.code}): ${v.message}`, 'invalid_token');
  }
  if (rt.isTokenRevoked(v)) throw unauthorized('JWT-SVID was issued for a virtual key that has since been revoked', 'invalid_token');
  const agent = cfg.policies.agents.get(cfg.policies.bySpiffe.get(v.spiffeId) ?? '') ?? unregistered(v.spiffeId);
  // A token minted from a virtual key counts against that key (per-key limits, usage) like the key itself.
  return { agent, method: 'jwt_svid', tokenId: v.jti, ...(v.keyId !== undefined ? { keyId: v.keyId, keyGeneration: v.keyGeneration } : {}) };
}
