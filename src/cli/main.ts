// `aam` command line. Each subcommand is a small function; shared flags: --config, --data.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { resolve } from 'node:path';
import { ConfigError, formatIssues } from '../config/errors.ts';
import { loadConfigHere as loadConfig, parseConfigInBackground, withLinesHere } from '../config/isolated.ts';
import { readConfigSources } from '../config/sources.ts';
import { compilePolicies } from '../policy/compile.ts';
import { agentMustExist, type Command, type Globals } from './command.ts';
import { listenPort } from '../lib/env-number.ts';
import { nearest } from '../lib/nearest.ts';
import { readFileSync } from 'node:fs';
import { ago, table } from './table.ts';
import { graceProblem, keyNameProblem } from '../store/key-secrets.ts';
import { given, UsageError } from '../lib/usage-error.ts';
import { absentSources } from '../credentials/presence.ts';

// The stores, the CLI's evidence writer and the commands in commands.ts (audit, import, policy
// tools) load when a command needs them: `aam serve` does not hold their modules.
const stores = () => import('./stores.ts');
const recordCliAdmin: typeof import('./evidence.ts').recordCliAdmin = async (...a) => (await import('./evidence.ts')).recordCliAdmin(...a);
const cliAdminReady = async (dataDir: string): Promise<void> => (await import('./evidence.ts')).cliAdminReady(dataDir);

const GLOBAL_OPTIONS: ParseArgsConfig['options'] = {
  config: { type: 'string', short: 'c' },
  data: { type: 'string', short: 'd' },
  help: { type: 'boolean', short: 'h' },
};

export function globalsFrom(values: Record<string, unknown>, env = process.env): Globals {
  return {
    config: resolve(String(values.config ?? env.AAM_CONFIG ?? 'aam.yaml')),
    data: resolve(String(values.data ?? env.AAM_DATA_DIR ?? 'data')),
  };
}

function out(line: string): void { process.stdout.write(line + '\n'); }
function err(line: string): void { process.stderr.write(line + '\n'); }

