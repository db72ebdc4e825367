// The vault (src/credentials/vault.ts) as an operator and the injector meet it, written for the
// mutants `npm run mutate -- credentials -- --mutate src/credentials/vault.ts` left alive: which
// kind and source a Credential has, what `aam credentials list` shows (exact objects, a fixed
// clock), when a version is kept or bumped, files that change, vanish or are half-written, a
// rotation another process stored, last-used times that survive a restart, every refusal's
// message, and every form of a secret the scrubber must cover. Expected values are written here,
// not taken from the vault. No gateway: a mutant it kills costs about a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, hkdfSync } from 'node:crypto';
import { readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfigTexts } from '../src/config/load.ts';
import type { ConfigSet } from '../src/config/schema.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { sqliteCredentialRows } from '../src/store/credential-rows.ts';
import { openVault, type VaultOptions } from '../src/credentials/vault.ts';
import { createInjector } from '../src/credentials/inject.ts';
import { REVEAL } from '../src/credentials/secret.ts';
import { CredentialError } from '../src/credentials/errors.ts';
import { tempDir } from './helpers/temp.ts';
import { until } from './helpers/e2e.ts';

const MASTER = { AAM_MASTER_KEY: Buffer.alloc(32, 9).toString('base64') };
const T0 = Date.parse('2026-01-02T03:04:05.000Z');

function cfg(docs: string[]): ConfigSet {
  const text = docs.map((d) => `apiVersion: access.envisionai.dev/v1\n${d}`).join('\n---\n');
  return parseConfigTexts([{ file: 'test.yaml', text }]);
}
const cred = (name: string, spec: string): string => `kind: Credential\nmetadata: { name: ${name} }\nspec: ${spec}`;

/** A vault on a fresh data dir with a settable clock (no background poll). */
function open(docs: string[], env: Record<string, string | undefined>, more: Partial<VaultOptions> = {}) {
  const dir = more.dataDir ?? tempDir('aam-vault-mut-');
  const clock = { t: T0 };
  // The env object itself (not a copy): a test sets variables later, as an operator would.
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg(docs), env: Object.assign(env, { ...MASTER, ...env }), refreshMs: 0, now: () => clock.t, ...more });
  return { vault, dir, clock };
}

const iso = (t: number): string => new Date(t).toISOString();

test('list: the kind written or inferred from what the Credential configures, its source and reference, never a value', () => {
  const { vault } = open([
    cred('k-written', '{ env: V, kind: api_key, inject: { header: X-Written } }'),
    cred('k-oauth', '{ env: V, oauth2: { token_url: "https://t.example/token", client_id: c } }'),
    cred('k-obo', '{ obo: { audience: api } }'),
    cred('k-aws', '{ env: V, aws: { access_key_id: AKIAIOSFODNN7EXAMPLE } }'),
    cred('k-google', '{ env: V, google: { scope: s } }'),
    cred('k-query', '{ env: V, inject: { query: key, header: X-Also } }'),
    cred('k-header', '{ env: V, inject: { header: X-Key } }'),
    cred('k-prefix', '{ env: V, inject: { prefix: "T " } }'),
    cred('k-file', '{ file: /nonexistent/aam-mut-vault/secret }'),
    cred('k-stored', '{ stored: true }'),
    cred('k-value', '{ value: inline-value-long-enough }'),
  ], { V: 'env-secret-value-0123456789' }, { strict: false });
  const base = { version: 1, created: iso(T0), last_used: null, status: 'ok', warnings: [] };
  const env = (name: string, kind: string) => ({ name, source: 'env', ref: 'V', kind, ...base });
  assert.deepEqual(vault.list(), [
    env('k-written', 'api_key'),
    env('k-oauth', 'oauth2_client_credentials'),
    { name: 'k-obo', source: 'none', kind: 'on_behalf_of', version: 0, created: null, last_used: null, status: 'ok', warnings: [] },
    env('k-aws', 'aws_sigv4'),
    env('k-google', 'google_service_account'),
    env('k-query', 'query'),
    env('k-header', 'header'),
    env('k-prefix', 'api_key'),
    {
      name: 'k-file', source: 'file', ref: '/nonexistent/aam-mut-vault/secret', kind: 'api_key', version: null, created: null, last_used: null, status: 'missing',
      problem: 'Credential "k-file": file /nonexistent/aam-mut-vault/secret cannot be read (ENOENT); create it or fix the path', warnings: [],
    },
    {
      name: 'k-stored', source: 'stored', kind: 'api_key', version: null, created: null, last_used: null, status: 'missing',
      problem: 'Credential "k-stored" is stored but has no value yet: run `aam credentials set k-stored` with the secret on stdin', warnings: [],
    },
    { name: 'k-value', source: 'value', kind: 'api_key', ...base, warnings: ['inline value in the config file: for demos only; use env, file or stored'] },
  ]);
  assert.deepEqual(vault.tryResolve('k-aws'), { ok: true, name: 'k-aws', kind: 'aws_sigv4', version: 1 });
  assert.deepEqual(vault.tryResolve('k-obo'), { ok: true, name: 'k-obo', kind: 'on_behalf_of', version: 0 });
  assert.deepEqual(vault.tryResolve('k-stored'), { ok: false, name: 'k-stored', reason: 'Credential "k-stored" is stored but has no value yet: run `aam credentials set k-stored` with the secret on stdin' });
  assert.deepEqual(vault.tryResolve('nope'), { ok: false, name: 'nope', reason: 'unknown Credential "nope"' });
  assert.equal(vault.has('k-obo'), true);
  assert.equal(vault.has('nope'), false);
  vault.close();
});

