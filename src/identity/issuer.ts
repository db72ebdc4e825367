// aam's own JWT-SVID issuer: ES256 signing keys kept in <dataDir>/issuer/keys.json (mode 0600),
// published as a JWKS, rotated with an overlap so tokens signed just before a rotation keep working.
// On-behalf-of assertions (credentials/inject.ts) are signed with a key ring of their own
// (issuer/obo-keys.json, its own JWKS, typ aam-obo+jwt): a downstream that trusts assertions cannot
// be handed a JWT-SVID as one, and aam never accepts an assertion as a JWT-SVID.
// In a fleet both rings live in PostgreSQL instead (sealed under the master key, see
// store/fleet-issuer-keys.ts): a token minted on one replica verifies on every other, and a
// rotation anywhere reaches every replica within the fleet's poll (announced at once).
import { link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { JWK } from 'jose';
import { jose } from '../lib/jose.ts';
import { parseSpiffeId } from './spiffe-id.ts';
import type { KeyRingStore } from '../store/types.ts';

export const DEFAULT_ISSUER = 'aam';
export const ISSUER_ALG = 'ES256';
/** Longest token aam mints; also the default overlap so no valid token loses its key. */
export const MAX_TTL_SECONDS = 24 * 3600;
/** Longest on-behalf-of assertion (Credential obo.ttl_seconds allows up to 1 h). */
export const MAX_ASSERTION_TTL_SECONDS = 3600;
/** JOSE `typ` of JWT-SVIDs (the SPIFFE JWT-SVID spec allows JWT or JOSE). */
export const SVID_TYP = 'JWT';
/** JOSE `typ` of on-behalf-of assertions (explicit typing, RFC 8725 3.11): downstreams should require it. */
export const OBO_TYP = 'aam-obo+jwt';
const RESERVED = new Set(['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti']);
/** How far a caller-set iat/nbf of an assertion may be from the issuer's clock. */
const ASSERTION_SKEW_SECONDS = 60;

export interface IssuerOptions {
  /** `iss` claim (e.g. https://aam.example.com); default "aam". */
  issuer?: string;
  /** How long a retired key stays in the JWKS and verifies tokens (default MAX_TTL_SECONDS). */
  graceSeconds?: number;
  /** Clock in ms (tests). */
  now?: () => number;
  /**
   * Audiences aam accepts JWT-SVIDs for (default: "aam" and the issuer name): an on-behalf-of
   * assertion may never be addressed to one of them.
   */
  svidAudiences?: string[];
  /** Where the two key rings live (fleet: PostgreSQL); default: the files in dataDir/issuer. */
  rings?: { svid: KeyRingStore; obo: KeyRingStore };
}

export interface MintOptions {
  spiffeId: string;
  audience: string | string[];
  ttlSeconds: number;
  jti?: string;
  /** Extra claims (e.g. agent name); may not override registered claims. */
  extra?: Record<string, unknown>;
}

export interface IssuerKeyInfo { kid: string; createdAt: number; retiredAt?: number; active: boolean }

export interface Issuer {
  /** Value of the `iss` claim in every token this issuer signs. */
  readonly issuer: string;
  readonly activeKid: string;
  /** Public keys (active + retired within grace) for GET /.well-known/jwks.json. */
  jwks(): { keys: JWK[] };
  /** Verification key for a kid, if it is active or still within its grace period. */
  publicKey(kid: string): KeyObject | undefined;
  mint(o: MintOptions): Promise<string>;
  /**
   * Sign an on-behalf-of assertion with the assertion key (typ aam-obo+jwt). iss is this issuer's;
   * iat/nbf/exp are set here unless the caller gives them (they must be current and at most 1 h
   * apart); sub must be a SPIFFE ID and aud a downstream (never one of aam's own audiences).
   */
  signAssertion(claims: Record<string, unknown>, o?: { ttlSeconds?: number }): Promise<string>;
  /** Public keys that verify on-behalf-of assertions (GET /identity/v1/obo/jwks.json). */
  oboJwks(): { keys: JWK[] };
  readonly oboKid: string;
  /** Make new active keys (JWT-SVID and assertion); the previous ones keep verifying for graceSeconds. */
  rotate(): Promise<{ kid: string; retired: string; oboKid: string }>;
  /** Re-read the key file (e.g. on SIGHUP after `aam identity rotate` ran in another process). */
  reload(): Promise<void>;
  keys(): IssuerKeyInfo[];
  /**
   * Add the keys of a key file read by readIssuerKeyFile (another data dir's issuer/keys.json or
   * obo-keys.json) to a ring, retired: tokens they signed keep verifying for the grace period,
   * this issuer keeps signing with its own active key. Keys the ring has are left as they are.
   */
  importKeys(ring: 'svid' | 'obo', file: IssuerKeyFile): Promise<KeyImport>;
}

/** What importKeys did with each key id of a file. */
export interface KeyImport {
  added: string[];
  /** In the ring already (imported before, or the same key). */
  present: string[];
  /** Retired longer ago than the grace period: no valid token can carry it, so not imported. */
  expired: string[];
}

/** A checked issuer key file: each key loads and its kid is its public key's thumbprint. */
export interface IssuerKeyFile { path: string; state: StoredState }

export class IssuerError extends Error {
  constructor(message: string) { super(message); this.name = 'IssuerError'; }
}

interface StoredKey { kid: string; alg: string; createdAt: number; retiredAt?: number; jwk: JWK }
interface StoredState { version: 1; active: string; keys: StoredKey[] }
interface LiveKey extends StoredKey { privateKey: KeyObject; publicKey: KeyObject; publicJwk: JWK }

export function issuerKeyPath(dataDir: string): string {
  return join(dataDir, 'issuer', 'keys.json');
}

export function assertionKeyPath(dataDir: string): string {
  return join(dataDir, 'issuer', 'obo-keys.json');
}

/** Open (or create on first start) the issuer in dataDir. Refuses a key file others can read. */
export async function openIssuer(dataDir: string, opts: IssuerOptions = {}): Promise<Issuer> {
  const now = opts.now ?? Date.now;
  const grace = opts.graceSeconds ?? MAX_TTL_SECONDS;
  // Fleet: a ring with no row yet starts from this data dir's file, so tokens minted before the move keep verifying.
  let rings = opts.rings && { svid: importing(opts.rings.svid, issuerKeyPath(dataDir)), obo: importing(opts.rings.obo, assertionKeyPath(dataDir)) };
  if (!rings) {
    await mkdir(join(dataDir, 'issuer'), { recursive: true, mode: 0o700 });
    rings = { svid: fileRing(issuerKeyPath(dataDir), dataDir), obo: fileRing(assertionKeyPath(dataDir), dataDir) };
  }
  const svid = await openKeyRing(rings.svid, grace, now);
  const obo = await openKeyRing(rings.obo, grace, now);
  const iss = opts.issuer ?? DEFAULT_ISSUER;
  const svidAudiences = new Set(opts.svidAudiences ?? [DEFAULT_ISSUER, iss]);

  return {
    issuer: iss,
    get activeKid() { return svid.active; },
    get oboKid() { return obo.active; },
    jwks: () => svid.jwks(),
    oboJwks: () => obo.jwks(),
    publicKey: (kid) => svid.publicKey(kid),
    async mint(o) {
      const id = parseSpiffeId(o.spiffeId);
      if (typeof id === 'string') throw new IssuerError(`cannot mint for "${o.spiffeId}": ${id}`);
      checkTtl(o.ttlSeconds, MAX_TTL_SECONDS);
      const aud = Array.isArray(o.audience) ? o.audience : [o.audience];
      if (aud.length === 0 || aud.some((a) => typeof a !== 'string' || a === '')) throw new IssuerError('audience must be a non-empty string or list of strings');
      for (const key of Object.keys(o.extra ?? {})) {
        if (RESERVED.has(key)) throw new IssuerError(`extra claim "${key}" would override a registered claim`);
      }
      const iat = nowSec(now);
      return svid.sign({
        ...o.extra, iss, sub: o.spiffeId, aud: aud.length === 1 ? aud[0] : aud,
        iat, nbf: iat, exp: iat + o.ttlSeconds, jti: o.jti ?? randomUUID(),
      }, SVID_TYP);
    },
    async signAssertion(claims, o = {}) {
      return obo.sign(assertionClaims(claims, { iss, svidAudiences, now: nowSec(now), ttl: o.ttlSeconds ?? 300 }), OBO_TYP);
    },
    async reload() {
      await svid.reload();
      await obo.reload();
    },
    async rotate() {
      const r = await svid.rotate();
      const o = await obo.rotate();
      return { ...r, oboKid: o.kid };
    },
    keys: () => svid.keys(),
    importKeys: (ring, file) => (ring === 'svid' ? svid : obo).adopt(file),
  };
}

/**
 * The claims of an on-behalf-of assertion, checked: iss is ours, times are current (the injector
 * sets them to know when to refresh; anything else is refused), sub is a SPIFFE ID, and aud is a
 * downstream, never one of aam's own audiences (that token would be a JWT-SVID in all but key).
 */
function assertionClaims(claims: Record<string, unknown>, c: { iss: string; svidAudiences: Set<string>; now: number; ttl: number }): Record<string, unknown> {
  if ('iss' in claims && claims.iss !== c.iss) throw new IssuerError(`assertion claim "iss" must be this issuer (${c.iss}), got ${JSON.stringify(claims.iss)}; it is set by the issuer`);
  const time = (k: 'iat' | 'nbf' | 'exp') => {
    const v = claims[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v))) throw new IssuerError(`assertion claim "${k}" must be whole seconds`);
    return v as number | undefined;
  };
  const iat = time('iat') ?? c.now;
  const nbf = time('nbf') ?? iat;
  const exp = time('exp') ?? iat + c.ttl;
  if (Math.abs(iat - c.now) > ASSERTION_SKEW_SECONDS || nbf < iat - ASSERTION_SKEW_SECONDS || nbf > iat + ASSERTION_SKEW_SECONDS) {
    throw new IssuerError('assertion claims "iat"/"nbf" must be the current time; they are set by the issuer');
  }
  checkTtl(exp - iat, MAX_ASSERTION_TTL_SECONDS, 'assertion "exp" - "iat"; the times are set by the issuer');
  if (typeof claims.sub !== 'string' || typeof parseSpiffeId(claims.sub) === 'string') throw new IssuerError(`assertion "sub" must be the agent's SPIFFE ID, got ${JSON.stringify(claims.sub)}`);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (aud.length === 0 || aud.some((a) => typeof a !== 'string' || a === '')) throw new IssuerError('assertion "aud" must name the downstream (a non-empty string or list)');
  const own = (aud as string[]).find((a) => c.svidAudiences.has(a));
  if (own !== undefined) throw new IssuerError(`assertion audience "${own}" is one aam accepts JWT-SVIDs for; an on-behalf-of assertion must name its downstream`);
  return { jti: randomUUID(), ...claims, iss: c.iss, iat, nbf, exp };
}

