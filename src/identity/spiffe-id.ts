// SPIFFE ID parsing per the SPIFFE ID spec (spiffe://<trust-domain>/<path>).
// Strict on purpose: an identity string that two parsers read differently is an attack surface.

export interface SpiffeId {
  /** The full ID, unchanged. */
  id: string;
  trustDomain: string;
  /** Path including the leading slash ('' for the trust domain itself). */
  path: string;
}

const PREFIX = 'spiffe://';
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_LENGTH = 2048;

/** Parse a SPIFFE ID; returns a reason string when it is not one. */
export function parseSpiffeId(value: string): SpiffeId | string {
  if (typeof value !== 'string' || !value.startsWith(PREFIX)) return 'not a SPIFFE ID: must start with spiffe://';
  if (value.length > MAX_LENGTH) return `SPIFFE ID longer than ${MAX_LENGTH} bytes`;
  const rest = value.slice(PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (!trustDomain) return 'SPIFFE ID has an empty trust domain';
  if (!TRUST_DOMAIN.test(trustDomain)) return 'SPIFFE ID trust domain may only contain lowercase letters, digits, ".", "-" and "_"';
  if (path) {
    const segments = path.slice(1).split('/');
    for (const s of segments) {
      if (s === '') return 'SPIFFE ID path has an empty segment or a trailing slash';
      if (s === '.' || s === '..') return 'SPIFFE ID path must not contain "." or ".." segments';
      if (!SEGMENT.test(s)) return 'SPIFFE ID path may only contain letters, digits, ".", "-" and "_"';
    }
  }
  return { id: value, trustDomain, path };
}

/** Trust domain of a SPIFFE ID, or undefined when the string is not a valid SPIFFE ID. */
export function trustDomainOf(value: string): string | undefined {
  const p = parseSpiffeId(value);
  return typeof p === 'string' ? undefined : p.trustDomain;
}