test('a missing value fails the load unless every user of the credential is an optional Provider; the message says how to fix it', () => {
  const provider = (name: string, optional: boolean) => `kind: Provider\nmetadata: { name: ${name} }\nspec: { type: openai, credential: c${optional ? ', optional: true' : ''} }`;
  const mcp = 'kind: McpServer\nmetadata: { name: m }\nspec: { transport: streamable-http, url: "http://127.0.0.1:1/mcp", credential: c }';
  const tool = 'kind: HttpTool\nmetadata: { name: h }\nspec: { baseUrl: "http://127.0.0.1:1", credential: c, resource: r, actions: { get: { method: GET, path: / } } }';
  const required = 'Credential "c": environment variable C_MISSING is not set (export it, or mark the Provider that uses it optional: true)';
  const optional = 'Credential "c": environment variable C_MISSING is not set (export it)';
  // An empty variable is as good as unset. Used by no Provider: no Provider to mark optional (before: the hint anyway).
  for (const env of [{}, { C_MISSING: '' }]) {
    assert.throws(() => open([cred('c', '{ env: C_MISSING }')], env), { code: 'credential_config', message: `cannot load credentials:\n  ${optional}` });
  }
  assert.throws(() => open([cred('c', '{ env: C_MISSING }'), provider('p1', false)], {}), { code: 'credential_config', message: `cannot load credentials:\n  ${required}` });
  const { vault } = open([cred('c', '{ env: C_MISSING }'), provider('p1', true), provider('p2', true)], {});
  assert.deepEqual(vault.tryResolve('c'), { ok: false, name: 'c', reason: optional });
  vault.close();
  // One optional Provider and one that is not, or an MCP server or HTTP tool: required (marking Providers optional
  // helps only where Providers alone use it).
  // An Agent's A2A credential too (before: not counted, so one beside an optional Provider was optional, and the
  // calls to that agent went without it).
  const agent = 'kind: Agent\nmetadata: { name: a }\nspec: { workload: spiffe://test/agent/a, a2a: { url: "http://127.0.0.1:1/a2a", credential: c } }';
  for (const [other, says] of [[provider('p2', false), required], [mcp, optional], [tool, optional], [agent, optional]]) {
    assert.throws(() => open([cred('c', '{ env: C_MISSING }'), provider('p1', true), other], {}), { code: 'credential_config', message: `cannot load credentials:\n  ${says}` });
  }
  // Two problems are listed one per line; strict: false (the CLI) lists them instead of failing.
  assert.throws(() => open([cred('a', '{ env: A_MISSING }'), cred('b', '{ env: V, aws: { access_key_id_env: ID_MISSING } }')], { V: 'aws-secret-value-123456', ID_MISSING: '  ' }), {
    message: 'cannot load credentials:\n  Credential "a": environment variable A_MISSING is not set (export it)\n'
      + '  Credential "b": environment variable ID_MISSING (aws.access_key_id_env) is not set (export the AWS access key id in it)',
  });
  const cli = open([cred('a', '{ env: A_MISSING }')], {}, { strict: false }).vault;
  assert.equal(cli.list()[0].status, 'missing');
  // The injector is refused with the problem, as a 502 naming the credential.
  assert.throws(() => cli[REVEAL]('a'), (e: unknown) => {
    assert.ok(e instanceof CredentialError);
    assert.deepEqual([e.code, e.status, e.credential, e.message], ['credential_config', 502, 'a', 'Credential "a": environment variable A_MISSING is not set (export it)']);
    return true;
  });
  assert.throws(() => cli[REVEAL]('zz'), (e: unknown) => {
    assert.ok(e instanceof CredentialError);
    assert.deepEqual([e.code, e.status, e.credential, e.message], ['credential_unknown', 500, 'zz', 'unknown Credential "zz"']);
    return true;
  });
  cli.close();
  // An access key id in the environment, spaces around it, is enough.
  const ok = open([cred('b', '{ env: V, aws: { access_key_id_env: ID } }')], { V: 'aws-secret-value-123456', ID: ' AKIAIOSFODNN7EXAMPLE ' }).vault;
  assert.equal(ok.tryResolve('b').ok, true);
  ok.close();
});