const commands: Record<string, Command> = {
  serve: {
    summary: 'run the gateway',
    usage: 'aam serve [--config F] [--port N] [--host H] [--data D] [--tls-cert F --tls-key F [--client-ca F]]',
    options: { port: { type: 'string', short: 'p' }, host: { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, 'client-ca': { type: 'string' } },
    // The gateway (most of aam's modules) loads only here: every other command starts in a fraction of the time.
    run: async ({ values, g }) => {
      // The config's validation (a child process) starts first, so it runs beside the loading of
      // the gateway's modules instead of after it; startGateway awaits it (and throws its error).
      const config = parseConfigInBackground(readConfigSources(g.config));
      config.catch(() => { /* surfaces where startGateway awaits it */ });
      return (await import('./serve.ts')).serve({
      configPath: g.config, dataDir: g.data, config,
      port: given(() => listenPort(values.port as string | undefined, process.env.AAM_PORT)), host: String(values.host ?? process.env.AAM_HOST ?? '0.0.0.0'),
      tlsCert: values['tls-cert'] as string | undefined, tlsKey: values['tls-key'] as string | undefined, clientCa: values['client-ca'] as string | undefined,
      });
    },
  },
  validate: {
    summary: 'check a config file and print every problem',
    usage: 'aam validate [FILE]   (default: --config / AAM_CONFIG / aam.yaml)',
    args: ['[FILE]'],
    run: ({ positionals, g }) => {
      const file = positionals[0] ? resolve(positionals[0]) : g.config;
      try {
        const set = loadConfig(file);
        compilePolicies(set);
        out(`${file}: OK (${set.providers.size} providers, ${set.models.size} models, ${set.agents.size} agents, ${set.policies.size} policies, ${set.credentials.size} credentials; version ${set.digest.slice(0, 12)})`);
        // Not a config problem (the serving machine may have them), but `aam serve` here would refuse to start.
        for (const p of absentSources(set, process.env)) err(`note: ${p}; \`aam serve\` refuses to start where it is missing`);
        return 0;
      } catch (e) {
        if (e instanceof ConfigError) {
          err(formatIssues(withLinesHere(e.issues)));
          err(`${e.issues.length} problem${e.issues.length === 1 ? '' : 's'} found in ${file}`);
          return 1;
        }
        throw e;
      }
    },
  },
  'keys create': {
    summary: 'create a virtual key for an agent (printed once, as the last line)',
    usage: 'aam keys create --agent NAME [--name LABEL] [--expires ISO-8601]',
    options: { agent: { type: 'string' }, name: { type: 'string' }, expires: { type: 'string' } },
    run: async ({ values, g }) => {
      const agent = values.agent as string | undefined;
      if (!agent) { err('missing --agent NAME (an Agent defined in the config)'); return 2; }
      agentMustExist(loadConfig(g.config), g.config, agent);
      const badName = values.name === undefined ? undefined : keyNameProblem(values.name);
      if (badName) { err(`--name ${badName}`); return 2; }
      const expires = values.expires as string | undefined;
      if (expires && Number.isNaN(Date.parse(expires))) { err(`--expires: "${expires}" is not an ISO-8601 time`); return 2; }
      if (expires && Date.parse(expires) <= Date.now()) { err(`--expires: ${new Date(expires).toISOString()} is in the past, so the key would never work; give a future time`); return 2; }
      await cliAdminReady(g.data);
      const { key, secret } = await (await stores()).withKeyBook(g.data, (keys) => keys.create(agent, { name: values.name as string | undefined, expiresAt: expires ? new Date(expires).toISOString() : undefined }));
      const unrecorded = await recordCliAdmin(g.data, 'key_created', key.id, { agent });
      err(`created key ${key.id} for agent ${agent}; store it now, it is not shown again:`);
      out(secret);
      if (unrecorded) { err(unrecorded); return 1; }
      return 0;
    },
  },
  'keys list': {
    summary: 'list virtual keys (ids and state, never secrets)',
    usage: 'aam keys list [--json]',
    options: { json: { type: 'boolean' } },
    run: async ({ values, g }) => {
      const list = await (await stores()).withKeyBook(g.data, (keys) => keys.list(), { existing: true });
      if (values.json) { out(JSON.stringify(list, null, 2)); return 0; }
      if (list.length === 0) { out('no keys (create one: aam keys create --agent NAME)'); return 0; }
      const state = (k: (typeof list)[number]) => (k.revokedAt ? 'revoked' : k.expiresAt && Date.parse(k.expiresAt) <= Date.now() ? 'expired' : 'active');
      for (const l of table(['ID', 'AGENT', 'NAME', 'STATE', 'CREATED', 'EXPIRES'], list.map((k) => [k.id, k.agent, k.name ?? '-', state(k), ago(k.createdAt), ago(k.expiresAt)]))) out(l);
      return 0;
    },
  },
  'keys revoke': {
    summary: 'revoke keys; the next request with any of them is refused (an unknown ID revokes none)',
    usage: 'aam keys revoke ID...',
    args: ['ID...'],
    run: async ({ positionals, g }) => {
      if (!positionals[0]) { err('missing key ID (see: aam keys list)'); return 2; }
      const ids = [...new Set(positionals)];
      await cliAdminReady(g.data);
      const revoked = await (await stores()).withKeyBook(g.data, async (keys) => {
        // All or none: every ID is checked before the first is revoked.
        const known = new Set((await keys.list()).map((k) => k.id));
        const unknown = ids.filter((id) => !known.has(id));
        if (unknown.length) throw new Error(`no API key with id ${unknown.join(', ')} (see: aam keys list); nothing revoked`);
        const done = [];
        for (const id of ids) done.push(await keys.revoke(id));
        return done;
      }, { existing: true });
      for (const k of revoked) out(`revoked ${k.id} (agent ${k.agent}) at ${k.revokedAt}`);
      for (const k of revoked) {
        const unrecorded = await recordCliAdmin(g.data, 'key_revoked', k.id, { agent: k.agent });
        if (unrecorded) { err(unrecorded); return 1; }
      }
      return 0;
    },
  },
  'keys rotate': {
    summary: 'new secret for the same key id; the old secret works for a grace period',
    usage: 'aam keys rotate ID [--grace SECONDS]   (default grace 3600)',
    args: ['ID'],
    options: { grace: { type: 'string' } },
    run: async ({ positionals, values, g }) => {
      if (!positionals[0]) { err('missing key ID (see: aam keys list)'); return 2; }
      const grace = Number(values.grace ?? 3600);
      const bad = graceProblem(values.grace === '' ? NaN : grace);
      if (bad) { err(`--grace ${bad}`); return 2; }
      await cliAdminReady(g.data);
      const { key, secret } = await (await stores()).withKeyBook(g.data, (keys) => keys.rotate(positionals[0], grace), { existing: true });
      const unrecorded = await recordCliAdmin(g.data, 'key_rotated', key.id, { agent: key.agent, grace_seconds: grace });
      err(`rotated ${key.id}; the previous secret stays valid for ${grace}s. New secret (shown once):`);
      out(secret);
      if (unrecorded) { err(unrecorded); return 1; }
      return 0;
    },
  },
  migrate: {
    summary: 'apply the fleet database schema migrations (AAM_DATABASE_URL) and exit; replicas also run them at start',
    usage: 'aam migrate',
    run: async () => { out(await (await stores()).migrateFleet(process.env)); return 0; },
  },
  'fleet status': {
    summary: 'replicas seen (heartbeats), their config digests (drift flagged), PostgreSQL and Redis health; exit 1 on drift or a store down',
    usage: 'aam fleet status [--json]',
    options: { json: { type: 'boolean' } },
    run: async ({ values }) => {
      const r = await (await stores()).fleetStatus(process.env, values.json === true);
      for (const l of r.lines) out(l);
      return r.code;
    },
  },
};

/** The built-in commands and those of commands.ts (what `aam --help` lists). */
export async function allCommands(): Promise<Record<string, Command>> {
  return { ...commands, ...(await import('./commands.ts')).extraCommands };
}

/** The commands, each group's together (in the order groups first appear), summaries aligned. */
function help(commands: Record<string, Command>): string {
  const names = Object.keys(commands);
  const first = (n: string) => names.findIndex((m) => m.split(' ')[0] === n.split(' ')[0]);
  const sorted = names.map((n, i) => [n, i] as const).sort((a, b) => first(a[0]) - first(b[0]) || a[1] - b[1]).map(([n]) => n);
  const width = Math.max(...names.map((n) => n.length));
  const lines = ['aam - Agent Access Manager', '', 'Usage: aam <command> [options]', '', 'Commands:'];
  for (const name of sorted) lines.push(`  ${name.padEnd(width)}  ${commands[name].summary}`);
  lines.push('', 'Global options: --config F (env AAM_CONFIG, default aam.yaml), --data D (env AAM_DATA_DIR, default ./data), --help; aam --version prints the version');
  lines.push('Run "aam <command> --help" for the options of one command.');
  return lines.join('\n');
}

/** `aam keys --help`: the group's commands with their usage. */
function groupHelp(group: string, commands: Record<string, Command>): string | undefined {
  const members = Object.entries(commands).filter(([n]) => n.startsWith(`${group} `));
  return members.length === 0 ? undefined : members.map(([n, c]) => `aam ${n}: ${c.summary}\n  usage: ${c.usage}`).join('\n');
}

/** The words the user typed and, for a known group (`aam audit tail`), the subcommands it has. */
export function unknownCommand(words: readonly string[], known: readonly string[]): string {
  const group = known.filter((k) => k.startsWith(`${words[0]} `)).map((k) => k.slice(words[0].length + 1));
  if (group.length === 0) {
    const near = nearest(words[0], [...new Set(known.map((k) => k.split(' ')[0]))]);
    return `unknown command "${words[0]}"${near ? ` (did you mean ${near}?)` : ''}\n`;
  }
  const near = words[1] === undefined ? null : nearest(words[1], group);
  const typed = words[1] === undefined ? `"${words[0]}" needs a subcommand` : `unknown command "${words[0]} ${words[1]}"${near ? ` (did you mean ${words[0]} ${near}?)` : ''}`;
  return `${typed}: aam ${words[0]} ${group.join(' | ')}\n`;
}

/** node:util's parseArgs errors in the CLI's words: an unknown option names the command and the nearest real one. */
export function optionError(e: Error & { code?: string }, command: string, options: ParseArgsConfig['options'], args: readonly string[] = []): string {
  const dashed = e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ? /^Option '([^']+)' argument is ambiguous/.exec(e.message)?.[1] : undefined;
  if (dashed) return dashedValue(dashed, args[args.indexOf(dashed) + 1] ?? '', options);
  const unknown = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /Unknown option '([^']+)'/.exec(e.message)?.[1] : undefined;
  if (!unknown) return e.message;
  const names = Object.keys(options ?? {}).map((n) => `--${n}`);
  const near = unknown.startsWith('--') ? nearest(unknown, names) : null;
  return `unknown option ${unknown} for aam ${command}${near ? ` (did you mean ${near}?)` : `; its options: ${names.join(', ')}`}`;
}