/** One signing key ring in its own file: the active key plus retired keys still within grace. */
interface KeyRing {
  readonly active: string;
  jwks(): { keys: JWK[] };
  publicKey(kid: string): KeyObject | undefined;
  sign(payload: Record<string, unknown>, typ: string): Promise<string>;
  rotate(): Promise<{ kid: string; retired: string }>;
  reload(): Promise<void>;
  keys(): IssuerKeyInfo[];
  adopt(file: IssuerKeyFile): Promise<KeyImport>;
}

async function openKeyRing(store: KeyRingStore, grace: number, now: () => number): Promise<KeyRing> {
  const where = store.where;
  let text = await store.read();
  if (text === undefined) {
    const k = await newKey(nowSec(now));
    const first = serialize({ version: 1, active: k.kid, keys: [k] });
    // Create-if-absent: if another process (e.g. `aam identity issue` during first `aam serve`, or
    // another replica) won the race, use its key instead of overwriting it.
    text = (await store.createIfAbsent(first)) ? first : await store.read();
    if (text === undefined) throw new IssuerError(`cannot create the issuer key ring in ${where}`);
  }
  let live = new Map<string, LiveKey>();
  let active = '';
  let installed = '';
  const install = (t: string) => {
    if (t === installed) return; // unchanged (the fleet re-reads on every poll)
    const st = parseState(t, where);
    const next = new Map<string, LiveKey>();
    for (const k of st.keys) next.set(k.kid, toLive(k, where));
    if (!next.has(st.active)) throw new IssuerError(`${where}: active key "${st.active}" is missing; restore it from a backup or ${store.reset} to start with a new key`);
    live = next;
    active = st.active;
    installed = t;
  };
  install(text);
  const reload = async () => {
    const t = await store.read();
    if (t === undefined) throw new IssuerError(`issuer key ring ${where} disappeared; restore it from a backup`);
    install(t);
  };
  const usable = (k: LiveKey) => k.retiredAt === undefined || k.retiredAt + grace > nowSec(now);

  return {
    get active() { return active; },
    jwks: () => ({ keys: [...live.values()].filter(usable).map((k) => k.publicJwk) }),
    publicKey(kid) {
      const k = live.get(kid);
      return k && usable(k) ? k.publicKey : undefined;
    },
    sign(payload, typ) {
      const k = live.get(active)!;
      return new (jose().SignJWT)(payload).setProtectedHeader({ alg: ISSUER_ALG, kid: k.kid, typ }).sign(k.privateKey);
    },
    reload,
    async rotate() {
      const k = await newKey(nowSec(now));
      let retired = '';
      try {
        // On the stored ring, not this process's copy: another process (CLI, replica) may have rotated since.
        await store.update((current) => {
          if (current === undefined) throw new IssuerError(`issuer key ring ${where} disappeared; restore it from a backup`);
          install(current);
          const t = nowSec(now);
          retired = active;
          live.get(retired)!.retiredAt = t;
          live.set(k.kid, toLive(k, where));
          active = k.kid;
          for (const [kid, key] of live) if (!usable(key)) live.delete(kid);
          installed = serialize({ version: 1, active, keys: [...live.values()].map(stored) });
          return installed;
        });
      } catch (e) {
        installed = '';
        await reload().catch(() => {}); // back to what is stored
        throw e;
      }
      return { kid: active, retired };
    },
    keys: () => [...live.values()].map((k) => ({ kid: k.kid, createdAt: k.createdAt, retiredAt: k.retiredAt, active: k.kid === active })),
    async adopt(file) {
      let result: KeyImport = { added: [], present: [], expired: [] };
      // Sorted against a given ring state; written only when a key is added (a repeated import writes nothing).
      const merge = (current: string): StoredKey[] => {
        install(current);
        const t = nowSec(now);
        result = { added: [], present: [], expired: [] };
        const add: StoredKey[] = [];
        for (const k of file.state.keys) {
          // The file's active key retires now: what it signed is at most MAX_TTL_SECONDS old.
          const key = { ...k, retiredAt: k.retiredAt ?? t };
          if (live.has(k.kid)) result.present.push(k.kid);
          else if (key.retiredAt + grace <= t) result.expired.push(k.kid);
          else { add.push(key); result.added.push(k.kid); }
        }
        return add;
      };
      const current = await store.read();
      if (current === undefined) throw new IssuerError(`issuer key ring ${where} disappeared; restore it from a backup`);
      if (merge(current).length === 0) return result;
      try {
        await store.update((text) => {
          if (text === undefined) throw new IssuerError(`issuer key ring ${where} disappeared; restore it from a backup`);
          for (const k of merge(text)) live.set(k.kid, toLive(k, file.path));
          installed = serialize({ version: 1, active, keys: [...live.values()].map(stored) });
          return installed;
        });
      } catch (e) {
        installed = '';
        await reload().catch(() => {});
        throw e;
      }
      return result;
    },
  };
}

