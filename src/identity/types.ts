// The verified caller. Every plane (policy, usage, metrics, audit) sees this one record.

export interface AgentRecord {
  /** Agent resource name (metadata.name). */
  name: string;
  /** SPIFFE ID, e.g. spiffe://prod/agent/finance-analyst. */
  spiffeId: string;
  trustDomain: string;
  owner?: string;
  team?: string;
  environment?: string;
  deployment?: string;
  labels: Readonly<Record<string, string>>;
}

export type AuthMethod = 'virtual_key' | 'jwt_svid' | 'x509_svid';

export interface Identity {
  agent: AgentRecord;
  method: AuthMethod;
  /** Stable virtual-key id (never the secret) when method is virtual_key. */
  keyId?: string;
  /** Which secret of that key (its generation, see keys.ts generationOf): tokens minted from it die with it. */
  keyGeneration?: string;
  /** JWT id / certificate serial for the other methods. */
  tokenId?: string;
}
