// The `aam` command line as a user runs it (real processes, real files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readFileSync, existsSync } from 'node:fs';
import { tempDir } from './helpers/temp.ts';

const dir = tempDir('aam-cli-');
const data = join(dir, 'data');
// Without dist/ every `aam` process strips the types of each source module it loads (most of its
// start-up CPU); the processes of this file share one compile cache, so only the first pays.
const compileCache = join(dir, 'compile-cache');

type Ran = { code: number; stdout: string; stderr: string };
const spawnAam = (args: string[], input?: string, node: string[] = []) => new Promise<Ran>((resolve) => {
  const child = execFile(process.execPath, [...node, 'bin/aam.js', ...args], { env: { ...process.env, AAM_LOG_LEVEL: 'error', NODE_COMPILE_CACHE: compileCache } }, (err, stdout, stderr) => {
    resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
  });
  if (input !== undefined) child.stdin?.end(input);
});
// Each `aam` process is mostly start-up (0.2-0.6 s of CPU: node, module loading, the config): checks that
// need no order run their processes together (runAll), a few at a time so a loaded host is not flooded.
const PARALLEL = 3;
let running = 0;
const waiting: Array<() => void> = [];
const run = async (args: string[], input?: string, node: string[] = []): Promise<Ran> => {
  if (running >= PARALLEL) await new Promise<void>((go) => waiting.push(go));
  running++;
  try { return await spawnAam(args, input, node); } finally { running--; waiting.shift()?.(); }
};
/** Independent `aam` runs, started together (at most PARALLEL at once), their results in order. */
const runAll = (list: string[][]): Promise<Ran[]> => Promise.all(list.map((args) => run(args)));

test('validate: the repo config is valid; a broken one lists every problem with file, line and field, exit 1', async () => {
  const ok = await run(['validate', 'aam.yaml']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /OK/);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, [
    'apiVersion: access.envisionai.dev/v1\nkind: Model\nmetadata: { name: m }\nspec:\n  targets: [ { provider: ghost, model: x } ]\n  colour: blue\n',
    'apiVersion: access.envisionai.dev/v1\nkind: Robot\nmetadata: { name: r }\nspec: {}\n',
  ].join('---\n'));
  const r = await run(['validate', bad]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad\.yaml:\d+ \(document 1\): spec: unknown field "colour"/);
  assert.match(r.stderr, /\(document 2\): kind: must be one of/);
  assert.match(r.stderr, /2 problems found/);
  // Problems found when policies are compiled (CEL, rule conflicts) name their line too (before: file and document only).
  const policy = join(dir, 'bad-policy.yaml');
  writeFileSync(policy, [
    'apiVersion: access.envisionai.dev/v1\nkind: Agent\nmetadata: { name: a }\nspec: { workload: spiffe://prod/agent/a }\n',
    'apiVersion: access.envisionai.dev/v1\nkind: AgentPolicy\nmetadata: { name: p }\nspec:\n  identity: { agent: a }\n  tools:\n    - resource: crm\n      actions: [read]\n      when: \'args.limit <= \'\n',
  ].join('---\n'));
  const cel = await run(['validate', policy]);
  assert.equal(cel.code, 1);
  assert.match(cel.stderr, /bad-policy\.yaml:14 \(document 2\): spec\.tools\[0\]\.when: CEL syntax error: .* at column 15/);
  const explained = await run(['policy', 'explain', '--agent', 'a', '--model', 'm', '--config', policy]);
  assert.match(explained.stderr, /^error: .*bad-policy\.yaml:14 \(document 2\): spec\.tools\[0\]\.when/);
});

