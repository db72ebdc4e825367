// Verified SVID (JWT or X.509) -> the Identity every plane sees. A valid SVID whose SPIFFE ID has
// no Agent resource is not an identity aam knows: 401 with a message naming the missing workload.
import type { Identity } from './types.ts';
import type { AgentRegistry } from './registry.ts';
import type { VerifiedSvid } from './jwt-svid.ts';
import type { TlsPeerResult } from './x509-svid.ts';

export type Resolved = { ok: true; identity: Identity } | { ok: false; code: 'unknown_agent'; message: string };

function unknown(spiffeId: string): Resolved {
  return { ok: false, code: 'unknown_agent', message: `no Agent resource has workload ${spiffeId}; add one to the config` };
}

export function identityFromJwtSvid(svid: VerifiedSvid, registry: Pick<AgentRegistry, 'bySpiffeId'>): Resolved {
  const agent = registry.bySpiffeId(svid.spiffeId);
  if (!agent) return unknown(svid.spiffeId);
  return {
    ok: true,
    identity: {
      agent, method: 'jwt_svid',
      ...(svid.keyId !== undefined ? { keyId: svid.keyId } : {}),
      ...(svid.jti !== undefined ? { tokenId: svid.jti } : {}),
    },
  };
}

export function identityFromTlsPeer(peer: Extract<TlsPeerResult, { ok: true }>, registry: Pick<AgentRegistry, 'bySpiffeId'>): Resolved {
  const agent = registry.bySpiffeId(peer.spiffeId);
  if (!agent) return unknown(peer.spiffeId);
  return { ok: true, identity: { agent, method: 'x509_svid', tokenId: peer.serial } };
}
