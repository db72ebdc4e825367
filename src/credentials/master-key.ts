// The master key that encrypts stored credentials. Sources, in order:
//   1. AAM_MASTER_KEY: 32 bytes as hex (64 chars) or base64, or else a passphrase (>= 16 chars)
//      stretched with scrypt (salt kept in <dataDir>/master.salt, not secret);
//   2. <dataDir>/master.key: base64 of 32 random bytes, created with mode 0600 on first start.
// A key file that group or others can read is refused: anyone who can read it can read every
// stored credential.
import { createHmac, hkdfSync, randomBytes, scryptSync } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { CredentialError } from './errors.ts';

export type MasterKeySource = 'env' | 'env-passphrase' | 'file' | 'file-created';

export class MasterKey {
  readonly #key: Buffer;
  readonly source: MasterKeySource;
  /** Non-secret fingerprint, shown in errors so operators can tell two keys apart. */
  readonly keyId: string;
  /** Key file path when source is file/file-created. */
  readonly path?: string;
  constructor(key: Buffer, source: MasterKeySource, path?: string) {
    if (key.length !== 32) throw new CredentialError('master_key', `master key must be 32 bytes, got ${key.length}`);
    this.#key = Buffer.from(key);
    this.source = source;
    this.path = path;
    this.keyId = createHmac('sha256', this.#key).update('aam master key id v1').digest('hex').slice(0, 16);
  }
  /** A purpose-bound subkey (HKDF-SHA256), so the raw master key is used for nothing directly. */
  derive(info: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#key, Buffer.alloc(0), info, 32));
  }
  toJSON(): unknown { return { source: this.source, keyId: this.keyId }; }
  [inspect.custom](): string { return `MasterKey(${this.source}, ${this.keyId})`; }
}

const HEX_KEY = /^[0-9a-fA-F]{64}$/;
const B64_KEY = /^[A-Za-z0-9+/_-]{42,44}={0,2}$/;
const MIN_PASSPHRASE = 16;
const HOW_TO_MAKE = 'generate one with `openssl rand -base64 32`';

/** Parse AAM_MASTER_KEY (exported for tests). Passphrases need the data dir for their salt. */
export function parseMasterKeyEnv(value: string, dataDir: string): MasterKey {
  const v = value.trim();
  if (HEX_KEY.test(v)) return new MasterKey(Buffer.from(v, 'hex'), 'env');
  if (B64_KEY.test(v)) {
    const raw = Buffer.from(v, 'base64');
    if (raw.length === 32) return new MasterKey(raw, 'env');
  }
  if (v.length < MIN_PASSPHRASE) {
    throw new CredentialError('master_key', `AAM_MASTER_KEY is neither 32 bytes (hex or base64) nor a passphrase of at least ${MIN_PASSPHRASE} characters; ${HOW_TO_MAKE}`);
  }
  const salt = saltFor(dataDir);
  // N=2^15, r=8: ~100 ms once at start, 32 MiB; maxmem raised because the default is exactly 32 MiB.
  const key = scryptSync(v, salt, 32, { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  return new MasterKey(key, 'env-passphrase');
}

function saltFor(dataDir: string): Buffer {
  const path = join(dataDir, 'master.salt');
  try { return Buffer.from(readFileSync(path, 'utf8').trim(), 'base64'); } catch { /* create below */ }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  try { writeFileSync(path, randomBytes(16).toString('base64') + '\n', { mode: 0o600, flag: 'wx' }); } catch { /* raced: read it */ }
  return Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
}

/** Why a key file may not be used, or undefined when its permissions are fine. */
export function keyFileProblem(path: string, mode: number): string | undefined {
  if ((mode & 0o077) === 0) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  return `master key file ${path} is readable by group or others (mode ${octal}); anyone who can read it can decrypt every stored credential. Fix: chmod 600 ${path}`;
}

export interface LoadMasterKeyOptions {
  dataDir: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** false: never create a key file (e.g. read-only commands); a missing key is then an error. */
  create?: boolean;
}

/** Load (or on first start create) the master key; throws CredentialError('master_key') with a fix. */
export function loadMasterKey(opts: LoadMasterKeyOptions): MasterKey {
  const env = opts.env ?? process.env;
  const fromEnv = env.AAM_MASTER_KEY;
  if (fromEnv !== undefined && fromEnv !== '') return parseMasterKeyEnv(fromEnv, opts.dataDir);
  const path = join(opts.dataDir, 'master.key');
  let st;
  try { st = statSync(path); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CredentialError('master_key', `cannot read master key file ${path}: ${(e as Error).message}`);
  }
  if (!st) {
    // A fleet's replicas and commands share AAM_MASTER_KEY: a key file made here would be this machine's alone.
    if (env.AAM_DATABASE_URL) throw new CredentialError('master_key', `fleet mode (AAM_DATABASE_URL) needs AAM_MASTER_KEY, the same on every replica and aam command; it is not set (and there is no ${path}); for a new fleet, ${HOW_TO_MAKE}`);
    if (opts.create === false) throw new CredentialError('master_key', `no master key: set AAM_MASTER_KEY or start the server once to create ${path}`);
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    const key = randomBytes(32);
    try {
      writeFileSync(path, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
      return new MasterKey(key, 'file-created', path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new CredentialError('master_key', `cannot create master key file ${path}: ${(e as Error).message}`);
      st = statSync(path); // another process created it first: use theirs
    }
  }
  if (!st.isFile()) throw new CredentialError('master_key', `master key path ${path} is not a regular file`);
  const problem = keyFileProblem(path, st.mode);
  if (problem) throw new CredentialError('master_key', problem);
  const text = readFileSync(path, 'utf8').trim();
  const raw = Buffer.from(text, HEX_KEY.test(text) ? 'hex' : 'base64');
  if (raw.length !== 32) throw new CredentialError('master_key', `master key file ${path} does not hold 32 bytes (hex or base64); restore the original file, or remove it only if no credentials were stored with it`);
  return new MasterKey(raw, 'file', path);
}