/**
 * An issuer key file to import (importKeys), checked whole before anything is written: readable by
 * its owner only (as aam writes it), a key ring aam wrote, every key loadable and named by its
 * public key's thumbprint (a kid that does not match its key is refused, not trusted).
 */
export async function readIssuerKeyFile(path: string): Promise<IssuerKeyFile> {
  const text = await readRingFile(path);
  if (text === undefined) throw new IssuerError(`issuer key file ${path} does not exist (a data dir keeps them in issuer/keys.json and issuer/obo-keys.json)`);
  const state = parseState(text, path);
  for (const k of state.keys) {
    if (!k || typeof k.kid !== 'string' || k.alg !== ISSUER_ALG || typeof k.createdAt !== 'number' || (k.retiredAt !== undefined && typeof k.retiredAt !== 'number')) {
      throw new IssuerError(`issuer key file ${path}: a key lacks its kid, createdAt or ${ISSUER_ALG} alg; restore the file from a backup`);
    }
    const { d: _d, ...pub } = toLive(k, path).publicKey.export({ format: 'jwk' }) as JWK;
    if (ecThumbprint(pub) !== k.kid) throw new IssuerError(`issuer key file ${path}: key "${k.kid}" is not named by its public key's thumbprint; refused (restore the file from a backup)`);
  }
  if (!state.keys.some((k) => k.kid === state.active)) throw new IssuerError(`issuer key file ${path}: active key "${state.active}" is missing; restore the file from a backup`);
  return { path, state };
}

