// Coded errors for the credential plane. Messages name the credential and say how to fix the
// problem; they never contain a secret value (callers pass names and sources, not values).

export type CredentialErrorCode =
  | 'credential_config'      // a Credential cannot be loaded (missing env var, file, stored value)
  | 'credential_unknown'     // no such Credential
  | 'credential_unavailable' // an upstream token could not be obtained (token endpoint down, rejected)
  | 'credential_principal'   // a per-principal credential was asked for without a principal
  | 'master_key';            // master key missing, unreadable, too open or wrong

export class CredentialError extends Error {
  readonly code: CredentialErrorCode;
  /** HTTP status for the agent-facing response when this happens on the request path. */
  readonly status: number;
  /** Credential name (never its value), when the error concerns one credential. */
  readonly credential?: string;
  constructor(code: CredentialErrorCode, message: string, opts: { status?: number; credential?: string } = {}) {
    super(message);
    this.name = 'CredentialError';
    this.code = code;
    this.status = opts.status ?? 500;
    this.credential = opts.credential;
  }
}
