// Pure helpers behind `aam identity issue --agent NAME --ttl 15m` and the token endpoint.
import { decodeJwt } from 'jose';
import type { Issuer } from './issuer.ts';
import { MAX_TTL_SECONDS } from './issuer.ts';
import type { AgentRegistry } from './registry.ts';

export const DEFAULT_TTL_SECONDS = 15 * 60;
/** Audience aam expects in tokens for itself unless configured otherwise. */
export const DEFAULT_AUDIENCE = 'aam';

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** '15m' | '1h' | '90s' | '1h30m' | '300' (seconds) -> seconds; throws with a usage hint. */
export function parseTtl(text: string, max = MAX_TTL_SECONDS): number {
  const t = text.trim();
  let seconds = 0;
  if (/^\d+$/.test(t)) seconds = Number(t);
  else {
    const re = /(\d+)([smhd])/gy;
    let m: RegExpExecArray | null;
    let consumed = 0;
    while ((m = re.exec(t)) !== null) {
      seconds += Number(m[1]) * UNITS[m[2]];
      consumed = re.lastIndex;
    }
    if (consumed === 0 || consumed !== t.length) throw new Error(`invalid ttl "${text}": use e.g. 90s, 15m, 1h or 1h30m`);
  }
  if (seconds <= 0) throw new Error(`invalid ttl "${text}": must be more than 0 seconds`);
  if (seconds > max) throw new Error(`ttl "${text}" is longer than the maximum of ${max}s; JWT-SVIDs are meant to be short-lived`);
  return seconds;
}

export interface IssuedSvid { token: string; spiffeId: string; agent: string; expiresAt: number; jti: string }

/**
 * Mint a JWT-SVID for a registered Agent by name. Refuses unknown agents, so `aam identity issue`
 * and the token endpoint can never vouch for an identity the config does not define.
 */
export async function issueAgentSvid(
  issuer: Pick<Issuer, 'mint'>,
  registry: Pick<AgentRegistry, 'byName' | 'all'>,
  o: {
    agent: string; ttlSeconds?: number; audience?: string | string[]; jti?: string;
    /** Virtual-key id when the agent exchanged a key: the token then dies when that key is revoked. */
    keyId?: string;
  },
): Promise<IssuedSvid> {
  const agent = registry.byName(o.agent);
  if (!agent) {
    const known = registry.all().map((a) => a.name).slice(0, 20).join(', ') || 'none defined';
    throw new Error(`unknown Agent "${o.agent}" (defined: ${known})`);
  }
  const ttl = o.ttlSeconds ?? DEFAULT_TTL_SECONDS;
  const jti = o.jti ?? crypto.randomUUID();
  const token = await issuer.mint({
    spiffeId: agent.spiffeId, audience: o.audience ?? DEFAULT_AUDIENCE, ttlSeconds: ttl, jti,
    extra: { agent: agent.name, ...(o.keyId !== undefined ? { aam_key: o.keyId } : {}) },
  });
  return { token, spiffeId: agent.spiffeId, agent: agent.name, expiresAt: decodeJwt(token).exp as number, jti };
}

/** OAuth2-style token endpoint response body (RFC 6749 section 5.1 field names). */
export function tokenResponse(s: IssuedSvid, now = Date.now()): Record<string, unknown> {
  return {
    access_token: s.token,
    token_type: 'Bearer',
    issued_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    expires_in: Math.max(0, s.expiresAt - Math.floor(now / 1000)),
    spiffe_id: s.spiffeId,
    agent: s.agent,
  };
}