test('secret files: one trailing newline is dropped, nothing else; an empty file is a problem', async () => {
  const dir = tempDir('aam-vault-mut-');
  const cases: Array<[string, string]> = [['lf', 'file-secret-abc\n'], ['crlf', 'file-secret-abc\r\n'], ['two', 'file-secret-abc\n\n'], ['mid', 'file-\nsecret-abc'], ['none', 'file-secret-abc']];
  for (const [n, text] of cases) writeFileSync(join(dir, n), text);
  writeFileSync(join(dir, 'empty'), '\n');
  const { vault } = open([...cases.map(([n]) => cred(n, `{ file: ${join(dir, n)} }`)), cred('empty', `{ file: ${join(dir, 'empty')} }`)], {}, { strict: false });
  const inj = createInjector({ vault });
  const expected: Record<string, string> = { lf: 'file-secret-abc', crlf: 'file-secret-abc', two: 'file-secret-abc\n', mid: 'file-\nsecret-abc', none: 'file-secret-abc' };
  for (const [n, v] of Object.entries(expected)) assert.equal((await inj.injectionFor(n)).headers.authorization, `Bearer ${v}`, n);
  assert.equal(vault.list().at(-1)?.problem, `Credential "empty": file ${join(dir, 'empty')} cannot be read (file is empty); create it or fix the path`);
  vault.close();
});

test('versions: the same value keeps its version and creation time across reloads; a new value is the next version, created now', async () => {
  const env: Record<string, string> = { V1: 'first-value-abcdefgh', V2: 'first-value-abcdefgh' };
  const { vault, clock } = open([cred('k', '{ env: V1 }')], env);
  clock.t = T0 + 60_000;
  vault.reload(cfg([cred('k', '{ env: V2 }')]));
  assert.deepEqual([vault.list()[0].version, vault.list()[0].created], [1, iso(T0)]);
  env.V3 = 'second-value-ijklmnop';
  clock.t = T0 + 120_000;
  vault.reload(cfg([cred('k', '{ env: V3 }')]));
  assert.deepEqual([vault.list()[0].version, vault.list()[0].created], [2, iso(T0 + 120_000)]);
  // A reload drops the old scrubber: the new value is redacted, the old one is text again.
  assert.equal(vault.scrubber().scrub('a second-value-ijklmnop b first-value-abcdefgh').text, 'a [REDACTED:k] b first-value-abcdefgh');
  // Inline values follow the same rule.
  vault.reload(cfg([cred('k', '{ value: second-value-ijklmnop }')]));
  assert.equal(vault.list()[0].version, 2);
  vault.close();
});

/** A token file holding 'file-value-one-aaaa', its mtime 100 s ago in whole seconds (an mtime set again later is then exactly the one the vault saw). */
function agedTokenFile(): { dir: string; path: string; SEC: number } {
  const dir = tempDir('aam-vault-mut-');
  const path = join(dir, 'tok');
  writeFileSync(path, 'file-value-one-aaaa');
  const SEC = Math.floor(Date.now() / 1000) - 100;
  utimesSync(path, SEC, SEC);
  return { dir, path, SEC };
}

