// A callee's agent card as callers see it through aam: fetched from `<url>/.well-known/agent-card.json`
// (else its origin's `/.well-known/agent-card.json`; cached briefly), then rewritten so the only way to reach the agent is aam's `/a2a/<agent>`
// (JSON-RPC, and HTTP+JSON under it) with the auth scheme aam enforces, and listing only the skills this caller may call.
// A signature over the callee's card no longer matches the rewritten one, so it is dropped.
import { request } from '../lib/http-client.ts';

export const CARD_PATH = '/.well-known/agent-card.json';
const CARD_TTL_MS = 30_000;
const MAX_CARD_BYTES = 1024 * 1024;

export type Card = Record<string, unknown>;

export class CardCache {
  readonly #m = new Map<string, { card: Card; expires: number }>();

  /**
   * The callee's own card, from cache or fetched with aam's credential for it (headers, or query
   * parameters): from `<url>/.well-known/agent-card.json`, else (that answering 404) from the
   * well-known URI at its origin's root, where A2A v1 (RFC 8615) puts it: the SDK's own layout
   * serves JSON-RPC at a path (`/a2a/jsonrpc`) and the card at the root.
   */
  async get(agent: string, baseUrl: string, auth: { headers: Record<string, string>; query?: Record<string, string> }, timeoutMs: number): Promise<Card> {
    const key = `${agent}\0${baseUrl}`;
    const hit = this.#m.get(key);
    if (hit && hit.expires > Date.now()) return hit.card;
    const url = new URL(baseUrl);
    url.pathname = url.pathname.replace(/\/+$/, '') + CARD_PATH;
    let got = await fetchCard(url, auth, timeoutMs);
    if (got === 404 && url.pathname !== CARD_PATH) {
      url.pathname = CARD_PATH;
      got = await fetchCard(url, auth, timeoutMs);
    }
    if (typeof got === 'number') throw new Error(`the card request answered HTTP ${got}${got === 404 ? ` at the Agent's spec.a2a.url + ${CARD_PATH} and at ${CARD_PATH} of its origin` : ''}`);
    this.#m.set(key, { card: got, expires: Date.now() + CARD_TTL_MS });
    if (this.#m.size > 1024) this.#m.delete(this.#m.keys().next().value as string);
    return got;
  }
}

/** A card fetched from `url`: the object, or the HTTP status that was not 200. */
async function fetchCard(url: URL, auth: { headers: Record<string, string>; query?: Record<string, string> }, timeoutMs: number): Promise<Card | number> {
  for (const k in auth.query) url.searchParams.set(k, auth.query[k]);
  const up = await request(url, { method: 'GET', headers: { accept: 'application/json', 'a2a-version': '1.0', ...auth.headers }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of up.body) {
    size += (c as Buffer).length;
    if (size > MAX_CARD_BYTES) { up.body.destroy(); throw new Error(`the card is larger than ${MAX_CARD_BYTES} bytes`); }
    chunks.push(c as Buffer);
  }
  if (up.statusCode !== 200) return up.statusCode;
  const card = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  if (!card || typeof card !== 'object' || Array.isArray(card)) throw new Error('the card is not a JSON object');
  return card as Card;
}

/** The scheme aam enforces on /a2a/<agent>, in A2A v1 card form. */
const AAM_SCHEME = {
  aam: { httpAuthSecurityScheme: { scheme: 'Bearer', bearerFormat: 'aam virtual key or JWT-SVID', description: 'An aam virtual key (aam_...) or a JWT-SVID. aam injects the callee\'s own credential.' } },
};
/** With mTLS on: an X.509-SVID instead, either scheme sufficing (A2A: any one requirement of the list). */
const AAM_SCHEMES_MTLS = {
  ...AAM_SCHEME,
  aam_mtls: { mtlsSecurityScheme: { description: 'mTLS with an X.509-SVID (a spiffe:// URI SAN) from a CA aam trusts. aam injects the callee\'s own credential.' } },
};
const REQUIRE_BEARER = [{ schemes: { aam: { list: [] } } }];
const REQUIRE_EITHER = [...REQUIRE_BEARER, { schemes: { aam_mtls: { list: [] } } }];

/**
 * The card rewritten for one caller: a JSON-RPC and an HTTP+JSON interface at aam, aam's security scheme
 * (and its mTLS one, where this connection could present an X.509-SVID), skills filtered by `mayCall`, no signatures. Other fields (name, description, capabilities,
 * modes, provider) pass as the callee wrote them, except that its own address (`calleeUrl`, its
 * origin) is aam's endpoint wherever it appears (iconUrl, documentationUrl, provider.url, text):
 * callers reach it only through aam, and where it runs is not theirs to know.
 */
export function rewriteCard(card: Card, endpoint: string, mayCall: (skill: string) => boolean, calleeUrl: string, mtls = false): Card {
  const ifaces = Array.isArray(card.supportedInterfaces) ? card.supportedInterfaces as Array<Record<string, unknown>> : [];
  const jsonrpc = ifaces.find((i) => String(i.protocolBinding ?? '').toUpperCase() === 'JSONRPC' && i.protocolVersion === '1.0')
    ?? ifaces.find((i) => String(i.protocolBinding ?? '').toUpperCase() === 'JSONRPC');
  const skills = Array.isArray(card.skills) ? (card.skills as Array<Record<string, unknown>>) : [];
  const protocolVersion = typeof jsonrpc?.protocolVersion === 'string' ? jsonrpc.protocolVersion : '1.0';
  const out: Card = {
    ...card,
    // Both bindings at the same URL: JSON-RPC POSTs to it, HTTP+JSON routes live under it (rest.ts).
    supportedInterfaces: [{ url: endpoint, protocolBinding: 'JSONRPC', protocolVersion }, { url: endpoint, protocolBinding: 'HTTP+JSON', protocolVersion }],
    securitySchemes: mtls ? AAM_SCHEMES_MTLS : AAM_SCHEME,
    securityRequirements: mtls ? REQUIRE_EITHER : REQUIRE_BEARER,
    skills: skills.filter((s) => typeof s.id === 'string' && mayCall(s.id)).map(({ securityRequirements: _drop, security: _legacy, ...s }) => s),
  };
  // aam refuses GetExtendedAgentCard (the callee would answer it as aam): not offered, under either name.
  const caps = card.capabilities;
  if (caps !== null && typeof caps === 'object' && 'extendedAgentCard' in caps) {
    const { extendedAgentCard: _refused, ...offered } = caps as Record<string, unknown>;
    out.capabilities = offered;
  }
  delete out.supportsAuthenticatedExtendedCard;
  delete out.signatures;
  delete out.url; // v0.3 fields that would point past aam
  delete out.additionalInterfaces;
  delete out.security;
  return withoutAddress(out, calleeUrl, endpoint);
}

/**
 * Every string of the card with the callee's A2A URL, then its origin, replaced by aam's endpoint
 * (host without regard to case; not where a longer host or port goes on). Extension URIs are
 * identifiers the caller sends back in A2A-Extensions, not addresses: kept as written. Copies
 * (the cached card stays as fetched), without recursion (a deep card cannot overflow the stack).
 */
function withoutAddress(card: Card, calleeUrl: string, endpoint: string): Card {
  const address = addressPattern(calleeUrl);
  const top: Record<string, unknown> = { card };
  const stack: Array<[Record<string, unknown> | unknown[], string | number]> = [[top, 'card']];
  while (stack.length > 0) {
    const [parent, key] = stack.pop()!;
    const at = parent as Record<string | number, unknown>;
    const v = at[key];
    if (typeof v === 'string') at[key] = v.replace(address, endpoint);
    else if (Array.isArray(v)) { const c = v.slice(); at[key] = c; for (let i = 0; i < c.length; i++) stack.push([c, i]); }
    else if (v !== null && typeof v === 'object') { const c = { ...v as Record<string, unknown> }; at[key] = c; for (const k in c) stack.push([c, k]); }
  }
  const out = top.card as Card;
  const extensions = (card.capabilities as { extensions?: unknown } | undefined)?.extensions;
  if (Array.isArray(extensions)) {
    const copied = (out.capabilities as { extensions: unknown[] }).extensions;
    extensions.forEach((e, i) => { if (isUri(e) && isUri(copied[i])) copied[i].uri = e.uri; });
  }
  return out;
}

/** The callee's A2A URL or origin as a pattern, compiled once per URL (the config's agents bound them). */
function addressPattern(calleeUrl: string): RegExp {
  let p = patterns.get(calleeUrl);
  if (p) return p;
  const u = new URL(calleeUrl);
  const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const base = (u.origin + u.pathname).replace(/\/+$/, '');
  p = new RegExp(`(?:${esc(base)}|${esc(u.origin)})(?![\\w.:-])`, 'gi');
  if (patterns.size >= 1024) patterns.clear();
  patterns.set(calleeUrl, p);
  return p;
}
const patterns = new Map<string, RegExp>();

const isUri = (e: unknown): e is { uri: unknown } => e !== null && typeof e === 'object' && 'uri' in e;
