// The credential plane's small parts (src/credentials/secret.ts, stdin.ts, errors.ts) as a user
// meets them: a secret value never shows in a log line, a JSON document or an inspected object;
// `aam credentials set` reads exactly the bytes piped in (one trailing newline dropped, nothing
// more) up to 64 KiB; and the errors carry a code, a status and the credential's name, never its
// value. Expected values are written here. No gateway, no sockets: a mutant it kills costs a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { format, inspect } from 'node:util';
import { REVEAL, Secret } from '../src/credentials/secret.ts';
import { readSecretFromStdin } from '../src/credentials/stdin.ts';
import { CredentialError } from '../src/credentials/errors.ts';

const VALUE = 'sk-live-0123456789abcdef';

test('a Secret prints as [secret] everywhere a log line or a document could show it; only REVEAL reads the value', () => {
  const s = new Secret(VALUE);
  const shown = [String(s), `${s}`, s.toString(), JSON.stringify({ s }), inspect(s), inspect({ nested: { s } }, { depth: 5 }), format('%s %o %O %j', s, s, s, s)];
  for (const text of shown) assert.ok(!text.includes(VALUE) && text.includes('[secret]'), text);
  assert.equal(JSON.stringify({ s }), '{"s":"[secret]"}');
  assert.equal(inspect(s), '[secret]');
  assert.equal(s[REVEAL](), VALUE);
  assert.equal(s.length, 24);
  assert.equal(new Secret('').length, 0);
});

test('two Secrets are equal only when their values are', () => {
  assert.equal(new Secret(VALUE).equals(new Secret(VALUE)), true);
  assert.equal(new Secret(VALUE).equals(new Secret(`${VALUE}x`)), false);
  assert.equal(new Secret('').equals(new Secret('')), true);
  assert.equal(new Secret('a').equals(new Secret('')), false);
});

const chunks = (...parts: Array<string | Uint8Array>) => Readable.from(parts);

test('stdin: the bytes piped in, with exactly one trailing newline (LF or CRLF) dropped', async () => {
  assert.equal(await readSecretFromStdin(chunks('abc', new Uint8Array([0x64, 0x65]), Buffer.from('f\n'))), 'abcdef');
  assert.equal(await readSecretFromStdin(chunks('abc\r\n')), 'abc');
  assert.equal(await readSecretFromStdin(chunks('abc\n\n')), 'abc\n');
  assert.equal(await readSecretFromStdin(chunks('abc\r')), 'abc\r');
  assert.equal(await readSecretFromStdin(chunks('a\nb')), 'a\nb');
  assert.equal(await readSecretFromStdin(chunks('\nabc')), '\nabc');
  assert.equal(await readSecretFromStdin(chunks(' pw ')), ' pw ');
  // A multi-byte character split across chunks is put back together.
  const euro = Buffer.from('€', 'utf8');
  assert.equal(await readSecretFromStdin(chunks(euro.subarray(0, 1), euro.subarray(1))), '€');
});

test('stdin: without an argument the process\'s own stdin is read (what `aam credentials set NAME < file` pipes in)', () => {
  const module = fileURLToPath(new URL('../src/credentials/stdin.ts', import.meta.url));
  const code = `import { readSecretFromStdin } from ${JSON.stringify(module)}; process.stdout.write(JSON.stringify(await readSecretFromStdin()));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { input: 'piped-secret-1234\n', encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '"piped-secret-1234"');
});

test('stdin: nothing (or only a newline) is refused, saying how to pipe a secret in', async () => {
  const refused = { name: 'CredentialError', code: 'credential_config', status: 500, message: 'no secret on stdin: pipe it in, e.g. `aam credentials set NAME < secret.txt`' };
  for (const input of [[], [''], ['\n'], ['\r\n']]) await assert.rejects(readSecretFromStdin(chunks(...input)), refused, JSON.stringify(input));
});

test('stdin: up to 64 KiB (65,536 bytes, counted in bytes, not characters) is read; one byte more is refused', async () => {
  const big = 'x'.repeat(65_536);
  assert.equal(await readSecretFromStdin(chunks(big.slice(0, 30_000), big.slice(30_000))), big);
  // Stripping the newline comes after the size check: it counts.
  const refused = { code: 'credential_config', message: 'secret on stdin is larger than 65536 bytes' };
  await assert.rejects(readSecretFromStdin(chunks(big, '\n')), refused);
  await assert.rejects(readSecretFromStdin(chunks(`${big}y`)), refused);
  // 32,768 two-byte characters are 65,536 bytes; one more byte is too many.
  const wide = 'é'.repeat(32_768);
  assert.equal(await readSecretFromStdin(chunks(wide)), wide);
  await assert.rejects(readSecretFromStdin(chunks(wide, 'z')), refused);
});

test('a CredentialError carries its code, status (500 unless given) and the credential\'s name', () => {
  const plain = new CredentialError('credential_unknown', 'unknown Credential "x"');
  assert.ok(plain instanceof Error);
  assert.deepEqual([plain.name, plain.code, plain.status, plain.credential, plain.message], ['CredentialError', 'credential_unknown', 500, undefined, 'unknown Credential "x"']);
  assert.match(String(plain), /^CredentialError: unknown Credential "x"$/);
  const full = new CredentialError('credential_unavailable', 'm', { status: 502, credential: 'up' });
  assert.deepEqual([full.code, full.status, full.credential], ['credential_unavailable', 502, 'up']);
  assert.equal(new CredentialError('credential_config', 'm', { credential: 'c' }).status, 500);
  assert.equal(new CredentialError('credential_config', 'm', { status: 0 }).status, 0);
});
