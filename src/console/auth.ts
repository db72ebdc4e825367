// Who is calling the admin API or the console, and may they do this? Three ways in, one answer:
// the break-glass AAM_ADMIN_TOKEN (admin), an OIDC ID token as Bearer, or a console session
// cookie (state-changing requests then need the session's CSRF token and a same-origin Origin).
// Agent credentials open nothing here: a virtual key or JWT-SVID is neither the admin token nor
// an ID token from the configured IdP. Roles come from the config as it is now, on every request.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ConfigSet } from '../config/schema.ts';
import { adminEvent, type AuditEventInput } from '../audit/event.ts';
import { AamError } from '../access/errors.ts';
import { atLeast, compileRoles, type Role, type RoleTable, type HumanClaims } from './roles.ts';
import type { LoginStore, Session, SessionStore } from './sessions.ts';
import { OidcError, OidcUnavailable, type OidcClient } from './oidc.ts';
import { createRenewer, type Renewer, type RenewLog, type RenewWatch } from './renew.ts';
import { createRevocations } from './revoke.ts';

/**
 * The person behind an admin event. Whoever holds AAM_ADMIN_TOKEN is the break-glass `admin`
 * (DESIGN.md "Console and human identity": recorded as such), in events, tables and /me alike.
 */
export const BREAK_GLASS = 'admin';
export type Actor = typeof BREAK_GLASS | { type: 'user'; sub: string; email?: string };

export interface Principal {
  actor: Actor;
  role: Role;
  /** Short name for tables (approvals' decided_by, tool pins): "user:<email or sub>" or "admin" (break-glass). */
  label: string;
  /** Set when the request came with a console session. */
  session?: { id: string; csrf: string; expiresAt: number; renews: boolean };
}

export interface HumanAuthOptions {
  sessions: SessionStore;
  logins: LoginStore;
  /** Current config (roles are read from it per request). */
  config: () => ConfigSet;
  adminToken: string | null;
  oidc: OidcClient | null;
  /** AAM_PUBLIC_URL (its origin is the only one state-changing cookie requests may come from). */
  publicUrl: string | null;
  /** Serving TLS: cookies are Secure and __Host- prefixed. */
  tls: boolean;
  /** Where a session the IdP refused to renew is told (never a token). */
  log?: RenewLog;
  /** The audit trail: renewals that change a person's role, groups or email, refused ones, and refresh tokens sign-out could not revoke (never a token). */
  audit?: { record(e: AuditEventInput): void } | null;
  /** When sign-out tries to revoke a refresh token (ms after it; revoke.ts's REVOKE_TRIES_MS unless given). */
  revokeTries?: readonly number[];
}

export interface HumanAuth {
  readonly oidc: OidcClient | null;
  readonly sessions: SessionStore;
  readonly logins: LoginStore;
  readonly adminTokenEnabled: boolean;
  readonly cookie: { name: string; secure: boolean };
  /**
   * Authenticate and check the role; throws 401/403 (AamError) otherwise. `passive`: a check made by
   * aam on the person's behalf (the live audit tail's), which does not count as use for the idle timeout.
   */
  require(req: IncomingMessage, need: Role, passive?: boolean): Promise<Principal>;
  /** The session of a request's cookie, if live (for pages); renewed at the IdP first when its ID token runs out (renew.ts). */
  sessionOf(req: IncomingMessage, passive?: boolean): Promise<{ id: string; session: Session } | undefined>;
  /** A person's current role, or null when no RoleBinding names them. */
  roleOf(c: HumanClaims): Role | null;
  /** Renewal of sessions at the IdP (the silent re-authorization's callback ends in it). */
  readonly renewer: Renewer;
  /**
   * A signed-out session's refresh token revoked at the IdP in the background, retried over a
   * minute while the IdP cannot be asked; given up on, a console_session_revocation_failed event.
   */
  revokeAtIdp(s: Session): void;
  /** The gateway is stopping: revocations still waiting to try again are given up on (on the audit trail while it is open). */
  close(): void;
  /** Is this the break-glass token? (constant time) */
  isAdminToken(token: string): boolean;
  /** Throws unless the request comes from our own origin (login forms, logout, every cookie-authenticated change). */
  checkOrigin(req: IncomingMessage): void;
  principalOf(s: Session, id?: string): Principal | null;
  /**
   * Put a wrong AAM_ADMIN_TOKEN on record (admin API Bearer or the console's sign-in form), at
   * most REFUSALS_RECORDED per minute per gateway: the next event says how many went unrecorded.
   */
  recordTokenRefused(at: RefusalScene, e: AdminTokenRefused): void;
}