const serialize = (st: StoredState): string => JSON.stringify(st, null, 2) + '\n';

/** A key ring in a file of the data dir (mode 0600, written atomically). */
function fileRing(path: string, dataDir: string): KeyRingStore {
  return {
    where: path,
    reset: `delete ${join(dataDir, 'issuer')}`,
    read: () => readRingFile(path),
    createIfAbsent: (text) => writeRingFile(path, text, true),
    async update(fn) { await writeRingFile(path, fn(await readRingFile(path))); },
  };
}

/**
 * A (fleet) ring that, while it holds no state, takes the state of the key file at `path` if there
 * is one: imported once, by whichever process first finds the ring empty (create-if-absent, so
 * replicas starting together import one file, not several). The file is left in place.
 */
function importing(ring: KeyRingStore, path: string): KeyRingStore {
  return {
    ...ring,
    async read() {
      const text = await ring.read();
      if (text !== undefined) return text;
      const legacy = await readRingFile(path);
      if (legacy === undefined) return undefined;
      parseState(legacy, path); // a damaged file is named now, not installed into the fleet
      await ring.createIfAbsent(legacy);
      return ring.read();
    },
  };
}

function nowSec(now: () => number): number {
  return Math.floor(now() / 1000);
}

function checkTtl(ttl: number, max: number, what = 'ttl'): void {
  if (!Number.isInteger(ttl) || ttl <= 0 || ttl > max) {
    throw new IssuerError(`${what} must be a whole number of seconds between 1 and ${max}, got ${ttl}`);
  }
}