/** `-c -1`, `--agent --name x`: the word after an option that takes a value looks like an option (parseArgs: "argument is ambiguous"). */
function dashedValue(flag: string, next: string, options: ParseArgsConfig['options']): string {
  const long = flag.startsWith('--') ? flag : `--${Object.entries(options ?? {}).find(([, o]) => `-${o.short}` === flag)?.[0] ?? flag.slice(1)}`;
  const named = long === flag ? flag : `${flag} (${long})`;
  return `${named} takes a value, but the next word "${next}" looks like an option: give the value after ${flag} (a value that starts with "-": ${long}=${next})`;
}

/** Options whose value is a number, a duration or a time: after them a negative number is the value (negativeValues). */
const NUMERIC_OPTIONS = new Set(['port', 'grace', 'limit', 'ttl', 'since', 'older-than']);

/**
 * `--grace -1` as `--grace=-1`: a negative number after an option that takes a number is that value, so the
 * command's own check says what range to give (parseArgs alone calls it "ambiguous" and suggests --grace=-XYZ).
 * After any other option (`-c -1`: a file named "-1"?) it stays a word that looks like an option (dashedValue).
 */
export function negativeValues(args: readonly string[], options: ParseArgsConfig['options']): string[] {
  const numeric = new Map(Object.entries(options ?? {}).filter(([n, o]) => o.type === 'string' && NUMERIC_OPTIONS.has(n)).flatMap(([n, o]) => [[`--${n}`, n], ...(o.short ? [[`-${o.short}`, n] as const] : [])] as Array<readonly [string, string]>));
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const long = numeric.get(args[i]);
    if (long !== undefined && /^-\d/.test(args[i + 1] ?? '')) out.push(`--${long}=${args[++i]}`);
    else out.push(args[i]);
  }
  return out;
}