test('validate notes a required credential whose env var or file is absent here (serve would refuse to start), without failing: the serving machine may have it', async () => {
  const cfg = join(dir, 'absent-cred.yaml');
  const h = 'apiVersion: access.envisionai.dev/v1\n';
  writeFileSync(cfg, [
    `${h}kind: Credential\nmetadata: { name: c }\nspec: { env: AAM_TEST_NOT_SET_VAR }\n`,
    `${h}kind: Credential\nmetadata: { name: f }\nspec: { file: ${join(dir, 'no-such-secret')} }\n`,
    `${h}kind: Credential\nmetadata: { name: o }\nspec: { env: AAM_TEST_NOT_SET_OPTIONAL }\n`,
    `${h}kind: Provider\nmetadata: { name: p }\nspec: { type: openai, credential: c }\n`,
    `${h}kind: Provider\nmetadata: { name: q }\nspec: { type: anthropic, credential: f }\n`,
    `${h}kind: Provider\nmetadata: { name: r }\nspec: { type: gemini, credential: o, optional: true }\n`,
    `${h}kind: Credential\nmetadata: { name: s }\nspec: { env: AAM_TEST_NOT_SET_A2A }\n`,
    `${h}kind: Agent\nmetadata: { name: scorer }\nspec: { workload: spiffe://prod/agent/scorer, a2a: { url: http://127.0.0.1:9/a2a, credential: s } }\n`,
  ].join('---\n'));
  const r = await run(['validate', cfg]);
  assert.equal(r.code, 0, r.stderr);
  // Before: only "OK"; `aam serve` then stopped at "cannot load credentials".
  assert.deepEqual(r.stderr.trim().split('\n'), [
    'note: Credential "c": environment variable AAM_TEST_NOT_SET_VAR is not set (export it, or mark the Provider that uses it optional: true); `aam serve` refuses to start where it is missing',
    `note: Credential "f": file ${join(dir, 'no-such-secret')} does not exist (create it or fix the path); \`aam serve\` refuses to start where it is missing`,
    // An Agent's A2A credential: no Provider to mark optional (before: the note said to mark one).
    'note: Credential "s": environment variable AAM_TEST_NOT_SET_A2A is not set (export it); `aam serve` refuses to start where it is missing',
  ]);
});

test('serve on a port already in use says so and what to give instead (before: "listen EADDRINUSE: address already in use 0.0.0.0:N")', async () => {
  const { createServer } = await import('node:net');
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as import('node:net').AddressInfo).port;
  try {
    const r = await run(['serve', '--port', String(port), '--host', '127.0.0.1', '--data', join(dir, 'busy-data')]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`error: port ${port} on 127\\.0\\.0\\.1 is already in use \\(another aam or another program listens there\\): stop it, or give another port with --port N or AAM_PORT`));
  } finally { busy.close(); }
});

test('the seed policy from DESIGN.md loads unchanged', async (t) => {
  // The fixture holds the seed policy verbatim; when ../shared/DESIGN.md is present, prove it.
  const fixture = readFileSync('test/fixtures/policy-seed.yaml', 'utf8');
  const seedIn = (text: string) => /(apiVersion: access\.envisionai\.dev\/v1\nkind: AgentPolicy\nmetadata: \{ name: finance-analyst-readonly \}[\s\S]*?audit: \{ record: \[identity, policy, action, outcome\] \}\n)/.exec(text)?.[1];
  const seed = seedIn(fixture);
  assert.ok(seed, 'seed policy in the fixture');
  if (existsSync('../shared/DESIGN.md')) assert.equal(seedIn(readFileSync('../shared/DESIGN.md', 'utf8')), seed, 'fixture matches DESIGN.md byte for byte');
  else t.diagnostic('../shared/DESIGN.md not found; checked the fixture copy only');
  const r = await run(['validate', 'test/fixtures/policy-seed.yaml']);
  assert.equal(r.code, 0, r.stderr);
});