async function newKey(createdAt: number): Promise<StoredKey> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' }) as JWK;
  const { d: _d, ...pub } = jwk;
  return { kid: ecThumbprint(pub), alg: ISSUER_ALG, createdAt, jwk };
}

/**
 * RFC 7638 thumbprint (SHA-256) of an EC public key: its required members in lexicographic order,
 * as jose's calculateJwkThumbprint computes it, without loading jose when a gateway starts.
 */
export function ecThumbprint(pub: JWK): string {
  return createHash('sha256').update(JSON.stringify({ crv: pub.crv, kty: pub.kty, x: pub.x, y: pub.y })).digest('base64url');
}

function toLive(k: StoredKey, where: string): LiveKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: k.jwk as JsonWebKey, format: 'jwk' });
  } catch (e) {
    throw new IssuerError(`${where}: key "${k.kid}" cannot be loaded (${(e as Error).message}); restore the file from a backup`);
  }
  const publicKey = createPublicKey(privateKey);
  const publicJwk: JWK = { ...(publicKey.export({ format: 'jwk' }) as JWK), kid: k.kid, alg: k.alg, use: 'sig' };
  return { ...k, privateKey, publicKey, publicJwk };
}

function stored(k: LiveKey): StoredKey {
  return { kid: k.kid, alg: k.alg, createdAt: k.createdAt, ...(k.retiredAt !== undefined ? { retiredAt: k.retiredAt } : {}), jwk: k.jwk };
}

async function readRingFile(path: string): Promise<string | undefined> {
  let st;
  try { st = await stat(path); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new IssuerError(`cannot read issuer key file ${path}: ${(e as Error).message}`);
  }
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new IssuerError(`issuer key file ${path} has mode ${mode}: group/others can read the signing key. Fix: chmod 600 ${path}`);
  }
  return readFile(path, 'utf8');
}

function parseState(text: string, where: string): StoredState {
  let value: unknown;
  try { value = JSON.parse(text); } catch {
    throw new IssuerError(`issuer key ring ${where} is not valid JSON; restore it from a backup (starting over creates a new key and invalidates issued tokens)`);
  }
  const s = value as Partial<StoredState> | null;
  if (!s || s.version !== 1 || typeof s.active !== 'string' || !Array.isArray(s.keys)) {
    throw new IssuerError(`issuer key ring ${where} has an unknown format; restore it from a backup`);
  }
  return s as StoredState;
}

/**
 * Write atomically (temp file + rename) with mode 0600 so a crash never leaves a half key file.
 * With onlyIfAbsent, link() instead of rename(): fails (returns false) when the file already exists.
 */
async function writeRingFile(path: string, text: string, onlyIfAbsent = false): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`;
  await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
  if (!onlyIfAbsent) {
    await rename(tmp, path);
    return true;
  }
  try {
    await link(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    await unlink(tmp);
  }
}
