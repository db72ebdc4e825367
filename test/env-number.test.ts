// AAM_* whole-number settings: a wrong value refuses the start with a message naming the variable
// (before: Number('10MB') was NaN, which turned the body limit off and made SSE keep-alives fire
// every millisecond, and Node's own errors for ports and timeouts named no variable).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { wholeNumberEnv, listenPort } from '../src/lib/env-number.ts';
import { slowLorisTimeouts, drainTimeoutMs, startGateway } from '../src/cli/serve.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test('wholeNumberEnv: unset is the fallback, a whole number in range is taken, anything else names the variable', () => {
  assert.equal(wholeNumberEnv('AAM_X', undefined, { unit: 'bytes' }), undefined);
  assert.equal(wholeNumberEnv('AAM_X', '', { unit: 'bytes', fallback: 7 }), 7);
  assert.equal(wholeNumberEnv('AAM_X', '1048576', { unit: 'bytes', min: 1 }), 1048576);
  assert.equal(wholeNumberEnv('AAM_X', ' 42 ', { unit: 'bytes' }), 42);
  for (const bad of ['10MB', '1e6', '1.5', '-1', 'abc', '0x10', '99999999999999999999']) {
    assert.throws(() => wholeNumberEnv('AAM_MAX_BODY_BYTES', bad, { unit: 'bytes', min: 1 }), { message: `AAM_MAX_BODY_BYTES must be a whole number of bytes (at least 1), not "${bad}"` });
  }
  assert.throws(() => wholeNumberEnv('AAM_SSE_KEEPALIVE_MS', '0', { unit: 'milliseconds', min: 1 }), /AAM_SSE_KEEPALIVE_MS must be a whole number of milliseconds \(at least 1\), not "0"/);
  assert.throws(() => drainTimeoutMs('soon'), { message: 'AAM_DRAIN_TIMEOUT_MS must be a whole number of milliseconds (default 10000), not "soon"' });
});

test('listenPort: --port wins over AAM_PORT, default 8080, a bad one is named with the range', () => {
  assert.equal(listenPort(undefined, undefined), 8080);
  assert.equal(listenPort(undefined, '9090'), 9090);
  assert.equal(listenPort('0', '9090'), 0);
  assert.throws(() => listenPort(undefined, 'abc'), { message: 'AAM_PORT must be a whole number from 0 to 65535 (default 8080), not "abc"' });
  assert.throws(() => listenPort('70000', undefined), { message: '--port must be a whole number from 0 to 65535, not "70000"' });
  assert.throws(() => listenPort('', undefined), /--port needs a number from 0 to 65535/);
});

test('slowLorisTimeouts: both checked, and the headers may not take longer than the whole request', () => {
  assert.deepEqual(slowLorisTimeouts({}), { headersTimeoutMs: undefined, requestTimeoutMs: undefined });
  assert.deepEqual(slowLorisTimeouts({ AAM_HEADERS_TIMEOUT_MS: '5000', AAM_REQUEST_TIMEOUT_MS: '30000' }), { headersTimeoutMs: 5000, requestTimeoutMs: 30000 });
  assert.throws(() => slowLorisTimeouts({ AAM_HEADERS_TIMEOUT_MS: 'abc' }), /AAM_HEADERS_TIMEOUT_MS must be a whole number of milliseconds \(at least 1\), not "abc"/);
  // The default headers timeout (15 s) is longer than this request timeout: named, not Node's "headersTimeout out of range".
  assert.throws(() => slowLorisTimeouts({ AAM_REQUEST_TIMEOUT_MS: '10000' }), { message: 'AAM_HEADERS_TIMEOUT_MS (15000) must not exceed AAM_REQUEST_TIMEOUT_MS (10000): the headers are part of the request' });
});

test('the config validation child whose parent is gone exits quietly (no EPIPE stack trace under the parent\'s error)', async () => {
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', fileURLToPath(new URL('../src/config/load-child.ts', import.meta.url))], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { stderr += c; });
  child.stdout.destroy(); // the parent stopped listening before the answer
  child.stdin.end(JSON.stringify([{ file: 'aam.yaml', text: 'apiVersion: access.envisionai.dev/v1\nkind: Agent\nmetadata: { name: a }\nspec: { workload: spiffe://prod/agent/a }\n' }]));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(stderr, '');
  assert.equal(code, 0);
});

test('fleet numbers are checked before any connection: a bad AAM_DATABASE_POOL / AAM_FLEET_* is named, nothing is dialled', async () => {
  const { openFleetStores } = await import('../src/runtime.ts');
  // Port 1 on loopback: were a connection tried, the error would be a refused connection, not the variable.
  const urls = { AAM_DATABASE_URL: 'postgres://aam:pw@127.0.0.1:1/aam', AAM_REDIS_URL: 'redis://127.0.0.1:1' };
  for (const [name, value, message] of [
    ['AAM_DATABASE_POOL', 'ten', 'AAM_DATABASE_POOL must be a whole number of connections (at least 1), not "ten"'],
    ['AAM_FLEET_POLL_MS', '1s', 'AAM_FLEET_POLL_MS must be a whole number of milliseconds (at least 1), not "1s"'],
    ['AAM_RESERVATION_TTL_MS', '15m', 'AAM_RESERVATION_TTL_MS must be a whole number of milliseconds (at least 1), not "15m"'],
    ['AAM_FLEET_HEARTBEAT_MS', '0', 'AAM_FLEET_HEARTBEAT_MS must be a whole number of milliseconds (at least 1), not "0"'],
  ] as const) {
    await assert.rejects(openFleetStores({ ...urls, [name]: value }, { follow: false }), { message });
  }
});

test('AAM_AUDIT_WRITER_NICE is checked at start (before: "high" was NaN and the writer silently kept the gateway\'s priority)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-nice-'));
  try {
    const configPath = join(dir, 'aam.yaml');
    writeFileSync(configPath, 'apiVersion: access.envisionai.dev/v1\nkind: Provider\nmetadata: { name: demo }\nspec: { type: demo }\n');
    for (const bad of ['high', '20', '-1']) {
      await assert.rejects(startGateway({ configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', quiet: true, env: { ...process.env, AAM_LOG_LEVEL: 'error', AAM_AUDIT_WRITER_NICE: bad } }),
        { message: `AAM_AUDIT_WRITER_NICE must be a whole number from 0 to 19 (default 5), not "${bad}"` });
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