/** Where a refusal happened: the request and the trail it goes to. */
export interface RefusalScene {
  rt: { audit: { record(e: AuditEventInput): void } | null };
  requestId: string;
  req: IncomingMessage;
}

/**
 * A value that is not this gateway's AAM_ADMIN_TOKEN (a 401). Recorded, rate-limited, by whoever
 * catches it (recordTokenRefused). No lockout: the token is at least 32 random characters
 * (checkAdminToken), so guessing it online is hopeless at any rate, while a lockout keyed on the
 * source address would lock out everyone behind the same proxy, and a global one would hand an
 * attacker the switch that turns break-glass off, the way in when the IdP is down.
 */
export class AdminTokenRefused extends AamError {
  readonly via: 'admin_api' | 'console';
  constructor(via: 'admin_api' | 'console', message: string) {
    super(401, 'admin_unauthorized', message, via === 'admin_api' ? { headers: { 'www-authenticate': 'Bearer realm="aam-admin"' } } : undefined);
    this.via = via;
  }
}

/** Refused break-glass attempts put on record per minute (a brute force cannot flood the trail). */
export const REFUSALS_RECORDED = 10;
const REFUSAL_WINDOW_MS = 60_000;

/** Fixed-window budget: the number of refusals left unrecorded since the last recorded one, or null (over budget: count it, record nothing). */
export function refusalBudget(max = REFUSALS_RECORDED, windowMs = REFUSAL_WINDOW_MS): (now: number) => number | null {
  let start = -Infinity;
  let used = 0;
  let unrecorded = 0;
  return (now) => {
    if (now - start >= windowMs) { start = now; used = 0; }
    if (used >= max) { unrecorded++; return null; }
    used++;
    const n = unrecorded;
    unrecorded = 0;
    return n;
  };
}

/**
 * A person (or the break-glass token) refused for want of a role: a 403 that knows who asked, so
 * the refusal can be put on record under their name (the admin API does).
 */
export class RoleRefused extends AamError {
  readonly actor: Actor;
  readonly need: Role;
  /** Their role now, or null when no RoleBinding names them. */
  readonly have: Role | null;
  constructor(actor: Actor, need: Role, have: Role | null, message: string) {
    super(403, 'admin_forbidden', message);
    this.actor = actor;
    this.need = need;
    this.have = have;
  }
}

/** Throws RoleRefused unless the principal's role includes `need` (every route's check). */
export function mustHave(p: Principal, need: Role): void {
  if (!atLeast(p.role, need)) throw new RoleRefused(p.actor, need, p.role, `this needs the ${need} role; ${p.label} has ${p.role}`);
}

const digest = (s: string) => createHash('sha256').update(s).digest();
const safeEqual = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

/**
 * What a break-glass session keeps of the AAM_ADMIN_TOKEN it was opened with: a digest (the store
 * never holds the token), so a session opened with a token since rotated away (leaked, say) ends.
 */
export const adminTokenTag = (token: string): string => createHash('sha256').update('aam console break-glass v1\0').update(token).digest('base64url');
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}

/**
 * Three base64url parts: a JWT (an OpenID Connect ID token, or an agent's JWT-SVID). The signature
 * may be empty: an unsigned (alg "none") token is a JWT too, refused by the ID token check (401),
 * never taken for an opaque access token and sent to the IdP.
 */
const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]*$/;
const ADMIN_API_OFF = 'the admin API is disabled: start aam with AAM_ADMIN_TOKEN set, or with AAM_OIDC_ISSUER/AAM_OIDC_CLIENT_ID/AAM_OIDC_CLIENT_SECRET/AAM_PUBLIC_URL';
export const BREAK_GLASS_ENDED = 'this break-glass session was opened with an AAM_ADMIN_TOKEN the gateway no longer has (changed or unset); sign in again';
const unauthorized = (msg: string) => new AamError(401, 'admin_unauthorized', msg, { headers: { 'www-authenticate': 'Bearer realm="aam-admin"' } });

export function userActor(c: HumanClaims): Actor {
  return c.email ? { type: 'user', sub: c.sub, email: c.email } : { type: 'user', sub: c.sub };
}