test('file refresh: a changed file is a new version, an untouched one is not re-read, a vanished or half-written one keeps the last value', async () => {
  const { dir, path, SEC } = agedTokenFile();
  const rotations: unknown[] = [];
  const { vault, clock } = open([cred('tok', `{ file: ${path} }`)], {}, { onRotated: (...a) => { rotations.push(a); throw new Error('an evidence hook that fails'); } });
  const inj = createInjector({ vault });
  const bearer = async (): Promise<string | undefined> => (await inj.injectionFor('tok')).headers.authorization;
  // Same size, same mtime, same inode: not re-read (the request path never reads files).
  writeFileSync(path, 'file-value-two-bbbb');
  utimesSync(path, SEC, SEC);
  vault.refresh();
  assert.equal(await bearer(), 'Bearer file-value-one-aaaa');
  // Any one of mtime, size or inode changed: re-read.
  utimesSync(path, SEC, SEC + 5);
  clock.t = T0 + 1000;
  vault.refresh();
  assert.equal(await bearer(), 'Bearer file-value-two-bbbb');
  assert.deepEqual([vault.list()[0].version, vault.list()[0].created], [2, iso(T0 + 1000)]);
  writeFileSync(path, 'file-value-three-cccc');
  utimesSync(path, SEC, SEC + 5);
  vault.refresh();
  assert.equal(await bearer(), 'Bearer file-value-three-cccc', 'size changed');
  writeFileSync(join(dir, 'next'), 'file-value-four-dddd-');
  utimesSync(join(dir, 'next'), SEC, SEC + 5);
  renameSync(join(dir, 'next'), path);
  vault.refresh();
  assert.equal(await bearer(), 'Bearer file-value-four-dddd-', 'inode changed (a file replaced by rename)');
  assert.deepEqual(rotations, [['tok', 2, 'file'], ['tok', 3, 'file'], ['tok', 4, 'file']], 'a failing hook does not stop the rotation');
  // Half-written (empty for now): the old value stays, no new version, no problem shown.
  writeFileSync(path, '');
  vault.refresh();
  assert.equal(await bearer(), 'Bearer file-value-four-dddd-');
  assert.deepEqual(vault.list()[0].warnings, []);
  assert.equal(vault.list()[0].problem, undefined);
  // Vanished: the old value stays, with one warning however often it is polled.
  rmSync(path);
  vault.refresh();
  vault.refresh();
  assert.deepEqual([vault.list()[0].warnings, vault.list()[0].version, vault.list()[0].status], [['file vanished'], 4, 'ok']);
  assert.equal(await bearer(), 'Bearer file-value-four-dddd-');
  // Back: the warning goes, the value is the next version.
  writeFileSync(path, 'file-value-five-eeee');
  vault.refresh();
  assert.deepEqual([vault.list()[0].warnings, vault.list()[0].version], [[], 5]);
  assert.equal(vault.scrubber().scrub('file-value-five-eeee').text, '[REDACTED:tok]', 'the scrubber follows the file');
  vault.close();
});

test('a file missing at start (CLI) is picked up when it appears; a short value is served with a warning that it is not scrubbed', async () => {
  const dir = tempDir('aam-vault-mut-');
  const path = join(dir, 'later');
  const { vault } = open([cred('later', `{ file: ${path} }`)], {}, { strict: false });
  vault.refresh();
  assert.equal(vault.list()[0].status, 'missing');
  assert.deepEqual(vault.list()[0].warnings, [], 'a file never seen has not vanished');
  writeFileSync(path, 'short\n');
  vault.refresh();
  const [e] = vault.list();
  assert.deepEqual([e.status, e.version, e.problem, e.warnings], ['ok', 1, undefined, ['value shorter than 8 characters: it is not scrubbed from responses']]);
  assert.equal((await createInjector({ vault }).injectionFor('later')).headers.authorization, 'Bearer short');
  // Exactly 8 characters is long enough to scrub.
  writeFileSync(path, '12345678');
  vault.refresh();
  assert.deepEqual(vault.list()[0].warnings, []);
  vault.close();
});