/** Words beyond a command's own arguments (`aam keys rotate K1 K2`): a usage error naming them, never ignored. */
export function extraArguments(name: string, args: readonly string[] = [], positionals: readonly string[]): string | undefined {
  if (positionals.length <= args.length || args.at(-1)?.endsWith('...')) return undefined;
  const takes = args.length === 0 ? 'no arguments' : `at most ${args.length} argument${args.length === 1 ? '' : 's'} (${args.join(' ')})`;
  return `aam ${name} takes ${takes}; extra: ${positionals.slice(args.length).map((w) => JSON.stringify(w)).join(' ')}`;
}

/** This aam's version (package.json), for `aam --version` and bug reports. */
function packageVersion(): string {
  try { return String((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version); } catch { return 'unknown'; }
}

/** Options that take a value when written apart (`--config F`, `-c F`): F is not a command word. */
const GLOBAL_FLAGS = new Set(Object.entries(GLOBAL_OPTIONS ?? {}).flatMap(([n, o]) => [`--${n}`, ...(o.short ? [`-${o.short}`] : [])]));
const GLOBAL_VALUED = new Set(Object.entries(GLOBAL_OPTIONS ?? {}).filter(([, o]) => o.type === 'string').flatMap(([n, o]) => [`--${n}`, ...(o.short ? [`-${o.short}`] : [])]));

/** Where the words typed are, options aside: `aam --config F keys create` is `keys create` (before: unknown command "F"). */
function wordIndexes(argv: readonly string[]): number[] {
  const at: number[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('-')) at.push(i);
    else if (GLOBAL_VALUED.has(argv[i])) i++;
  }
  return at;
}