export function createHumanAuth(o: HumanAuthOptions): HumanAuth {
  const { sessions, logins } = o;
  const tables = new WeakMap<ConfigSet, RoleTable>();
  const roleOf = (c: HumanClaims): Role | null => {
    const set = o.config();
    let t = tables.get(set);
    if (!t) { t = compileRoles(set); tables.set(set, t); }
    return t.roleOf(c);
  };
  const cookie = { name: o.tls ? '__Host-aam_session' : 'aam_session', secure: o.tls };
  const expectedOrigin = (req: IncomingMessage): string | null => {
    if (o.publicUrl) return new URL(o.publicUrl).origin;
    const host = req.headers.host;
    return host ? `${o.tls ? 'https' : 'http'}://${host}` : null;
  };
  const isAdminToken = (t: string) => o.adminToken !== null && safeEqual(t, o.adminToken);

  const principalOf = (s: Session, id?: string): Principal | null => {
    const session = id ? { id, csrf: s.csrf, expiresAt: s.expiresAt, renews: s.idExp !== undefined } : undefined;
    // A break-glass session dies with the token it was opened with (unset or changed at restart: gone).
    if (s.kind === 'admin-token') {
      return o.adminToken && s.tokenTag !== undefined && safeEqual(s.tokenTag, adminTokenTag(o.adminToken)) ? { actor: BREAK_GLASS, role: 'admin', label: BREAK_GLASS, session } : null;
    }
    const role = roleOf(s);
    return role ? { actor: userActor(s), role, label: `user:${s.email ?? s.sub}`, session } : null;
  };

  function checkOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    const want = expectedOrigin(req);
    if (typeof origin !== 'string' || origin !== want) {
      throw new AamError(403, 'csrf_failed', `cross-origin request refused: Origin ${typeof origin === 'string' ? `"${origin}"` : 'is missing'}, expected "${want}" (set AAM_PUBLIC_URL to the URL people open the console at)`);
    }
  }

  // On the trail: a renewal that changes what the person may do or who they are (role, groups,
  // email), and a refused one (the session ended at the IdP). A renewal that changes nothing is
  // left out: it would add an event per person per ID-token lifetime (5 min at Keycloak) and say
  // nothing the sign-in event does not. Who, role, groups and the IdP's error only, never a token.
  const listed = (g: readonly string[]) => [...g].sort().join(',');
  const watch: RenewWatch = {
    renewed(was, now) {
      const [before, after] = [roleOf(was), roleOf(now)];
      if (before === after && was.email === now.email && listed(was.groups) === listed(now.groups)) return;
      o.audit?.record(adminEvent('console_session_renewed', 'console', userActor(now), {
        role_before: before ?? 'none', role_after: after ?? 'none', groups_before: listed(was.groups), groups_after: listed(now.groups),
        ...(was.email !== now.email ? { email_before: was.email ?? '', email_after: now.email ?? '' } : {}),
      }));
    },
    refused(s, why) {
      o.audit?.record({ ...adminEvent('console_session_renewal_refused', 'console', userActor(s), { role_before: roleOf(s) ?? 'none' }), outcome: { status: 401, error: why } });
    },
  };
  const renewer = createRenewer(sessions, o.oidc, o.log, watch);
  const revocations = createRevocations(o.revokeTries);
  // The token stays valid at the IdP until it expires there: on record, so an operator can revoke it at the IdP.
  function revokeAtIdp(s: Session): void {
    const { refreshToken } = s;
    if (!refreshToken || !o.oidc) return;
    const oidc = o.oidc;
    revocations.start(() => oidc.revokeRefreshToken(refreshToken), (why, tries) => {
      o.log?.warn({ event: 'console_session_revocation_failed', sub: s.sub, error: why, tries }, 'console sign-out could not revoke the refresh token at the identity provider');
      o.audit?.record({ ...adminEvent('console_session_revocation_failed', 'console', userActor(s), { tries, refresh_token: 'valid at the identity provider until it expires there' }), outcome: { status: 503, error: why } });
    });
  }
  const sessionOf = async (req: IncomingMessage, passive = false) => {
    const id = parseCookies(req.headers.cookie).get(cookie.name);
    if (!id) return undefined;
    let session: Session | undefined;
    try {
      session = await sessions.get(id, passive);
      if (session) session = await renewer.fresh(id, session, passive);
    } catch (e) {
      if (e instanceof AamError) throw e;
      // Fail closed: without its store a session opens nothing (the fleet's Redis is down).
      throw new AamError(503, 'store_unavailable', `console sessions are unavailable: ${(e as Error).message}`, { headers: { 'retry-after': '5' } });
    }
    return session ? { id, session } : undefined;
  };

  /** A person named by a token the IdP vouches for, with the role the config gives them now. */
  async function person(verify: () => Promise<HumanClaims>): Promise<Principal> {
    let who: HumanClaims;
    try { who = await verify(); } catch (e) {
      if (e instanceof OidcUnavailable) throw new AamError(503, 'unavailable', `cannot check the Bearer token right now: ${e.message}`, { headers: { 'retry-after': '5' } });
      throw unauthorized(e instanceof OidcError ? e.message : 'the Bearer token could not be verified');
    }
    const role = roleOf(who);
    if (!role) throw new RoleRefused(userActor(who), 'viewer', null, `no RoleBinding names ${who.email ?? who.sub}${who.groups.length ? ` or the groups ${who.groups.join(', ')}` : ''}; ask an admin to add one`);
    return { actor: userActor(who), role, label: `user:${who.email ?? who.sub}` };
  }

  async function authenticate(req: IncomingMessage, passive: boolean): Promise<Principal> {
    const auth = req.headers.authorization;
    if (typeof auth === 'string') {
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      if (!m) throw unauthorized('admin API needs "Authorization: Bearer <AAM_ADMIN_TOKEN or an OpenID Connect ID token>"');
      if (isAdminToken(m[1])) return { actor: BREAK_GLASS, role: 'admin', label: BREAK_GLASS };
      if (!o.adminToken && !o.oidc) throw unauthorized(ADMIN_API_OFF); // a token set in the client's shell, not the gateway's
      // Only something shaped like a JWT is shown to the IdP's keys, and only what cannot be an
      // aam credential (virtual keys and join tokens start with "aam") is ever sent to the IdP.
      if (o.oidc && JWT_SHAPE.test(m[1])) return person(() => o.oidc!.verifyBearer(m[1]));
      if (o.oidc && !m[1].startsWith('aam') && /^[\x21-\x7e]{16,4096}$/.test(m[1])) return person(() => o.oidc!.verifyAccessToken(m[1]));
      // An agent's credential is told apart from a wrong admin token: each has its own fix.
      const agentLike = m[1].startsWith('aam') || JWT_SHAPE.test(m[1]);
      if (agentLike) throw unauthorized(`admin API needs "Authorization: Bearer $AAM_ADMIN_TOKEN"${o.oidc ? ' or an OpenID Connect ID or access token' : ''}; agent keys and agent tokens are not accepted here`);
      const msg = `the Bearer token is not this gateway's AAM_ADMIN_TOKEN${o.oidc ? ' nor an OpenID Connect token' : ''}: send the value the gateway was started with`;
      throw o.adminToken ? new AdminTokenRefused('admin_api', msg) : unauthorized(msg);
    }
    const s = await sessionOf(req, passive);
    if (s) {
      const p = principalOf(s.session, s.id);
      if (!p && s.session.kind === 'admin-token') throw unauthorized(BREAK_GLASS_ENDED);
      if (!p) throw new RoleRefused(userActor(s.session), 'viewer', null, `no RoleBinding names ${s.session.email ?? s.session.sub} any more; ask an admin to add one`);
      if (UNSAFE.has(req.method ?? '')) {
        checkOrigin(req);
        const sent = req.headers['x-csrf-token'];
        if (typeof sent !== 'string' || !safeEqual(sent, s.session.csrf)) throw new AamError(403, 'csrf_failed', 'missing or wrong x-csrf-token header: reload the console page (the token is in GET /admin/v1/me)');
      }
      return p;
    }
    throw unauthorized(o.adminToken || o.oidc
      ? 'admin API needs a console session or "Authorization: Bearer <AAM_ADMIN_TOKEN or an OpenID Connect ID token>"'
      : ADMIN_API_OFF);
  }

  const budget = refusalBudget();
  function recordTokenRefused(at: RefusalScene, e: AdminTokenRefused): void {
    const unrecorded = budget(Date.now());
    if (unrecorded === null) return;
    at.rt.audit?.record({
      type: 'admin', request_id: at.requestId, admin: { action: 'admin_token_refused', target: e.via, actor: 'unauthenticated' },
      detail: { from: at.req.socket.remoteAddress ?? 'unknown', unrecorded_before: unrecorded }, outcome: { status: 401, error: 'not the AAM_ADMIN_TOKEN' },
    });
  }

  return {
    oidc: o.oidc, sessions, logins, cookie, adminTokenEnabled: o.adminToken !== null, roleOf, isAdminToken, checkOrigin, sessionOf, principalOf, recordTokenRefused, renewer, revokeAtIdp, close: () => revocations.close(),
    async require(req, need, passive = false) {
      const p = await authenticate(req, passive);
      mustHave(p, need);
      return p;
    },
  };
}