test('stored credentials: a version stored by another process is taken at the next poll; set() refuses clearly and warns on short values', async () => {
  const { vault, dir, clock } = open([cred('s', '{ stored: true }'), cred('e', '{ env: E }')], { E: 'env-value-1234567890' }, { strict: false });
  const rotations: unknown[] = [];
  await assert.rejects(vault.set('s', ''), { code: 'credential_config', message: 'refusing to store an empty secret for "s"' });
  await assert.rejects(vault.set('e', 'x'.repeat(20)), { code: 'credential_config', message: 'Credential "e" reads from env E; only credentials with `stored: true` can be set' });
  clock.t = T0 + 5000;
  const got = await vault.set('s', 'stored-value-one-1111');
  assert.equal(got.version, 1);
  assert.deepEqual(vault.list()[0].warnings, []);
  assert.equal(vault.list()[0].version, 1);
  const other = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('s', '{ stored: true }')]), env: MASTER, refreshMs: 0, onRotated: (...a) => rotations.push(a) });
  assert.equal((await other.set('s', 'tiny')).version, 2);
  assert.deepEqual(other.list()[0].warnings, ['value shorter than 8 characters: it is not scrubbed from responses']);
  assert.deepEqual(rotations, [['s', 2, 'stored']]);
  assert.equal(vault.list()[0].version, 1, 'not yet polled');
  vault.refresh();
  assert.deepEqual([vault.list()[0].version, vault.list()[0].warnings], [2, ['value shorter than 8 characters: it is not scrubbed from responses']]);
  assert.equal((await createInjector({ vault }).injectionFor('s')).headers.authorization, 'Bearer tiny');
  assert.equal(vault.scrubber().scrub('stored-value-one-1111').text, 'stored-value-one-1111', 'the old version is no longer scrubbed');
  // An older or equal version in the store is not taken again.
  vault.refresh();
  assert.equal(vault.list()[0].version, 2);
  // A set on a name the config does not know stores it without touching the loaded ones.
  assert.equal((await vault.set('unlisted', 'unlisted-value-123456')).version, 1);
  assert.equal(vault.has('unlisted'), false);
  other.close();
  vault.close();
});

test('last used: the time of the last injection, listed at once and kept across a restart', async () => {
  const { vault, dir, clock } = open([cred('s', '{ stored: true }'), cred('u', '{ stored: true }')], {}, { strict: false });
  await vault.set('s', 'stored-value-used-1234');
  await vault.set('u', 'stored-value-unused-1234');
  assert.equal(vault.list()[0].last_used, null);
  clock.t = T0 + 42_000;
  await createInjector({ vault }).injectionFor('s');
  assert.deepEqual(vault.list().map((e) => e.last_used), [iso(T0 + 42_000), null]);
  vault.close();
  const again = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('s', '{ stored: true }'), cred('u', '{ stored: true }')]), env: MASTER, refreshMs: 0 });
  assert.deepEqual(again.list().map((e) => e.last_used), [iso(T0 + 42_000), null]);
  again.close();
});