test('keys create prints the key as the last stdout line; list/revoke/rotate; --help everywhere', async () => {
  const c = await run(['keys', 'create', '--agent', 'finance-analyst', '--config', 'aam.yaml', '--data', data]);
  assert.equal(c.code, 0, c.stderr);
  const key = c.stdout.trim().split('\n').at(-1)!;
  assert.match(key, /^aam_[A-Za-z0-9_-]{20,}$/);
  const list = await run(['keys', 'list', '--json', '--data', data]);
  const [k] = JSON.parse(list.stdout) as Array<{ id: string; agent: string }>;
  assert.equal(k.agent, 'finance-analyst');
  assert.ok(!list.stdout.includes(key), 'list never shows secrets');
  const rot = await run(['keys', 'rotate', k.id, '--grace', '60', '--data', data]);
  assert.notEqual(rot.stdout.trim(), key);
  const rev = await run(['keys', 'revoke', k.id, '--data', data]);
  assert.match(rev.stdout, /revoked/);
  // Each of these is in the audit trail, with the OS user who ran it.
  const q = await run(['audit', 'query', '--type', 'admin', '--json', '--limit', '10', '--data', data]);
  const admin = (JSON.parse(q.stdout) as Array<{ admin: { action: string; target: string; actor: string } }>).map((e) => e.admin).reverse();
  assert.deepEqual(admin.map((a) => [a.action, a.target]), [['key_created', k.id], ['key_rotated', k.id], ['key_revoked', k.id]]);
  assert.ok(admin.every((a) => a.actor.startsWith('cli:')), JSON.stringify(admin));
  const unknown = await run(['keys', 'create', '--agent', 'nobody', '--config', 'aam.yaml', '--data', data]);
  assert.equal(unknown.code, 2, 'an --agent the config lacks is a usage error');
  assert.match(unknown.stderr, /no Agent "nobody"/);
  const helps = [['serve'], ['keys', 'create'], ['credentials', 'set']];
  (await runAll(helps.map((cmd) => [...cmd, '--help']))).forEach((h, i) => {
    assert.equal(h.code, 0, helps[i].join(' '));
    assert.match(h.stdout, /usage: .*aam /);
  });
});

test('global options may come before the command (before: unknown command "aam.yaml"); keys create refuses an --expires in the past (before: an expired key was made and printed)', async () => {
  const d = join(dir, 'data-order');
  const first = await run(['--config', 'aam.yaml', '--data', d, 'keys', 'create', '--agent', 'finance-analyst']);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout.trim().split('\n').at(-1)!, /^aam_/);
  const short = await run(['-d', d, 'keys', 'list', '--json']);
  assert.equal(short.code, 0, short.stderr);
  assert.equal((JSON.parse(short.stdout) as unknown[]).length, 1);
  const past = await run(['keys', 'create', '--agent', 'finance-analyst', '--expires', '2020-01-01T00:00:00Z', '--config', 'aam.yaml', '--data', d]);
  assert.equal(past.code, 2);
  assert.match(past.stderr, /--expires: 2020-01-01T00:00:00.000Z is in the past, so the key would never work; give a future time/);
  assert.equal(past.stdout, '', 'no key printed');
  const list = await run(['keys', 'list', '--json', '--data', d]);
  assert.equal((JSON.parse(list.stdout) as unknown[]).length, 1, 'no key made');
});

test('keys and audit commands start without the gateway: an embedded `aam keys list` loads neither runtime.ts nor serve.ts', async () => {
  // Each CLI command is its own process, so what it loads is its start-up time (it was ~440
  // modules, the whole gateway, for every command; a key command needs about half of that).
  const log = join(dir, 'loaded.log');
  const preload = join(dir, 'log-modules.mjs');
  writeFileSync(preload, `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({ load(url, ctx, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, ctx); } });
`);
  const made = await run(['keys', 'create', '--agent', 'finance-analyst', '--config', 'aam.yaml', '--data', join(dir, 'lazy')]);
  assert.equal(made.code, 0, made.stderr);
  const r = await run(['keys', 'list', '--json', '--data', join(dir, 'lazy')], undefined, ['--import', preload]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as unknown[]).length, 1);
  // bin/aam.js runs the built dist/ when npm install built it (a clean clone), else src/: name both as src/*.ts
  const src = readFileSync(log, 'utf8').split('\n').filter((u) => /\/(src|dist)\//.test(u)).map((u) => u.replace(/^.*\/(src|dist)\//, 'src/').replace(/\.js$/, '.ts'));
  assert.ok(src.includes('src/cli/main.ts') && src.includes('src/identity/keys.ts'), 'the hook saw the command run');
  for (const heavy of ['src/runtime.ts', 'src/cli/serve.ts', 'src/server/http.ts']) assert.ok(!src.includes(heavy), `${heavy} loaded: ${src.length} source modules`);
});

