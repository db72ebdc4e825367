// The in-memory mirror of the key tables that every key store answers from: presented secret ->
// hash -> secret row -> key, so authentication is a few Map lookups whichever store is behind it.
import { generationOf, hashKey } from './key-secrets.ts';
import type { KeyAuth, KeyRecord } from './types.ts';

export interface SecretRow { hash: string; key_id: string; expires_at: number | null; generation: string }

const HASH_CACHE_MAX = 10_000;
/** aam secrets are 36 characters; a much longer one is not a key and is not worth hashing. */
const MAX_SECRET_LENGTH = 256;

export class KeyMirror {
  /**
   * secret -> sha256 of secrets that exist: hashing costs ~1 us, a Map hit ~50 ns. Misses are never
   * remembered, so a flood of wrong keys can neither grow this nor evict the real ones.
   */
  readonly #hashes = new Map<string, string>();
  /** hash -> secret row (expires_at for secrets in their rotation grace period). */
  #byHash = new Map<string, SecretRow>();
  /** generation -> secret row, for tokens minted from one secret. */
  #byGeneration = new Map<string, SecretRow>();
  #keys = new Map<string, KeyRecord>();
  /** key id -> its secrets' hashes (to replace one key's rows). */
  #secretsOf = new Map<string, string[]>();

  /** Replace everything (a full read of the tables). */
  replaceAll(keys: Iterable<KeyRecord>, secrets: Iterable<{ hash: string; key_id: string; expires_at: number | null }>): void {
    this.#keys = new Map();
    this.#byHash = new Map();
    this.#byGeneration = new Map();
    this.#secretsOf = new Map();
    this.#put(keys, secrets);
  }

  /** Replace the given keys and all their secrets (an incremental read of changed keys). */
  replaceKeys(keys: Iterable<KeyRecord>, secrets: Iterable<{ hash: string; key_id: string; expires_at: number | null }>): void {
    const list = [...keys];
    for (const k of list) {
      for (const h of this.#secretsOf.get(k.id) ?? []) {
        const row = this.#byHash.get(h);
        this.#byHash.delete(h);
        if (row) this.#byGeneration.delete(row.generation);
      }
      this.#secretsOf.delete(k.id);
    }
    this.#put(list, secrets);
  }

  #put(keys: Iterable<KeyRecord>, secrets: Iterable<{ hash: string; key_id: string; expires_at: number | null }>): void {
    for (const k of keys) this.#keys.set(k.id, k);
    for (const s of secrets) {
      const row: SecretRow = { hash: s.hash, key_id: s.key_id, expires_at: s.expires_at === null ? null : Number(s.expires_at), generation: generationOf(s.hash) };
      this.#byHash.set(row.hash, row);
      this.#byGeneration.set(row.generation, row);
      const of = this.#secretsOf.get(row.key_id);
      if (of) of.push(row.hash); else this.#secretsOf.set(row.key_id, [row.hash]);
    }
  }

  get cachedSecrets(): number { return this.#hashes.size; }

  get(id: string): KeyRecord | undefined { return this.#keys.get(id); }

  keys(): IterableIterator<KeyRecord> { return this.#keys.values(); }

  /**
   * Hot path: resolve a presented secret. `lookAgain` runs on a miss (maybe the key was created a
   * moment ago elsewhere) and returns true when it re-read the tables, so the lookup is retried.
   */
  authenticate(secret: string, now: number, lookAgain: () => boolean = () => false): KeyAuth {
    if (secret.length > MAX_SECRET_LENGTH) return { ok: false, reason: 'unknown API key' };
    const cached = this.#hashes.get(secret);
    const hash = cached ?? hashKey(secret);
    let row = this.#byHash.get(hash);
    if (!row && lookAgain()) row = this.#byHash.get(hash);
    if (!row) return { ok: false, reason: 'unknown API key' };
    if (cached === undefined) {
      if (this.#hashes.size >= HASH_CACHE_MAX) this.#hashes.clear();
      this.#hashes.set(secret, hash);
    }
    const problem = this.#problem(row, now);
    if (problem) return { ok: false, reason: problem };
    return { ok: true, key: this.#keys.get(row.key_id)!, generation: row.generation };
  }

  /** Why this secret row cannot authenticate now (revoked, expired, rotated past grace), or undefined. */
  #problem(row: SecretRow, now: number): string | undefined {
    const key = this.#keys.get(row.key_id);
    if (!key) return 'unknown API key';
    if (key.revokedAt) return `API key ${key.id} was revoked at ${key.revokedAt}`;
    if (key.expiresAt && Date.parse(key.expiresAt) <= now) return `API key ${key.id} expired at ${key.expiresAt}`;
    if (row.expires_at !== null && row.expires_at <= now) return `this secret of API key ${key.id} was rotated and its grace period ended; use the new secret`;
    return undefined;
  }

  /** For a token minted from a key: why its generation no longer authenticates, or undefined while it does. */
  generationProblem(keyId: string, generation: string | undefined, now: number): string | undefined {
    if (generation === undefined) return `the token names API key ${keyId} but not which of its secrets it was minted from; exchange the key for a new token`;
    const row = this.#byGeneration.get(generation);
    if (!row || row.key_id !== keyId) return `the secret of API key ${keyId} this token was minted from no longer exists`;
    return this.#problem(row, now);
  }

  /** When a token minted from this generation must expire at the latest (ms), or null. */
  generationValidUntil(generation: string): number | null {
    const row = this.#byGeneration.get(generation);
    if (!row) return null;
    const keyExpiry = this.#keys.get(row.key_id)?.expiresAt;
    const ends = [keyExpiry ? Date.parse(keyExpiry) : null, row.expires_at].filter((t): t is number => t !== null);
    return ends.length ? Math.min(...ends) : null;
  }
}
