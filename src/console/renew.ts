// Console sessions that outlive a short ID token (Keycloak's default is 5 minutes). A session
// opened with a refresh token is renewed at the IdP when its ID token runs out, on the request that
// finds it due, re-checking the new ID token as at sign-in and re-reading email and groups (a group
// removed at the IdP takes effect at the next renewal). One renewal per session at a time,
// fleet-wide (the store's claim): with refresh token rotation the IdP invalidates the old token on
// use, and a second use of it may revoke the whole grant. A refusal (invalid_grant: revoked,
// expired, reused) ends the session; an IdP that cannot be asked leaves it usable until its ID
// token's expiry, no longer (no grace: the IdP alone says whether the person is still who they
// were), then 503. A session without a refresh token is re-authorized silently instead: past its ID
// token, the console page sends the browser to the IdP with prompt=none (routes.ts), and the answer
// renews the session here (reauthorized) or ends it (login_required: notReauthorized).
// Only a person's own requests renew: a check aam makes on their behalf (the live tail's, passive)
// never asks the IdP, so a tab left open does not keep renewing while its person is away.
import { AamError } from '../access/errors.ts';
import { OidcUnavailable, type LoggedIn, type OidcClient } from './oidc.ts';
import { renewFrom, type Session, type SessionStore } from './sessions.ts';

export const EXPIRED_AT_IDP = 'signed out: your sign-in expired at the identity provider';
/** How long one renewal may hold a session (the IdP's 5 s timeout, discovery included, with room). */
const CLAIM_MS = 15_000;
/** How long a request waits for another replica's renewal of the same session, and how often it looks. */
const WAIT_MS = 12_000;
const POLL_MS = 100;
/** After the IdP could not be asked, requests of a session still within its ID token do not ask again for this long. */
const QUIET_MS = 15_000;
const QUIET_MAX = 10_000;

export interface Renewer {
  /**
   * The session, renewed first when due; throws 401 (ended; or, without a refresh token, past its ID
   * token: ReauthorizationRequired), 503 (IdP or store unavailable and it cannot wait). `passive`
   * (a check on the person's behalf): never renews; past the ID token, 401 renewal_due.
   */
  fresh(id: string, s: Session, passive?: boolean): Promise<Session>;
  /** The IdP re-authorized the session's person by redirect (prompt=none): the session renewed with it (401 when it names another person or the session is gone). */
  reauthorized(id: string, who: LoggedIn): Promise<Session>;
  /** The IdP would not re-authorize (login_required, or its answer failed the checks): the session ends; the 401 to show. */
  notReauthorized(id: string, why: string): Promise<AamError>;
}

export interface RenewLog { warn(obj: Record<string, unknown>, msg: string): void }

/** Told of each renewal's outcome (auth.ts puts the ones that matter on the audit trail); never given a token. */
export interface RenewWatch {
  renewed(before: Session, after: Session): void;
  refused(s: Session, why: string): void;
}

const due = (s: Session, now: number): boolean => s.renewAt !== undefined && now >= s.renewAt;
const within = (s: Session, now: number): boolean => s.idExp !== undefined && now < s.idExp;

/** The IdP must renew the session and cannot be asked now: pages show the sign-in page, saying so. */
export class RenewalUnavailable extends AamError {}

/** A session without a refresh token past its ID token: the console page re-authorizes it by redirect (prompt=none, with the ID token as hint). */
export class ReauthorizationRequired extends AamError {
  readonly idTokenHint: string | undefined;
  constructor(idTokenHint: string | undefined) {
    super(401, 'reauthorization_required', 'your sign-in must be renewed at the identity provider: reload the console page (while you are signed in there it renews without asking you to sign in)');
    this.idTokenHint = idTokenHint;
  }
}

const expired = (why: string) => new AamError(401, 'admin_unauthorized', `${EXPIRED_AT_IDP} (${why}); sign in again`);
const ended = () => new AamError(401, 'admin_unauthorized', 'your console session has ended (signed out, or it could not be renewed); sign in again');
const renewalDue = () => new AamError(401, 'renewal_due', 'your sign-in is due for renewal at the identity provider, and only your own requests renew it (an open live tail does not): follow the tail again to renew it');
/** The 503 of a session that must be renewed at an IdP that cannot be asked now. */
export const unavailable = (why: string) => new RenewalUnavailable(503, 'unavailable', `Single sign-on is unavailable right now, and your session must be renewed there before it opens anything more (${why}). Try again in a minute; sign in with the break-glass AAM_ADMIN_TOKEN if it cannot wait.`, { headers: { 'retry-after': '15' } });

