// Google service-account OAuth (RFC 7523 JWT bearer grant): aam signs a short JWT with the
// service account's private key and exchanges it at the token endpoint for an access token,
// which the injector caches until shortly before it expires. The key never leaves aam.
import { jose } from '../lib/jose.ts';
import { CredentialError } from './errors.ts';

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** Google accepts assertions valid for at most one hour. */
const ASSERTION_TTL_S = 3600;

export interface ServiceAccountKey { clientEmail: string; privateKey: string; privateKeyId?: string; tokenUri?: string }

/** Read the JSON key file Google issues; errors name the credential and the missing field, never the content. */
export function parseServiceAccount(credential: string, value: string): ServiceAccountKey {
  let j: Record<string, unknown>;
  try { j = JSON.parse(value) as Record<string, unknown>; } catch {
    throw new CredentialError('credential_config', `Credential "${credential}" (google_service_account) is not JSON; point it at the service account's JSON key file`, { status: 502, credential });
  }
  const email = j.client_email;
  const key = j.private_key;
  if (typeof email !== 'string' || typeof key !== 'string' || !key.includes('PRIVATE KEY')) {
    throw new CredentialError('credential_config', `Credential "${credential}": the service account key needs client_email and private_key (download a JSON key for the service account)`, { status: 502, credential });
  }
  return {
    clientEmail: email, privateKey: key,
    ...(typeof j.private_key_id === 'string' ? { privateKeyId: j.private_key_id } : {}),
    ...(typeof j.token_uri === 'string' ? { tokenUri: j.token_uri } : {}),
  };
}

/** Strings to scrub besides the JSON itself: the PEM key and its base64 body on one line. */
export function serviceAccountScrubParts(value: string): string[] {
  try {
    const key = (JSON.parse(value) as Record<string, unknown>).private_key;
    if (typeof key !== 'string') return [];
    const body = key.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
    return body.length > 0 ? [key, body] : [key];
  } catch { return []; }
}

/** The signed JWT assertion for the token endpoint (aud is that endpoint). */
export async function serviceAccountAssertion(sa: ServiceAccountKey, tokenUrl: string, scope: string, nowMs: number): Promise<{ jwt: string; expiresAt: number }> {
  const key = await jose().importPKCS8(sa.privateKey, 'RS256');
  const iat = Math.floor(nowMs / 1000);
  const header: { alg: string; typ: string; kid?: string } = { alg: 'RS256', typ: 'JWT' };
  if (sa.privateKeyId) header.kid = sa.privateKeyId;
  const jwt = await new (jose().SignJWT)({ scope })
    .setProtectedHeader(header)
    .setIssuer(sa.clientEmail)
    .setSubject(sa.clientEmail)
    .setAudience(tokenUrl)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ASSERTION_TTL_S)
    .sign(key);
  return { jwt, expiresAt: (iat + ASSERTION_TTL_S) * 1000 };
}
