// Pure helpers behind `aam identity issue --agent NAME --ttl 15m` and the token endpoint.
import { jose } from '../lib/jose.ts';
import type { Issuer } from './issuer.ts';
import { MAX_TTL_SECONDS } from './issuer.ts';
import type { AgentRegistry } from './registry.ts';
import { parseDurationSeconds } from '../config/duration.ts';

export const DEFAULT_TTL_SECONDS = 15 * 60;
/** Audience aam expects in tokens for itself unless configured otherwise. */
export const DEFAULT_AUDIENCE = 'aam';

/** '15m' | '1h' | '90s' | '1h30m' | '300' (seconds) -> seconds; throws with a usage hint. */
export function parseTtl(text: string, max = MAX_TTL_SECONDS): number {
  const seconds = parseDurationSeconds(text, 'ttl');
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
    /**
     * Virtual-key id and the generation (secret) the agent exchanged: the token then dies with that
     * secret (key revoked or expired, secret rotated past its grace period).
     */
    keyId?: string;
    keyGeneration?: string;
    /** Latest expiry (seconds since epoch): a token never outlives the credential it was minted from. */
    notAfter?: number;
  },
): Promise<IssuedSvid> {
  const agent = registry.byName(o.agent);
  if (!agent) {
    const known = registry.all().map((a) => a.name).slice(0, 20).join(', ') || 'none defined';
    throw new Error(`unknown Agent "${o.agent}" (defined: ${known})`);
  }
  let ttl = o.ttlSeconds ?? DEFAULT_TTL_SECONDS;
  // At least 1 s: a secret that lapses within the second is caught when the token is used.
  if (o.notAfter !== undefined) ttl = Math.max(1, Math.min(ttl, o.notAfter - Math.floor(Date.now() / 1000)));
  const jti = o.jti ?? crypto.randomUUID();
  const token = await issuer.mint({
    spiffeId: agent.spiffeId, audience: o.audience ?? DEFAULT_AUDIENCE, ttlSeconds: ttl, jti,
    extra: {
      agent: agent.name,
      ...(o.keyId !== undefined ? { aam_key: o.keyId } : {}),
      ...(o.keyGeneration !== undefined ? { aam_key_gen: o.keyGeneration } : {}),
    },
  });
  return { token, spiffeId: agent.spiffeId, agent: agent.name, expiresAt: jose().decodeJwt(token).exp as number, jti };
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