test('the scrubber covers each kind\'s textual forms: basic user:password, AWS keys inside JSON, a service account\'s private key, and derived tokens until 5 minutes after they expire', () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const pemBody = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const sa = JSON.stringify({ client_email: 'sa@p.iam.gserviceaccount.com', private_key: pem });
  const aws = JSON.stringify({ AccessKeyId: 'AKIAIOSFODNN7EXAMPLE', SecretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', SessionToken: 'session-token-abcdefgh' });
  const { vault, clock } = open([
    cred('named', '{ env: P1, kind: basic, username: alice }'),
    cred('pair', '{ env: P2, kind: basic }'),
    cred('plain', '{ env: P3, kind: basic }'),
    cred('aws', '{ env: AWS, aws: { access_key_id: AKIAIOSFODNN7EXAMPLE } }'),
    cred('gsa', '{ env: GSA, google: {} }'),
    cred('key', '{ env: P4 }'),
    // No value to scrub: an on-behalf-of credential, and one whose variable is not set (CLI).
    cred('obo', '{ obo: { audience: api } }'),
    cred('unset', '{ env: P5_UNSET }'),
  ], { P1: 'alice-pass-1234', P2: 'bob:bob-pass-5678', P3: 'carol-pass-9012', AWS: aws, GSA: sa, P4: 'api:key-with-colon-99' }, { strict: false });
  const scrub = (s: string): string => vault.scrubber().scrub(s).text;
  assert.equal(scrub(`x ${Buffer.from('alice:alice-pass-1234').toString('base64')} y`), 'x [REDACTED:named] y');
  assert.equal(scrub('pw bob-pass-5678 !'), 'pw [REDACTED:pair] !', 'the password part of user:password');
  assert.equal(scrub('carol-pass-9012'), '[REDACTED:plain]');
  assert.equal(scrub('only key-with-colon-99 here'), 'only key-with-colon-99 here', 'an api key is one value, not user:password');
  assert.equal(scrub('s=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY t=session-token-abcdefgh'), 's=[REDACTED:aws] t=[REDACTED:aws]');
  assert.equal(scrub(`k=${pemBody.slice(0, 0)}${pemBody}`), 'k=[REDACTED:gsa]');
  assert.equal(scrub(`${pem}`), '[REDACTED:gsa]');
  // Derived tokens (the injector's OAuth tokens and assertions): kept until expiry + 5 min.
  vault.addDerived('key', 'short', T0);
  vault.addDerived('key', 'eight-ch', T0 + 1000);
  vault.addDerived('key', 'derived-token-abcdefgh', T0 + 1000);
  vault.addDerived('pair', 'derived-token-abcdefgh', T0 + 9_000_000);
  assert.equal(scrub('t derived-token-abcdefgh short eight-ch'), 't [REDACTED:key] short [REDACTED:key]', 'the first owner of a token keeps it; tokens under 8 characters are not scrubbed');
  clock.t = T0 + 1000 + 5 * 60_000 - 1;
  assert.equal(scrub('derived-token-abcdefgh'), '[REDACTED:key]');
  clock.t = T0 + 1000 + 5 * 60_000;
  assert.equal(scrub('derived-token-abcdefgh'), 'derived-token-abcdefgh');
  vault.addDerived('key', 'second-token-ijklmnop', clock.t + 10);
  vault.addDerived('key', 'third-token-qrstuvwx', clock.t + 20);
  assert.equal(scrub('second-token-ijklmnop third-token-qrstuvwx'), '[REDACTED:key] [REDACTED:key]');
  clock.t += 10 + 5 * 60_000;
  assert.equal(scrub('second-token-ijklmnop third-token-qrstuvwx'), 'second-token-ijklmnop [REDACTED:key]', 'each token expires on its own');
  clock.t += 10;
  assert.equal(scrub('third-token-qrstuvwx'), 'third-token-qrstuvwx');
  vault.close();
});

test('the injector gets the active value and version of the credential it names, never another one; an obo credential has no value', () => {
  const { vault } = open([cred('a', '{ env: A }'), cred('b', '{ env: B, kind: bearer }'), cred('o', '{ obo: { audience: api } }')], { A: 'value-of-a-12345678', B: 'value-of-b-12345678' });
  const a = vault[REVEAL]('a');
  const b = vault[REVEAL]('b');
  assert.deepEqual([a.name, a.kind, a.version, a.secret?.[REVEAL](), a.spec.env], ['a', 'api_key', 1, 'value-of-a-12345678', 'A']);
  assert.deepEqual([b.name, b.kind, b.version, b.secret?.[REVEAL](), b.spec.env], ['b', 'bearer', 1, 'value-of-b-12345678', 'B']);
  const o = vault[REVEAL]('o');
  assert.deepEqual([o.name, o.kind, o.version, o.secret], ['o', 'on_behalf_of', 0, undefined]);
  vault.close();
});

test('the poll timer does not keep a process alive (a CLI command that reads credentials exits)', () => {
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const before = timers();
  const { vault } = open([], {}, { refreshMs: 50 });
  const during = timers();
  vault.close();
  assert.equal(during, before, 'the poll timer is unref()ed');
});

test('the background poll picks up a changed file by itself', async () => {
  const dir = tempDir('aam-vault-mut-');
  const path = join(dir, 'k');
  writeFileSync(path, 'poll-value-one-1234');
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('k', `{ file: ${path} }`)]), env: MASTER, refreshMs: 10 });
  writeFileSync(path, 'poll-value-two-567890');
  await until(() => vault.list()[0].version === 2, 30_000, 'the poll to pick up the file');
  vault.close();
});

