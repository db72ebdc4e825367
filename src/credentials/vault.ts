// The vault: resolves every Credential resource once at load (and on reload/rotation), keeps the
// values in memory behind Secret, and hands them only to the injector (via REVEAL). The request
// path never touches disk: files and stored rotations are picked up by a background poll.
import { readFileSync, statSync, type Stats } from 'node:fs';
import type { DatabaseSync } from 'node:sqlite';
import type { ConfigSet, CredentialKind, CredentialSpec } from '../config/schema.ts';
import { CredentialError } from './errors.ts';
import { envNotSet, optionalNames, providerOnlyNames } from './presence.ts';
import { loadMasterKey, type MasterKey } from './master-key.ts';
import { MIN_SCRUB_LENGTH, Scrubber, type ScrubEntry } from './scrub.ts';
import { REVEAL, Secret } from './secret.ts';
import { EncryptedStore } from './stored.ts';
import type { CredentialRows } from '../store/credential-rows.ts';
import { awsScrubParts } from './aws-sigv4.ts';
import { serviceAccountScrubParts } from './google-sa.ts';

export type CredentialSource = 'env' | 'file' | 'stored' | 'value' | 'none';

export interface CredentialInfo {
  name: string;
  source: CredentialSource;
  /** env var name or file path (never the value); absent for stored/value. */
  ref?: string;
  kind: CredentialKind;
  /** Active version (null when no value could be resolved). */
  version: number | null;
  created: string | null;
  last_used: string | null;
  status: 'ok' | 'missing';
  problem?: string;
  warnings: string[];
}

export type TryResolve =
  | { ok: true; name: string; kind: CredentialKind; version: number }
  | { ok: false; name: string; reason: string };

/** What the injector gets: the only path by which a value leaves the vault. */
export interface Revealed {
  name: string;
  kind: CredentialKind;
  spec: CredentialSpec;
  /** Absent for on_behalf_of credentials without a source. */
  secret?: Secret;
  version: number;
}

export interface VaultOptions {
  dataDir: string;
  db: DatabaseSync;
  /** Where stored credentials' rows live when not in db (fleet: PostgreSQL, see store/credential-rows.ts). */
  rows?: CredentialRows;
  config: ConfigSet;
  env?: Readonly<Record<string, string | undefined>>;
  /** Defaults to loadMasterKey({ dataDir, env }). */
  masterKey?: MasterKey;
  /** Poll interval for changed files, rotations by other processes and last-used flushes; 0 disables. */
  refreshMs?: number;
  /** false (CLI): unresolvable credentials are listed as missing instead of failing the open. */
  strict?: boolean;
  /** Called when refresh() or set() makes a new version active (never with the value). */
  onRotated?: (name: string, version: number, source: CredentialSource) => void;
  now?: () => number;
}

interface Entry {
  name: string;
  spec: CredentialSpec;
  kind: CredentialKind;
  source: CredentialSource;
  ref?: string;
  optional: boolean;
  secret?: Secret;
  version: number;
  created: number;
  problem?: string;
  warnings: string[];
  file?: { mtimeMs: number; size: number; ino: number };
}

export function effectiveKind(spec: CredentialSpec): CredentialKind {
  if (spec.kind) return spec.kind;
  if (spec.oauth2) return 'oauth2_client_credentials';
  if (spec.obo) return 'on_behalf_of';
  if (spec.aws) return 'aws_sigv4';
  if (spec.google) return 'google_service_account';
  if (spec.inject?.query) return 'query';
  if (spec.inject?.header) return 'header';
  return 'api_key';
}

function sourceOf(spec: CredentialSpec): { source: CredentialSource; ref?: string } {
  if (spec.env !== undefined) return { source: 'env', ref: spec.env };
  if (spec.file !== undefined) return { source: 'file', ref: spec.file };
  if (spec.stored) return { source: 'stored' };
  if (spec.value !== undefined) return { source: 'value' };
  return { source: 'none' };
}

const SHORT_WARNING = `value shorter than ${MIN_SCRUB_LENGTH} characters: it is not scrubbed from responses`;

/** The warnings with the short-value one set for this value: a rotation can make a value short or long. */
function withLengthWarning(warnings: readonly string[], secret: Secret | undefined): string[] {
  const rest = warnings.filter((w) => w !== SHORT_WARNING);
  return secret && secret.length < MIN_SCRUB_LENGTH ? [...rest, SHORT_WARNING] : rest;
}

