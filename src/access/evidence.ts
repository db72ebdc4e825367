// How an identity appears in audit events and usage: the whole Agent record, never a secret.
import type { Identity } from '../identity/types.ts';
import type { AuditIdentity } from '../audit/event.ts';

export function identityEvidence(id: Identity): AuditIdentity {
  const a = id.agent;
  return {
    spiffe_id: a.spiffeId, agent: a.name, owner: a.owner, team: a.team, environment: a.environment, deployment: a.deployment,
    method: id.method, key_id: id.keyId, token_id: id.tokenId,
  };
}