test('policy test: exit 0 when every case matches, 1 with the failing case explained', async () => {
  const pass = join(dir, 'pass.yaml');
  writeFileSync(pass, '- { agent: finance-analyst, model: reasoning-high, expect: allow }\n- { agent: finance-analyst, model: frontier-max, expect: deny }\n- { agent: finance-analyst, resource: salesforce.accounts, action: export, expect: deny, expect_policy: finance-analyst-readonly }\n');
  const ok = await run(['policy', 'test', pass, '--config', 'aam.yaml']);
  assert.equal(ok.code, 0, ok.stdout);
  const fail = join(dir, 'fail.yaml');
  writeFileSync(fail, '- { agent: finance-analyst, resource: salesforce.accounts, action: read, expect: deny }\n');
  const bad = await run(['policy', 'test', fail, '--config', 'aam.yaml']);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /FAIL .*expected deny, got allow \(policy "finance-analyst-readonly" tools\[0\]\)/);
  const missing = await run(['policy', 'test', join(dir, 'no-such-cases.yaml'), '--config', 'aam.yaml']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /no-such-cases\.yaml: no such file; give a YAML list of cases/);
});

test('a file, a flag\'s value or an --agent a command cannot use is a usage error: exit 2, naming it and what to give (before: exit 1 for import-keys, policy test, --ttl, --since, --limit; a negative number was "ambiguous")', async () => {
  const bad = join(dir, 'bad-input');
  mkdirSync(bad, { recursive: true });
  const keys = join(bad, 'keys.json');
  writeFileSync(keys, '{not json', { mode: 0o600 });
  const loose = join(bad, 'obo-keys.json');
  writeFileSync(loose, '{}', { mode: 0o644 });
  chmodSync(loose, 0o644);
  const cases = join(bad, 'cases.yaml');
  writeFileSync(cases, 'key: [\n');
  const d = ['--data', join(bad, 'data'), '--config', 'aam.yaml'];
  const table = [
    [['identity', 'import-keys', keys], /keys\.json is not valid JSON; restore it from a backup/],
    [['identity', 'import-keys', join(bad, 'gone', 'keys.json')], /keys\.json does not exist \(a data dir keeps them in issuer\/keys\.json/],
    [['identity', 'import-keys', loose], /has mode 0644.*Fix: chmod 600/],
    [['policy', 'test', cases], /cases\.yaml is not valid YAML: /],
    [['policy', 'test', bad], /bad-input: a directory, not a file; give a YAML list of cases/],
    [['identity', 'issue', '--agent', 'finance-analyst', '--ttl', 'soon'], /invalid ttl "soon": use e\.g\. 90s, 15m/],
    [['identity', 'issue', '--agent', 'nobody'], /no Agent "nobody" in .*aam\.yaml \(defined: /],
    [['identity', 'join-token', '--agent', 'nobody'], /no Agent "nobody" in .*aam\.yaml \(defined: /],
    [['audit', 'query', '--plane', 'mdoel'], /plane "mdoel" is not one of model/],
    // before: --older-than 90x was exit 1 ("error: invalid ..."), --before soon said only "give --before or --older-than"
    [['audit', 'prune', '--older-than', '90x'], /invalid --older-than "90x": use e\.g\. 90s, 15m, 1h30m or 90d/],
    [['audit', 'prune', '--before', 'soon'], /--before: "soon" is not an ISO-8601 time \(like 2026-01-31T00:00:00Z\); or give --older-than 90d/],
    [['import', 'portkey', join(bad, 'gone.json')], /gone\.json: no such file; give the JSON file to import/],
    // before: a negative number after a flag was parseArgs' "argument is ambiguous ... use '--grace=-XYZ'"
    [['keys', 'rotate', 'key_x', '--grace', '-1'], /^--grace must be a number of seconds from 0 \(the old secret stops at once\) to 31536000/],
    [['audit', 'query', '--limit', '-3'], /^audit query: limit "-3" is not a whole number from 1 to 10000/],
    // before: `-c -1` read the file "=-1" ("config file not found", exit 1); a word like an option after one that takes a value is named
    [['serve', '-c', '-1'], /(^|\n)-c \(--config\) takes a value, but the next word "-1" looks like an option: give the value after -c \(a value that starts with "-": --config=-1\)\nusage: aam serve /],
    [['keys', 'create', '--agent', '--name', 'x'], /^--agent takes a value, but the next word "--name" looks like an option/],
    // before: exit 1, "error: --port must be ..." (a failure, where every other flag's bad value is a usage error)
    [['serve', '--port', '-5'], /(^|\n)--port must be a whole number from 0 to 65535, not "-5"\n/],
  ] as Array<[string[], RegExp]>;
  const ran = await runAll(table.map(([args]) => [...args, ...d]));
  table.forEach(([args, says], i) => {
    const r = ran[i];
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, says, args.join(' '));
    assert.doesNotMatch(r.stderr, /^error: /, 'said as a usage error, not a failure');
  });
});

test('policy explain: an A2A call (--callee, --skill) as policy test and the admin API take it; without a request the error names the flags', async () => {
  const r = await run(['policy', 'explain', '--agent', 'finance-analyst', '--callee', 'research-bot', '--skill', 'summarise', '--config', 'aam.yaml']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /request: call skill "summarise" of agent "research-bot" \(A2A\)/);
  assert.match(r.stdout, /decision: DENY/);
  const none = await run(['policy', 'explain', '--agent', 'finance-analyst', '--config', 'aam.yaml']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /needs model, or resource and action \(or callee and skill for an A2A call\)/);
  const help = await run(['policy', 'explain', '--help']);
  assert.match(help.stdout, /--callee AGENT \[--skill S\]/);
});

test('an unknown subcommand of a known group lists the group\'s subcommands (before: unknown command "audit")', async () => {
  const [r, policy, frob, kees, lst] = await runAll([['audit', 'tail'], ['policy'], ['frobnicate'], ['kees', 'list'], ['keys', 'lst']]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^unknown command "audit tail": aam audit verify \| export \| query \| show \| public-key \| prune\n/);
  assert.match(policy.stderr, /^"policy" needs a subcommand: aam policy test \| explain \| diff\n/);
  assert.match(frob.stderr, /^unknown command "frobnicate"\n/);
  // A typo of a command names the nearest one, as a misspelt option does.
  assert.match(kees.stderr, /^unknown command "kees" \(did you mean keys\?\)\n/);
  assert.match(lst.stderr, /^unknown command "keys lst" \(did you mean keys list\?\): aam keys create \| list/);
});

test('audit query --decision is checked: a misspelt one is named instead of printing an empty trail', async () => {
  const r = await run(['audit', 'query', '--decision', 'denied', '--data', data]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /audit query: decision "denied" is not one of allow, deny, approval_required/);
});

test('credentials set reads stdin only and list never shows values', async () => {
  const cfg = join(dir, 'cred.yaml');
  writeFileSync(cfg, 'apiVersion: access.envisionai.dev/v1\nkind: Credential\nmetadata: { name: vaulted }\nspec: { stored: true }\n');
  const set = await run(['credentials', 'set', 'vaulted', '--config', cfg, '--data', data], 'super-secret-value-123');
  assert.equal(set.code, 0, set.stderr);
  const list = await run(['credentials', 'list', '--config', cfg, '--data', data]);
  assert.match(list.stdout, /vaulted\s+stored/);
  assert.ok(!list.stdout.includes('super-secret-value-123'));
  const q = await run(['audit', 'query', '--type', 'admin', '--json', '--data', data]);
  const [ev] = JSON.parse(q.stdout) as Array<{ admin: { action: string; target: string }; detail: { version: number } }>;
  assert.deepEqual([ev.admin.action, ev.admin.target, ev.detail.version], ['credential_set', 'vaulted', 1]);
  const all = await run(['audit', 'export', '--data', data]);
  assert.ok(!all.stdout.includes('super-secret-value-123'), 'the trail never holds the value');
});

test('audit query/export: --since takes an ISO time or a duration ago; a bad --since or --limit is named (before: no limit at all, or a RangeError), and export makes no file', async () => {
  // The credentials test above recorded a credential_set event in this data dir a moment ago.
  const recent = await run(['audit', 'query', '--type', 'admin', '--since', '1h', '--limit', '1', '--jsonl', '--data', data]);
  assert.equal(recent.code, 0, recent.stderr);
  const lines = recent.stdout.trim().split('\n');
  assert.equal(lines.length, 1, '--limit 1: one event');
  assert.equal((JSON.parse(lines[0]) as { type: string }).type, 'admin');
  const future = await run(['audit', 'query', '--since', new Date(Date.now() + 3_600_000).toISOString(), '--json', '--data', data]);
  assert.deepEqual(JSON.parse(future.stdout), [], 'nothing after an hour from now: an empty array, still one JSON document');
  const both = await run(['audit', 'query', '--json', '--jsonl', '--data', data]);
  assert.deepEqual([both.code, both.stderr.trim()], [2, 'give --json (one JSON document) or --jsonl (one event per line), not both']);
  const limit = await run(['audit', 'query', '--limit', 'abc', '--data', data]);
  assert.equal(limit.code, 2);
  assert.match(limit.stderr, /audit query: limit "abc" is not a whole number from 1 to 10000/);
  const since = await run(['audit', 'query', '--since', 'yesterday', '--data', data]);
  assert.equal(since.code, 2, 'a flag\'s value that cannot be used is a usage error');
  assert.match(since.stderr, /--since: "yesterday" is neither an ISO time \(like 2026-01-31T00:00:00Z\) nor a duration ago \(like 30m, 24h, 7d\)/);
  const file = join(dir, 'since.jsonl');
  const exported = await run(['audit', 'export', '--since', 'yesterday', '--out', file, '--data', data]);
  assert.equal(exported.code, 2);
  assert.match(exported.stderr, /--since: "yesterday" is neither/);
  assert.ok(!existsSync(file), 'no output file for a refused export');
  const usage = await run(['usage', '--since', 'yesterday', '--data', data]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--since: "yesterday" is neither/, 'aam usage checks --since as audit does');
});

test('a mistyped --data is refused by the commands that read a gateway\'s data (before: created empty, "no keys", exit 0); credentials set says when no Credential of the config reads the name (before: stored, silently, where nothing reads it)', async () => {
  const typo = join(dir, 'no-such-data');
  const commands = [['keys', 'list'], ['keys', 'revoke', 'key_1'], ['keys', 'rotate', 'key_1'], ['usage']];
  (await runAll(commands.map((args) => [...args, '--data', typo]))).forEach((r, i) => {
    assert.equal(r.code, 1, `${commands[i].join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, new RegExp(`no aam data in ${typo} \\(no aam.db\\): give the gateway's data dir \\(--data or AAM_DATA_DIR\\)`));
  });
  assert.ok(!existsSync(typo), `one of ${commands.map((c) => c.join(' ')).join(', ')} created ${typo}`);
  const cfg = join(dir, 'stored.yaml');
  writeFileSync(cfg, 'apiVersion: access.envisionai.dev/v1\nkind: Credential\nmetadata: { name: salesforce-token }\nspec: { stored: true }\n');
  // Stored ahead of its document is allowed (a stored Credential needs a value before it loads), but said.
  const wrong = await run(['credentials', 'set', 'salesforce-tokn', '--config', cfg, '--data', join(dir, 'cred-data')], 'a-secret-value-1234567890');
  assert.equal(wrong.code, 0, wrong.stderr);
  assert.match(wrong.stderr, new RegExp(`note: ${cfg} has no Credential "salesforce-tokn", so nothing reads this value until a Credential with \`stored: true\` of that name is added \\(a typo\\?\\)`));
  const right = await run(['credentials', 'set', 'salesforce-token', '--config', cfg, '--data', join(dir, 'cred-data')], 'a-secret-value-1234567890');
  assert.equal(right.code, 0, right.stderr);
  assert.match(right.stdout, /stored salesforce-token version 1/);
  assert.equal(right.stderr, '', 'no note for a Credential the config has');
});

test('a misspelt option names the command and the nearest real option (before: node\'s "To specify a positional argument starting with a \'-\'..."); aam --version; a stray option without a command is refused (before: help, exit 0)', async () => {
  const [typo, far, version, stray, plain] = await runAll([['keys', 'list', '--jsn'], ['usage', '--verbose'], ['--version'], ['--verbose'], ['--config', 'aam.yaml']]);
  assert.equal(typo.code, 2);
  assert.equal(typo.stderr, 'unknown option --jsn for aam keys list (did you mean --json?)\nusage: aam keys list [--json]\n');
  assert.equal(far.code, 2);
  assert.match(far.stderr, /^unknown option --verbose for aam usage; its options: --config, --data, --help, --by, --since, --json\n/);
  assert.deepEqual([version.code, version.stdout], [0, `aam ${(JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version}\n`]);
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /^unknown option --verbose: give a command first/);
  assert.equal(plain.code, 0, 'global options alone still print the help');
  assert.match(plain.stdout, /^aam - Agent Access Manager/);
});

test('words beyond a command\'s own arguments are refused, exit 2, naming its usage, by every command (before: ignored: `aam keys rotate K1 K2` rotated K1 only)', async () => {
  const { allCommands, main } = await import('../src/cli/main.ts');
  const table = await allCommands();
  // In process: the check runs before any command does, so nothing here touches a store or the network
  // (without it, each command fails fast on a config and a data dir that are not there).
  const write = process.stderr.write;
  let said = '';
  process.stderr.write = ((s: string) => { said += s; return true; }) as typeof process.stderr.write;
  try {
    for (const [name, c] of Object.entries(table)) {
      if (c.args?.at(-1)?.endsWith('...')) continue; // takes several (keys revoke, identity import-keys): below
      said = '';
      const args = (c.args ?? []).map((a, i) => `arg${i}`);
      const code = await main([...name.split(' '), ...args, 'extra-word', '--config', join(dir, 'no-such.yaml'), '--data', join(dir, 'never-made')]);
      assert.equal(code, 2, name);
      assert.equal(said, `aam ${name} takes ${args.length === 0 ? 'no arguments' : `at most ${args.length} argument${args.length === 1 ? '' : 's'} (${c.args!.join(' ')})`}; extra: "extra-word"\nusage: ${c.usage}\n`, name);
    }
  } finally { process.stderr.write = write; }
  assert.ok(!existsSync(join(dir, 'never-made')));
  const show = await run(['audit', 'show', 'req_1', 'extra', '--data', data]);
  assert.equal(show.code, 2);
  assert.ok(show.stderr.startsWith('aam audit show takes at most 1 argument (REQUEST_ID); extra: "extra"\nusage: aam audit show REQUEST_ID [--json | --jsonl]'), show.stderr);
});

test('keys revoke takes several IDs, all or none: an unknown ID revokes nothing', async () => {
  const d = join(dir, 'data-revoke');
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    assert.equal((await run(['keys', 'create', '--agent', 'finance-analyst', '--config', 'aam.yaml', '--data', d])).code, 0);
  }
  for (const k of JSON.parse((await run(['keys', 'list', '--json', '--data', d])).stdout) as Array<{ id: string }>) ids.push(k.id);
  const state = async () => (JSON.parse((await run(['keys', 'list', '--json', '--data', d])).stdout) as Array<{ revokedAt: string | null }>).map((k) => k.revokedAt !== null);
  const bad = await run(['keys', 'revoke', ids[0], 'key_nope', '--data', d]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /no API key with id key_nope \(see: aam keys list\); nothing revoked/);
  assert.deepEqual(await state(), [false, false]);
  const both = await run(['keys', 'revoke', ...ids, '--data', d]);
  assert.equal(both.code, 0, both.stderr);
  assert.equal(both.stdout.trim().split('\n').length, 2);
  assert.deepEqual(await state(), [true, true]);
});

test('the README\'s Commands table and the CLI\'s command table name the same commands and flags, and each usage line the flags its command takes', async () => {
  const { allCommands } = await import('../src/cli/main.ts');
  const table = await allCommands();
  const readme = readFileSync('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('## Commands'), readme.indexOf('## HTTP API'));
  const documented = new Map<string, Set<string>>();
  for (const row of section.split('\n').filter((l) => l.startsWith('| `'))) {
    const cell = row.split(/(?<!\\)\|/)[1].trim();
    if (!cell.includes('aam ')) continue; // `npm start`
    let group = '';
    // One cell: `npx aam keys list [--json]` / `revoke ID...` / `rotate ID [--grace SECONDS]`; the later forms are the group's.
    for (const piece of cell.split(/ \/ (?=`)/)) {
      const span = /`([^`]+)`/.exec(piece)![1].replace(/\\\|/g, '|');
      const words = /(?:^|\| )(?:npx )?aam (.*)$/.exec(span)?.[1] ?? (span.startsWith(`${group} `) ? span : `${group} ${span}`);
      const name = [words.split(' ').slice(0, 2).join(' '), words.split(' ')[0]].find((n) => table[n]) ?? words;
      group = name.split(' ')[0];
      documented.set(name, new Set([...span.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1])));
    }
  }
  assert.deepEqual([...documented.keys()].sort(), Object.keys(table).sort(), 'README Commands rows = aam --help');
  for (const [name, c] of Object.entries(table)) {
    const options = Object.keys(c.options ?? {}).sort();
    const inUsage = [...new Set([...c.usage.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]))].filter((o) => o !== 'config' && o !== 'data').sort();
    assert.deepEqual(inUsage, options, `aam ${name}: its usage names every option it takes and no other`);
    assert.deepEqual([...documented.get(name)!].filter((o) => o !== 'config' && o !== 'data').sort(), options, `README row of aam ${name}: its flags`);
  }
});

test('aam GROUP --help lists the group\'s commands with their usage, exit 0 (before: "needs a subcommand", exit 2); aam --help keeps each group together (before: policy diff after import portkey)', async () => {
  const [keys, alone, helpKeys, rotate, top] = await runAll([['keys', '--help'], ['keys'], ['help', 'keys'], ['help', 'keys', 'rotate'], ['--help']]);
  assert.equal(keys.code, 0, keys.stderr);
  assert.deepEqual(keys.stdout.split('\n').filter((l) => l.startsWith('  usage: ')).map((l) => l.split(' ').slice(3, 6).join(' ')), ['aam keys create', 'aam keys list', 'aam keys revoke', 'aam keys rotate']);
  assert.equal(alone.code, 2, 'without --help a group alone is still a usage error');
  assert.deepEqual(helpKeys, keys, 'aam help GROUP is aam GROUP --help');
  assert.deepEqual([rotate.code, rotate.stdout.split('\n')[2]], [0, 'usage: aam keys rotate ID [--grace SECONDS]   (default grace 3600)']);
  const all = top.stdout.split('\n').filter((l) => /^ {2}[a-z]/.test(l)).map((l) => l.trim().split(/ {2,}/)[0]);
  const groups = all.map((n) => n.split(' ')[0]);
  assert.deepEqual(groups.filter((g, i) => groups.indexOf(g) !== i && groups[i - 1] !== g), [], `each group together: ${all.join(', ')}`);
});

test('keys list, credentials list and usage for people: columns, times relative to now, an empty state that says what to do (before: ISO times, a bare header)', async () => {
  const d = join(dir, 'data-tables');
  const none = join(dir, 'no-credentials.yaml');
  writeFileSync(none, 'apiVersion: access.envisionai.dev/v1\nkind: Agent\nmetadata: { name: a }\nspec: { workload: spiffe://prod/agent/a }\n');
  const long = await run(['keys', 'create', '--agent', 'finance-analyst', '--name', 'x'.repeat(101), '--config', 'aam.yaml', '--data', d]);
  assert.equal(long.code, 2, long.stderr);
  assert.match(long.stderr, /--name must be 1 to 100 characters, not 101/);
  assert.equal((await run(['keys', 'create', '--agent', 'finance-analyst', '--name', 'ci', '--expires', new Date(Date.now() + 3 * 86_400_000).toISOString(), '--config', 'aam.yaml', '--data', d])).code, 0);
  const keys = (await run(['keys', 'list', '--data', d])).stdout.split('\n');
  assert.match(keys[0], /^ID +AGENT +NAME +STATE +CREATED +EXPIRES$/);
  assert.match(keys[1], /^key_\S+ +finance-analyst +ci +active +\d+s ago +in 2d$/);
  const creds = await run(['credentials', 'list', '--config', none, '--data', d]);
  assert.equal(creds.stdout, `no credentials: ${none} has no Credential document (add one, then \`aam credentials set NAME\` for a \`stored: true\` one)\n`);
  assert.deepEqual(JSON.parse((await run(['credentials', 'list', '--json', '--config', none, '--data', d])).stdout), []);
  const used = await run(['usage', '--since', '1h', '--data', d]);
  assert.match(used.stdout, /^no usage recorded since \S+Z \(a gateway records each model call; try a longer --since\)\n$/);
  assert.deepEqual(JSON.parse((await run(['usage', '--json', '--data', d])).stdout), []);
});