function readSecretFile(path: string): string {
  // One trailing newline is an artefact of `echo x > file`, not part of the secret.
  return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
}

export class Vault {
  readonly #opts: VaultOptions;
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #store: EncryptedStore;
  readonly #now: () => number;
  #entries = new Map<string, Entry>();
  #scrubber: Scrubber | undefined;
  /** Tokens minted/fetched by the injector (OAuth access tokens, OBO assertions): scrubbed too. */
  readonly #derived = new Map<string, { name: string; expiresAt: number }>();
  #derivedNextExpiry = Infinity;
  readonly #used = new Map<string, number>();
  #usedDirty = new Map<string, number>();
  #lastUsedDb: Map<string, string>;
  #timer: NodeJS.Timeout | undefined;
  readonly masterKeyId: string;
  readonly #master: MasterKey;

  constructor(opts: VaultOptions) {
    this.#opts = opts;
    this.#env = opts.env ?? process.env;
    this.#now = opts.now ?? Date.now;
    const key = opts.masterKey ?? loadMasterKey({ dataDir: opts.dataDir, env: this.#env });
    this.masterKeyId = key.keyId;
    this.#master = key;
    this.#store = new EncryptedStore(opts.rows ?? opts.db, key);
    this.#lastUsedDb = this.#store.lastUsed();
    this.#entries = this.#resolveAll(opts.config);
    // A version stored elsewhere (another replica, the CLI): take it now rather than at the next poll.
    this.#store.onChange(() => { try { this.refresh(); } catch { /* the poll retries; list() shows problems */ } });
    const ms = opts.refreshMs ?? 1000;
    if (ms > 0) {
      this.#timer = setInterval(() => { try { this.refresh(); } catch { /* next tick retries; list() shows problems */ } }, ms);
      this.#timer.unref();
    }
  }

  /** A purpose-bound subkey of the master key (HKDF): the same on every replica sharing AAM_MASTER_KEY. */
  subkey(info: string): Buffer { return this.#master.derive(info); }

  #resolveAll(config: ConfigSet): Map<string, Entry> {
    const optional = optionalNames(config);
    const providerOnly = providerOnlyNames(config);
    const out = new Map<string, Entry>();
    const problems: string[] = [];
    for (const r of config.credentials.values()) {
      const prev = this.#entries.get(r.name);
      const e = this.#resolve(r.name, r.spec, optional.has(r.name), prev, providerOnly.has(r.name));
      out.set(r.name, e);
      if (e.problem && !e.optional) problems.push(e.problem);
    }
    if (problems.length && this.#opts.strict !== false) {
      throw new CredentialError('credential_config', `cannot load credentials:\n  ${problems.join('\n  ')}`);
    }
    return out;
  }

  #resolve(name: string, spec: CredentialSpec, optional: boolean, prev: Entry | undefined, providerOnly = false): Entry {
    const { source, ref } = sourceOf(spec);
    const e: Entry = { name, spec, kind: effectiveKind(spec), source, ref, optional, version: 0, created: this.#now(), warnings: [] };
    // Versions stay monotonic per name across reloads: the same value keeps it, a new value bumps it.
    if (source === 'env') {
      const v = this.#env[ref as string];
      if (v === undefined || v === '') e.problem = envNotSet(name, ref as string, providerOnly);
      else this.#setValue(e, new Secret(v), prev);
    } else if (source === 'file') {
      this.#readFile(e, prev);
    } else if (source === 'stored') {
      const row = this.#store.latest(name); // a wrong master key throws here: no partial start
      if (!row) e.problem = `Credential "${name}" is stored but has no value yet: run \`aam credentials set ${name}\` with the secret on stdin`;
      else { e.secret = row.secret; e.version = row.version; e.created = Date.parse(row.createdAt); }
    } else if (source === 'value') {
      this.#setValue(e, new Secret(spec.value as string), prev);
      e.warnings.push('inline value in the config file: for demos only; use env, file or stored');
    }
    const idEnv = spec.aws?.access_key_id_env;
    if (idEnv !== undefined && !e.problem && !this.#env[idEnv]?.trim()) e.problem = `Credential "${name}": environment variable ${idEnv} (aws.access_key_id_env) is not set (export the AWS access key id in it)`;
    e.warnings = withLengthWarning(e.warnings, e.secret);
    return e;
  }

  /** Keep the version when the value is unchanged (reload), bump it when it changed. */
  #setValue(e: Entry, secret: Secret, prev: Entry | undefined): void {
    if (prev?.secret && prev.secret.equals(secret)) { e.secret = prev.secret; e.version = prev.version; e.created = prev.created; return; }
    e.secret = secret;
    e.version = (prev?.version ?? 0) + 1;
    e.created = this.#now();
  }

  #readFile(e: Entry, prev: Entry | undefined): void {
    const path = e.ref as string;
    let st: Stats;
    try {
      st = statSync(path);
      const v = readSecretFile(path);
      if (v === '') throw new Error('file is empty');
      e.file = { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino };
      this.#setValue(e, new Secret(v), prev);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      e.problem = `Credential "${e.name}": file ${path} cannot be read (${why}); create it or fix the path`;
    }
  }

  /** Pick up changed files and rotations made by other processes; flush last-used times. */
  refresh(): void {
    let changed = false;
    let stored: ReturnType<EncryptedStore['latestVersions']> | undefined;
    for (const [name, e] of this.#entries) {
      if (e.source === 'file') {
        let st: Stats | undefined;
        try { st = statSync(e.ref as string); } catch { /* gone: keep the last good value */ }
        if (!st) { if (e.secret && !e.warnings.includes('file vanished')) e.warnings.push('file vanished'); continue; }
        const f = e.file;
        if (f && f.mtimeMs === st.mtimeMs && f.size === st.size && f.ino === st.ino) continue;
        const next: Entry = { ...e, warnings: e.warnings.filter((w) => w !== 'file vanished'), problem: undefined };
        this.#readFile(next, e);
        if (next.problem && e.secret) continue; // mid-write or unreadable: keep serving the old version
        next.warnings = withLengthWarning(next.warnings, next.secret);
        this.#entries.set(name, next);
        if (next.version !== e.version) { changed = true; this.#rotated(name, next.version, e.source); }
      } else if (e.source === 'stored') {
        stored ??= this.#store.latestVersions();
        const info = stored.get(name);
        if (info && info.version > e.version) {
          const row = this.#store.latest(name);
          if (row) {
            this.#entries.set(name, { ...e, secret: row.secret, version: row.version, created: Date.parse(row.createdAt), problem: undefined, warnings: withLengthWarning(e.warnings, row.secret) });
            changed = true;
            this.#rotated(name, row.version, e.source);
          }
        }
      }
    }
    if (changed) this.#scrubber = undefined;
    this.#flushUsage();
  }

  #rotated(name: string, version: number, source: CredentialSource): void {
    try { this.#opts.onRotated?.(name, version, source); } catch { /* evidence hooks must not break rotation */ }
  }

  #flushUsage(): void {
    if (this.#usedDirty.size === 0) return;
    const batch = this.#usedDirty;
    this.#usedDirty = new Map();
    this.#store.recordUse(batch);
  }

  /** Swap in a new config atomically; on any problem the old credentials stay active and this throws. */
  reload(config: ConfigSet): void {
    const next = this.#resolveAll(config);
    this.#opts.config = config;
    this.#entries = next;
    this.#scrubber = undefined;
  }

  /** Store a new version of a stored credential (rotation); active at once, no restart. */
  async set(name: string, secret: string): Promise<{ name: string; version: number; created: string }> {
    if (secret === '') throw new CredentialError('credential_config', `refusing to store an empty secret for "${name}"`, { credential: name });
    const e = this.#entries.get(name);
    if (e && e.source !== 'stored') {
      throw new CredentialError('credential_config', `Credential "${name}" reads from ${e.source}${e.ref ? ` ${e.ref}` : ''}; only credentials with \`stored: true\` can be set`, { credential: name });
    }
    const info = await this.#store.put(name, secret);
    const now = this.#entries.get(name); // a refresh while storing may have taken this version already
    if (e && now && now.version < info.version) {
      const fresh = new Secret(secret);
      const next: Entry = { ...now, secret: fresh, version: info.version, created: Date.parse(info.createdAt), problem: undefined, warnings: withLengthWarning(now.warnings, fresh) };
      this.#entries.set(name, next);
      this.#scrubber = undefined;
      this.#rotated(name, info.version, 'stored');
    }
    return { name, version: info.version, created: info.createdAt };
  }

  has(name: string): boolean { return this.#entries.has(name); }

  /** Whether a credential can be used, without throwing (used to switch off optional providers). */
  tryResolve(name: string): TryResolve {
    const e = this.#entries.get(name);
    if (!e) return { ok: false, name, reason: `unknown Credential "${name}"` };
    if (e.problem && !e.secret) return { ok: false, name, reason: e.problem };
    return { ok: true, name, kind: e.kind, version: e.version };
  }

  /** Names, sources, versions and use: never values. */
  list(): CredentialInfo[] {
    return [...this.#entries.values()].map((e) => {
      const used = this.#used.get(e.name);
      const ok = !(e.problem && !e.secret);
      return {
        name: e.name, source: e.source, ...(e.ref !== undefined ? { ref: e.ref } : {}), kind: e.kind,
        version: ok && e.source !== 'none' ? e.version : ok ? 0 : null,
        created: ok && e.source !== 'none' ? new Date(e.created).toISOString() : null,
        last_used: used !== undefined ? new Date(used).toISOString() : this.#lastUsedDb.get(e.name) ?? null,
        status: ok ? 'ok' : 'missing',
        ...(e.problem ? { problem: e.problem } : {}),
        warnings: [...e.warnings],
      };
    });
  }

  /** The scrubber for every active value (and live derived tokens); rebuilt only after a change. */
  scrubber(): Scrubber {
    // No live derived token (the usual case): no clock read. Several calls per request (the egress
    // door's open and refresh, the audit line's scrub) read it before.
    if (this.#derivedNextExpiry !== Infinity) {
      const now = this.#now();
      if (now >= this.#derivedNextExpiry) this.#purgeDerived(now);
    }
    if (this.#scrubber) return this.#scrubber;
    const entries: ScrubEntry[] = [];
    for (const e of this.#entries.values()) {
      if (!e.secret) continue;
      const v = e.secret[REVEAL]();
      const extra: string[] = [];
      if (e.kind === 'basic') {
        if (e.spec.username) extra.push(`${e.spec.username}:${v}`);
        else if (v.includes(':')) extra.push(v.slice(v.indexOf(':') + 1));
      } else if (e.kind === 'aws_sigv4') extra.push(...awsScrubParts(v));
      else if (e.kind === 'google_service_account') extra.push(...serviceAccountScrubParts(v));
      entries.push({ name: e.name, value: v, extra });
    }
    for (const [v, d] of this.#derived) entries.push({ name: d.name, value: v });
    this.#scrubber = new Scrubber(entries);
    return this.#scrubber;
  }

  #purgeDerived(now: number): void {
    let next = Infinity;
    for (const [v, d] of this.#derived) {
      if (d.expiresAt <= now) { this.#derived.delete(v); this.#scrubber = undefined; } else next = Math.min(next, d.expiresAt);
    }
    this.#derivedNextExpiry = next;
  }

  /** @internal injector only: the current value and version; records the use. */
  [REVEAL](name: string): Revealed {
    const e = this.#entries.get(name);
    if (!e) throw new CredentialError('credential_unknown', `unknown Credential "${name}"`, { status: 500, credential: name });
    if (!e.secret && e.source !== 'none') throw new CredentialError('credential_config', e.problem ?? `Credential "${name}" has no value`, { status: 502, credential: name });
    const t = this.#now();
    this.#used.set(name, t);
    this.#usedDirty.set(name, t);
    return { name, kind: e.kind, spec: e.spec, secret: e.secret, version: e.version };
  }

  /** @internal injector only: scrub a token it obtained (kept until expiresAt + 5 min). */
  addDerived(name: string, token: string, expiresAt: number): void {
    if (token.length < MIN_SCRUB_LENGTH || this.#derived.has(token)) return;
    const until = expiresAt + 5 * 60_000;
    this.#derived.set(token, { name, expiresAt: until });
    this.#derivedNextExpiry = Math.min(this.#derivedNextExpiry, until);
    this.#scrubber = undefined;
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#flushUsage();
  }
}

/** Open the vault: loads the master key, decrypts stored credentials, resolves every Credential. */
export function openVault(opts: VaultOptions): Vault {
  return new Vault(opts);
}
