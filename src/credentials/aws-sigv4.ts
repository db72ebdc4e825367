// AWS Signature Version 4 for upstream requests (Amazon Bedrock). The signature covers the method,
// path, query, host and body, so it is made per request, at the last hop, after the body is
// final. Signing uses @smithy/signature-v4 (the AWS SDK's own signer), not a hand-rolled HMAC,
// imported with the first request signed (~4 MB RSS that gateways without Bedrock never load).
import type { SignatureV4 } from '@smithy/signature-v4';
import { CredentialError } from './errors.ts';

export interface AwsKeys { accessKeyId: string; secretAccessKey: string; sessionToken?: string }

/** The request as it will go out: absolute URL (path and query final), headers, body. */
export interface SignInput { method: string; url: string; headers: Readonly<Record<string, string>>; body: string | Uint8Array }
export interface SigningScope { region: string; service: string }
/** Returns the headers to add (authorization, x-amz-date, x-amz-security-token). */
export type RequestSigner = (req: SignInput, scope: SigningScope) => Promise<Record<string, string>>;

/**
 * The stored value is either the secret access key alone (the key id is in the Credential's
 * aws.access_key_id) or the JSON that `aws configure export-credentials` prints (AccessKeyId,
 * SecretAccessKey, SessionToken), which also carries temporary credentials.
 */
export function parseAwsKeys(credential: string, value: string, accessKeyId: string | undefined): AwsKeys {
  const trimmed = value.trim();
  if (trimmed.startsWith('{')) {
    let j: Record<string, unknown>;
    try { j = JSON.parse(trimmed) as Record<string, unknown>; } catch {
      throw new CredentialError('credential_config', `Credential "${credential}": its value starts with "{" but is not valid JSON; store the secret access key, or the JSON of \`aws configure export-credentials\``, { status: 502, credential });
    }
    const id = typeof j.AccessKeyId === 'string' ? j.AccessKeyId : accessKeyId;
    if (!id || typeof j.SecretAccessKey !== 'string' || j.SecretAccessKey === '') {
      throw new CredentialError('credential_config', `Credential "${credential}": the JSON needs AccessKeyId and SecretAccessKey (and SessionToken for temporary keys)`, { status: 502, credential });
    }
    return { accessKeyId: id, secretAccessKey: j.SecretAccessKey, ...(typeof j.SessionToken === 'string' && j.SessionToken !== '' ? { sessionToken: j.SessionToken } : {}) };
  }
  if (!accessKeyId) throw new CredentialError('credential_config', `Credential "${credential}" (aws_sigv4) needs aws: { access_key_id: AKIA... } or aws: { access_key_id_env: AWS_ACCESS_KEY_ID } (set in the environment) when its value is only the secret access key`, { status: 502, credential });
  return { accessKeyId, secretAccessKey: trimmed };
}

/** Strings to scrub besides the stored value itself (the secret and session token inside a JSON value). */
export function awsScrubParts(value: string): string[] {
  if (!value.trim().startsWith('{')) return [];
  try {
    const j = JSON.parse(value) as Record<string, unknown>;
    return [j.SecretAccessKey, j.SessionToken].filter((v): v is string => typeof v === 'string' && v !== '');
  } catch { return []; }
}

/** Headers that are part of the signature: the ones a hop cannot change without breaking the request. */
function signedHeaders(h: Readonly<Record<string, string>>, host: string): Record<string, string> {
  const out: Record<string, string> = { host };
  for (const [k, v] of Object.entries(h)) {
    const lk = k.toLowerCase();
    if (lk === 'content-type' || lk.startsWith('x-amz-')) out[lk] = v;
  }
  return out;
}

export function awsSigner(keys: AwsKeys, now: () => number = Date.now): RequestSigner {
  // One signer per key: it caches the derived signing key per day, region and service.
  let made: Promise<SignatureV4> | undefined;
  const signerOf = (): Promise<SignatureV4> => made ??= Promise.all([import('@smithy/signature-v4'), import('@aws-crypto/sha256-js')])
    .then(([{ SignatureV4: Signer }, { Sha256 }]) => new Signer({ credentials: keys, region: 'us-east-1', service: 'bedrock', sha256: Sha256 }));
  return async (req, scope) => {
    const signer = await signerOf();
    const u = new URL(req.url);
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of u.searchParams) {
      const prev = query[k];
      query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    const signed = await signer.sign({
      method: req.method, protocol: u.protocol, hostname: u.hostname, port: u.port ? Number(u.port) : undefined,
      path: u.pathname, query, headers: signedHeaders(req.headers, u.host), body: req.body,
    }, { signingRegion: scope.region, signingService: scope.service, signingDate: new Date(now()) });
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(signed.headers)) if (k.toLowerCase() !== 'host') out[k.toLowerCase()] = v;
    return out;
  };
}