test('a wrong master key is refused before anything is served, naming both key ids and where the wrong key came from', async () => {
  const keyA = Buffer.alloc(32, 0xa1);
  const keyB = Buffer.alloc(32, 0xb2);
  const idOf = (k: Buffer): string => createHmac('sha256', k).update('aam master key id v1').digest('hex').slice(0, 16);
  const dir = tempDir('aam-vault-mut-');
  const docs = [cred('s', '{ stored: true }')];
  const first = open(docs, { AAM_MASTER_KEY: keyA.toString('base64') }, { dataDir: dir, strict: false }).vault;
  await first.set('s', 'stored-value-keyed-1234');
  first.close();
  const head = `wrong master key: stored credentials were encrypted with key ${idOf(keyA)}, but`;
  const tail = 'Set AAM_MASTER_KEY (or restore master.key) to the original key; aam refuses to start rather than run without its credentials.';
  const refuse = (env: Record<string, string>, where: string): void => {
    assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config: cfg(docs), env, refreshMs: 0 }), { code: 'master_key', message: `${head} ${where} ${tail}` });
  };
  refuse({ AAM_MASTER_KEY: keyB.toString('hex') }, `AAM_MASTER_KEY holds key ${idOf(keyB)}.`);
  // No AAM_MASTER_KEY and no key file: one is created, and the message says to restore the original.
  const keyFile = join(dir, 'master.key');
  assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config: cfg(docs), env: {}, refreshMs: 0 }), (e: unknown) => {
    assert.ok(e instanceof CredentialError);
    const created = Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64');
    assert.equal(e.message, `${head} key file ${keyFile} holds key ${idOf(created)} (that key file was just created because none existed: restore the original master.key into the data dir). ${tail}`);
    return true;
  });
  writeFileSync(keyFile, keyB.toString('base64'), { mode: 0o600 });
  refuse({}, `key file ${keyFile} holds key ${idOf(keyB)}.`);
  // The right key opens it and decrypts the value it stored.
  writeFileSync(keyFile, keyA.toString('base64'), { mode: 0o600 });
  const again = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg(docs), env: {}, refreshMs: 0 });
  assert.equal(again[REVEAL]('s').secret?.[REVEAL](), 'stored-value-keyed-1234');
  again.close();
});

test('fleet: a version another replica stored is taken as soon as the rows say so, without waiting for the poll', async () => {
  const { vault: writer, dir } = open([cred('s', '{ stored: true }')], {}, { strict: false });
  await writer.set('s', 'replica-value-one-1234');
  // The rows of a fleet store (PostgreSQL mirrored in memory) call back when another replica wrote.
  const rows = sqliteCredentialRows(openDatabase(dir));
  const changed: Array<() => void> = [];
  const fleet = openVault({ dataDir: dir, db: openDatabase(dir), rows: { ...rows, onChange: (fn) => { changed.push(fn); } }, config: cfg([cred('s', '{ stored: true }')]), env: { ...MASTER }, refreshMs: 0 });
  assert.equal(changed.length, 1);
  await writer.set('s', 'replica-value-two-5678');
  assert.equal(fleet.list()[0].version, 1);
  changed[0]();
  assert.equal(fleet.list()[0].version, 2);
  assert.equal(fleet[REVEAL]('s').secret?.[REVEAL](), 'replica-value-two-5678');
  writer.close();
  fleet.close();
});

test('without refreshMs a changed file is picked up by the default poll (about a second)', async () => {
  const dir = tempDir('aam-vault-mut-');
  const path = join(dir, 'k');
  writeFileSync(path, 'default-poll-one-1234');
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('k', `{ file: ${path} }`)]), env: { ...MASTER } });
  writeFileSync(path, 'default-poll-two-567890');
  await until(() => vault.list()[0].version === 2, 30_000, 'the default poll to pick up the file');
  vault.close();
});

test('subkeys are HKDF-SHA256 of the master key per purpose; a missing AWS key id is reported only once the secret itself is there; a stored value\'s time is when it was stored', async () => {
  const master = Buffer.from(MASTER.AAM_MASTER_KEY, 'base64');
  const { vault, dir, clock } = open([cred('s', '{ stored: true }')], {}, { strict: false });
  assert.deepEqual(vault.subkey('aam delegation v1'), Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'aam delegation v1', 32)));
  clock.t = T0 + 7000;
  const stored = await vault.set('s', 'stored-value-timed-1234');
  assert.equal(vault.list()[0].created, stored.created);
  vault.close();
  // Opened again (another clock): the time the row was stored, not the time it was read.
  const again = open([cred('s', '{ stored: true }')], {}, { dataDir: dir }).vault;
  assert.deepEqual([again.list()[0].created, again.list()[0].version], [stored.created, 1]);
  assert.notEqual(stored.created, iso(T0));
  again.close();
  assert.throws(() => open([cred('b', '{ env: B_SET, aws: { access_key_id_env: ID_UNSET } }')], { B_SET: 'aws-secret-value-123456' }), {
    message: 'cannot load credentials:\n  Credential "b": environment variable ID_UNSET (aws.access_key_id_env) is not set (export the AWS access key id in it)',
  });
  assert.throws(() => open([cred('b', '{ env: B_MISSING, aws: { access_key_id_env: ID_MISSING } }')], {}), {
    message: 'cannot load credentials:\n  Credential "b": environment variable B_MISSING is not set (export it)',
  });
});