export async function main(argv: string[]): Promise<number> {
  const at = wordIndexes(argv);
  const words = at.map((i) => argv[i]);
  const pick = (table: Record<string, Command>): string => (table[words.slice(0, 2).join(' ')] ? words.slice(0, 2).join(' ') : words[0] ?? '');
  let table = commands;
  let name = pick(table);
  if (!table[name]) name = pick(table = await allCommands());
  const cmd = table[name];
  if (!cmd) {
    // `aam help keys rotate` is `aam keys rotate --help`.
    if (name === 'help' && words.length > 1) return main([...argv.filter((_, i) => i !== at[0]), '--help']);
    const group = words.length === 1 && (argv.includes('--help') || argv.includes('-h')) ? groupHelp(name, table) : undefined;
    if (group) { out(group); return 0; }
    if (name && name !== 'help') { err(unknownCommand(words, Object.keys(table))); err(help(table)); return 2; }
    if (words.length === 0 && (argv.includes('--version') || argv.includes('-V'))) { out(`aam ${packageVersion()}`); return 0; }
    const stray = argv.find((a, i) => a.startsWith('-') && !at.includes(i) && !GLOBAL_FLAGS.has(a.split('=')[0]) && !GLOBAL_VALUED.has(argv[i - 1]));
    if (stray) { err(`unknown option ${stray.split('=')[0]}: give a command first (aam <command> --help lists its options)\n`); err(help(table)); return 2; }
    out(help(table));
    return 0;
  }
  const named = new Set(at.slice(0, name.split(' ').length));
  const rest = argv.filter((_, i) => !named.has(i));
  let parsed;
  try {
    parsed = parseArgs({ args: negativeValues(rest, { ...GLOBAL_OPTIONS, ...cmd.options }), options: { ...GLOBAL_OPTIONS, ...cmd.options }, allowPositionals: true, strict: true });
  } catch (e) {
    err(`${optionError(e as Error & { code?: string }, name, { ...GLOBAL_OPTIONS, ...cmd.options }, rest)}\nusage: ${cmd.usage}`);
    return 2;
  }
  if (parsed.values.help) { out(`${cmd.summary}\n\nusage: ${cmd.usage}\n\nGlobal options: --config F, --data D`); return 0; }
  const extra = extraArguments(name, cmd.args, parsed.positionals);
  if (extra) { err(`${extra}\nusage: ${cmd.usage}`); return 2; }
  try {
    return await cmd.run({ values: parsed.values as Record<string, string | boolean | string[] | undefined>, positionals: parsed.positionals, g: globalsFrom(parsed.values) });
  } catch (e) {
    // What the user gave cannot be used (a flag's value, a file named): a usage error, as above.
    if (e instanceof UsageError) { err(e.message); return 2; }
    err(`error: ${e instanceof ConfigError ? formatIssues(withLinesHere(e.issues)) : (e as Error).message}`);
    return 1;
  }
}

/** The `aam` process: bin/aam.js (what npx and npm link run) and `node src/cli/main.ts` both start here. */
export function runCli(argv: string[]): void {
  // `aam audit query | head`: a reader that stops early is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(0); else throw e; });
  // A failed command exits now, even if a half-started service left handles open.
  main(argv).then((code) => { if (code !== 0) process.exit(code); });
}

if (import.meta.main) runCli(process.argv.slice(2));