export function createRenewer(sessions: SessionStore, oidc: OidcClient | null, log?: RenewLog, watch?: RenewWatch): Renewer {
  const inflight = new Map<string, Promise<Session>>();
  const quiet = new Map<string, { until: number; why: string }>();

  /** The IdP could not be asked: the session as it is while its ID token lasts, else 503. */
  function meanwhile(id: string, s: Session, why: string): Session {
    if (!quiet.has(id) && quiet.size >= QUIET_MAX) quiet.delete(quiet.keys().next().value!);
    quiet.set(id, { until: Date.now() + QUIET_MS, why });
    if (within(s, Date.now())) return s;
    throw unavailable(why);
  }

  /** Another request (here or on another replica) is renewing it: its result, once stored. */
  async function awaitOther(id: string, s: Session): Promise<Session> {
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      const now = await sessions.get(id);
      if (!now) throw ended();
      if (!due(now, Date.now())) return now;
    }
    return meanwhile(id, s, 'another renewal of this session did not finish in time');
  }

  /** The IdP vouched for the person again: the session carries the new ID token, email and groups. */
  async function renewed(id: string, cur: Session, who: LoggedIn): Promise<Session> {
    const idExp = who.exp * 1000;
    const next: Session = { ...cur, email: who.email, groups: who.groups, idToken: who.idToken, refreshToken: who.refreshToken ?? cur.refreshToken, idExp, renewAt: renewFrom(idExp, Date.now()) };
    if (!(await sessions.replace(id, next))) throw ended(); // signed out meanwhile: stays out
    quiet.delete(id);
    watch?.renewed(cur, next);
    return next;
  }

  /** The IdP refused (or answered what fails the checks): the session ends, on record; the 401 to give. */
  async function refuse(id: string, cur: Session, why: string): Promise<AamError> {
    await sessions.delete(id);
    log?.warn({ event: 'console_session_renewal_refused', sub: cur.sub, error: why }, 'console session ended: the identity provider refused to renew it');
    watch?.refused(cur, why);
    return expired(why);
  }

  async function renew(id: string, s: Session): Promise<Session> {
    if (!(await sessions.claim(id, CLAIM_MS))) return awaitOther(id, s);
    try {
      const cur = await sessions.get(id); // renewed by another replica just now, or signed out?
      if (!cur) throw ended();
      if (!due(cur, Date.now())) return cur;
      let who;
      try { who = await oidc!.renew(cur.refreshToken!, { sub: cur.sub, idToken: cur.idToken }); } catch (e) {
        if (e instanceof OidcUnavailable) return meanwhile(id, cur, e.message);
        throw await refuse(id, cur, (e as Error).message);
      }
      return await renewed(id, cur, who);
    } finally {
      await sessions.release(id).catch(() => {}); // the claim expires by itself
    }
  }

  return {
    async fresh(id, s, passive = false) {
      const now = Date.now();
      if (s.kind !== 'oidc' || !due(s, now)) return s;
      if (passive) { if (within(s, now)) return s; throw renewalDue(); }
      // Single sign-on switched off since (a restart without AAM_OIDC_*): nothing can renew it.
      if (!oidc) { if (within(s, now)) return s; throw expired('single sign-on is no longer configured here'); }
      if (!s.refreshToken) { if (within(s, now)) return s; throw new ReauthorizationRequired(s.idToken); }
      const q = quiet.get(id);
      if (q && q.until > now) { if (within(s, now)) return s; throw unavailable(q.why); }
      let p = inflight.get(id);
      if (!p) {
        p = renew(id, s).finally(() => inflight.delete(id));
        inflight.set(id, p);
      }
      return p;
    },
    async reauthorized(id, who) {
      const cur = await sessions.get(id);
      if (!cur) throw ended();
      if (who.sub !== cur.sub) throw await refuse(id, cur, `the identity provider re-authorized another person (${who.sub}, not ${cur.sub})`);
      return renewed(id, cur, who);
    },
    async notReauthorized(id, why) {
      const cur = await sessions.get(id);
      return cur ? refuse(id, cur, why) : ended();
    },
  };
}