test('refresh: a rotation (file or stored) is announced once and scrubbed at once; a touched file with the same value is no rotation; the poll writes last-used times', async () => {
  const { dir, path, SEC } = agedTokenFile();
  const rotations: unknown[] = [];
  const { vault } = open([cred('tok', `{ file: ${path} }`), cred('s', '{ stored: true }')], {}, { dataDir: dir, strict: false, onRotated: (...a) => { rotations.push(a); } });
  await vault.set('s', 'stored-value-one-1111');
  rotations.length = 0;
  const scrub = (text: string): string => vault.scrubber().scrub(text).text;
  assert.equal(scrub('file-value-one-aaaa stored-value-one-1111'), '[REDACTED:tok] [REDACTED:s]');
  // Touched, same value: re-read, but no new version and no announcement.
  utimesSync(path, SEC, SEC + 7);
  vault.refresh();
  assert.deepEqual([vault.list()[0].version, rotations], [1, []]);
  // A new file value: announced once, and the scrubber built before it covers it now.
  writeFileSync(path, 'file-value-two-bbbb');
  vault.refresh();
  vault.refresh();
  assert.deepEqual(rotations, [['tok', 2, 'file']]);
  assert.equal(scrub('file-value-two-bbbb'), '[REDACTED:tok]');
  // A version another process stored: taken, announced once (not again at each poll), scrubbed at once.
  const other = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('s', '{ stored: true }')]), env: MASTER, refreshMs: 0 });
  await other.set('s', 'stored-value-two-2222');
  vault.refresh();
  vault.refresh();
  assert.deepEqual(rotations, [['tok', 2, 'file'], ['s', 2, 'stored']]);
  assert.equal(scrub('stored-value-two-2222'), '[REDACTED:s]');
  // The poll writes last-used times: another process sees them while this one still runs.
  await createInjector({ vault }).injectionFor('s');
  vault.refresh();
  const third = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('s', '{ stored: true }')]), env: MASTER, refreshMs: 0 });
  assert.equal(third.list()[0].last_used, iso(T0));
  third.close();
  other.close();
  vault.close();
});

test('set: refuses a credential read from a file or the config, saying where it is read from; a stored value is scrubbed at once', async () => {
  const { vault } = open([cred('f', '{ file: /nonexistent/aam-mut-vault/f }'), cred('v', '{ value: inline-value-long-enough }'), cred('s', '{ stored: true }')], {}, { strict: false });
  await assert.rejects(vault.set('f', 'x'.repeat(20)), { code: 'credential_config', credential: 'f', message: 'Credential "f" reads from file /nonexistent/aam-mut-vault/f; only credentials with `stored: true` can be set' });
  await assert.rejects(vault.set('v', 'x'.repeat(20)), { code: 'credential_config', credential: 'v', message: 'Credential "v" reads from value; only credentials with `stored: true` can be set' });
  await assert.rejects(vault.set('s', ''), { credential: 's' });
  await vault.set('s', 'stored-value-one-1111');
  const scrubber = (text: string): string => vault.scrubber().scrub(text).text;
  assert.equal(scrubber('stored-value-one-1111'), '[REDACTED:s]');
  assert.deepEqual(await vault.set('s', 'stored-value-two-2222'), { name: 's', version: 2, created: vault.list()[2].created });
  assert.equal(scrubber('stored-value-one-1111 stored-value-two-2222'), 'stored-value-one-1111 [REDACTED:s]');
  assert.deepEqual(vault.tryResolve('s'), { ok: true, name: 's', kind: 'api_key', version: 2 });
  vault.close();
});

test('set: a poll that takes the new version while it is being stored does not announce it twice', async () => {
  const rotations: unknown[] = [];
  const { vault } = open([cred('s', '{ stored: true }')], {}, { strict: false, onRotated: (...a) => { rotations.push(a); } });
  const storing = vault.set('s', 'stored-value-one-1111');
  vault.refresh();
  await storing;
  vault.refresh();
  assert.deepEqual(rotations, [['s', 1, 'stored']]);
  assert.equal(vault.list()[0].version, 1);
  vault.close();
});
