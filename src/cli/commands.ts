// Subcommands beyond serve/validate/keys, kept apart so main.ts stays a dispatcher.
import { basename } from 'node:path';
import { agentMustExist, type Command } from './command.ts';
import { loadConfigHere as loadConfig } from '../config/isolated.ts';
import { compilePolicies } from '../policy/compile.ts';
import { runPolicyTests, explain, requestOf } from '../policy/test-runner.ts';
import { buildAgentRegistry } from '../identity/registry.ts';
import { issueAgentSvid, parseTtl } from '../identity/issue.ts';
import { readIssuerKeyFile, type KeyImport } from '../identity/issuer.ts';
import { sinceTime } from '../gateway/usage.ts';
import { flagTime } from '../config/duration.ts';
import { openVault } from '../credentials/vault.ts';
import { readSecretFromStdin } from '../credentials/stdin.ts';
import { auditCommands } from '../audit/cli.ts';
import { importCommands } from './import.ts';
import { policyDiffCommands } from './policy-diff.ts';
import { recordCliAdmin } from './evidence.ts';
import { withIssuer, withJoinTokens, withUsage, withVault } from './stores.ts';
import { fleetEnv } from '../store/fleet-lazy.ts';
import { ago, table } from './table.ts';
import { APPROVAL_STATUSES } from '../store/approvals.ts';
import { given, givenAsync, givenFile } from '../lib/usage-error.ts';

const out = (line: string) => process.stdout.write(line + '\n');
const err = (line: string) => process.stderr.write(line + '\n');

/** aam usage --since: default 30 days ago, as the admin API's ?since=. */
const since = (v: unknown): number => flagTime('--since', v) ?? sinceTime(undefined);

export const extraCommands: Record<string, Command> = {
  'policy test': {
    summary: 'run a YAML table of decision cases against the config; exit 1 on any mismatch',
    args: ['CASES.yaml'],
    usage: 'aam policy test CASES.yaml   (cases: [{agent|workload|identity, model | resource+action+args | callee+skill, expect: allow|deny|approval_required}])',
    run: ({ positionals, g }) => {
      if (!positionals[0]) { err('missing CASES.yaml'); return 2; }
      const cases = givenFile(positionals[0], 'a YAML list of cases: - { agent: NAME, model: M, expect: allow }');
      const compiled = compilePolicies(loadConfig(g.config));
      const report = runPolicyTests(cases, compiled, undefined, positionals[0]);
      for (const l of report.lines) out(l);
      return report.failed > 0 ? 1 : 0;
    },
  },
  'policy explain': {
    summary: 'show every rule that applies to one request and which one decided',
    usage: 'aam policy explain (--agent NAME | --workload SPIFFE_ID) (--model M | --resource R --action A [--args JSON] | --callee AGENT [--skill S])',
    options: { agent: { type: 'string' }, workload: { type: 'string' }, model: { type: 'string' }, resource: { type: 'string' }, action: { type: 'string' }, args: { type: 'string' }, callee: { type: 'string' }, skill: { type: 'string' } },
    run: ({ values, g }) => {
      const compiled = compilePolicies(loadConfig(g.config));
      let args: unknown;
      try { args = values.args ? JSON.parse(String(values.args)) : undefined; } catch { err('--args must be a JSON object'); return 2; }
      const req = requestOf({ agent: values.agent, workload: values.workload, model: values.model, resource: values.resource, action: values.action, args, callee: values.callee, skill: values.skill }, compiled);
      for (const l of explain(req, compiled)) out(l);
      return 0;
    },
  },
  'identity issue': {
    summary: 'mint a short-lived JWT-SVID for an agent with aam\'s issuer (printed as the last line)',
    usage: 'aam identity issue --agent NAME [--ttl 15m] [--audience aam]',
    options: { agent: { type: 'string' }, ttl: { type: 'string' }, audience: { type: 'string' } },
    run: async ({ values, g }) => {
      if (!values.agent) { err('missing --agent NAME'); return 2; }
      const config = loadConfig(g.config);
      agentMustExist(config, g.config, String(values.agent));
      const registry = buildAgentRegistry(config);
      const ttlSeconds = given(() => parseTtl(String(values.ttl ?? '15m')));
      const svid = await withIssuer(g.data, { issuer: process.env.AAM_ISSUER_URL },
        (issuer) => issueAgentSvid(issuer, registry, { agent: String(values.agent), ttlSeconds, audience: String(values.audience ?? 'aam') }));
      err(`JWT-SVID for ${svid.spiffeId}, expires ${new Date(svid.expiresAt * 1000).toISOString()}:`);
      out(svid.token);
      return 0;
    },
  },
  'identity join-token': {
    summary: 'create a one-time join token an agent exchanges for a JWT-SVID at POST /identity/v1/token',
    usage: 'aam identity join-token --agent NAME [--ttl 1h]',
    options: { agent: { type: 'string' }, ttl: { type: 'string' } },
    run: async ({ values, g }) => {
      const agent = String(values.agent ?? '');
      if (!agent) { err('missing --agent NAME'); return 2; }
      agentMustExist(loadConfig(g.config), g.config, agent);
      const ttlSeconds = given(() => parseTtl(String(values.ttl ?? '1h'), 7 * 86400));
      const t = await withJoinTokens(g.data, async (tokens) => tokens.create({ agent, ttlSeconds, createdBy: 'cli' }));
      err(`join token ${t.id} for ${agent}, single use, expires ${new Date(t.expiresAt * 1000).toISOString()}:`);
      out(t.token);
      return 0;
    },
  },
  'identity rotate': {
    summary: 'rotate aam\'s issuer signing keys (JWT-SVIDs and on-behalf-of assertions); old public keys stay published for 24 h',
    usage: 'aam identity rotate',
    run: async ({ g }) => {
      const fleet = Boolean(fleetEnv(process.env));
      const kid = await withIssuer(g.data, {}, async (issuer) => (await issuer.rotate()).kid);
      out(fleet ? `new signing key ${kid}; every replica of the fleet uses it within a second` : `new signing key ${kid}; restart or SIGHUP running gateways to publish it`);
      return 0;
    },
  },
  'identity import-keys': {
    summary: 'add issuer key files of another data dir (keys.json, obo-keys.json) to aam\'s key rings, retired: tokens they signed keep verifying',
    usage: 'aam identity import-keys FILE... [--ring svid|obo]   (keys.json: JWT-SVID ring, obo-keys.json: on-behalf-of ring)',
    args: ['FILE...'],
    options: { ring: { type: 'string' } },
    run: async ({ positionals, values, g }) => {
      if (positionals.length === 0) { err('name the key files: aam identity import-keys DATA/issuer/keys.json DATA/issuer/obo-keys.json'); return 2; }
      if (values.ring !== undefined && values.ring !== 'svid' && values.ring !== 'obo') { err(`--ring must be svid (JWT-SVIDs) or obo (on-behalf-of assertions), got "${String(values.ring)}"`); return 2; }
      // The ring is never guessed from the contents (both rings' files look alike): an assertion key must not verify JWT-SVIDs.
      const ringOf = (path: string): 'svid' | 'obo' | undefined => (values.ring as 'svid' | 'obo' | undefined) ?? ({ 'keys.json': 'svid', 'obo-keys.json': 'obo' } as const)[basename(path) as 'keys.json'];
      const unnamed = positionals.find((p) => ringOf(p) === undefined);
      if (unnamed) { err(`${unnamed}: not keys.json (JWT-SVID keys) or obo-keys.json (on-behalf-of keys); say which ring it belongs to with --ring svid|obo`); return 2; }
      // Every file checked before anything is written: one bad file imports nothing (exit 2, as every file given that cannot be used).
      const files = await Promise.all(positionals.map((p) => givenAsync(readIssuerKeyFile(p))));
      const fleet = Boolean(fleetEnv(process.env));
      const results = await withIssuer(g.data, {}, async (issuer) => {
        const done: Array<{ path: string; ring: 'svid' | 'obo'; r: KeyImport }> = [];
        for (const f of files) done.push({ path: f.path, ring: ringOf(f.path)!, r: await issuer.importKeys(ringOf(f.path)!, f) });
        return done;
      });
      for (const { path, ring, r } of results) {
        out(`${path} -> ${ring} ring: ${r.added.length} added${r.added.length ? ` (${r.added.join(', ')})` : ''}, ${r.present.length} already there, ${r.expired.length} past the grace period (not imported)`);
      }
      const added = results.reduce((n, x) => n + x.r.added.length, 0);
      if (added > 0) out(fleet ? 'every replica of the fleet verifies tokens signed with them within a second' : 'restart or SIGHUP running gateways to publish them');
      for (const { ring, r } of results) {
        if (r.added.length === 0) continue;
        const unrecorded = await recordCliAdmin(g.data, 'issuer_keys_import', ring, { added: r.added.join(',') });
        if (unrecorded) { err(unrecorded); return 1; }
      }
      return 0;
    },
  },
  usage: {
    summary: 'spend and tokens from the usage records',
    usage: 'aam usage [--by agent|team|model|route] [--since 7d|ISO] [--json]',
    options: { by: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean' } },
    run: async ({ values, g }) => {
      const by = String(values.by ?? 'agent');
      if (!['agent', 'team', 'model', 'route'].includes(by)) { err('--by must be agent, team, model or route'); return 2; }
      // Fleet (AAM_DATABASE_URL): every replica's rollups in PostgreSQL; otherwise this data dir's.
      const rows = await withUsage(g.data, (usage) => usage.summary(by as 'agent', since(values.since)));
      if (values.json) { out(JSON.stringify(rows, null, 2)); return 0; }
      if (rows.length === 0) { out(`no usage recorded since ${new Date(since(values.since)).toISOString()} (a gateway records each model call; try a longer --since)`); return 0; }
      // CACHE_READ / CACHE_WRITE: prompt-cache reads and writes, parts of IN_TOK priced apart.
      out([by.toUpperCase().padEnd(28), 'REQUESTS'.padStart(9), 'IN_TOK'.padStart(10), 'OUT_TOK'.padStart(10), 'CACHE_READ'.padStart(10), 'CACHE_WRITE'.padStart(11), 'COST_USD'.padStart(12), 'UNKNOWN'.padStart(8)].join(' '));
      for (const r of rows) {
        out([String(r[by] ?? '-').padEnd(28), String(r.requests).padStart(9), String(r.input_tokens ?? 0).padStart(10), String(r.output_tokens ?? 0).padStart(10),
          String(r.cache_read_tokens ?? 0).padStart(10), String(r.cache_write_tokens ?? 0).padStart(11),
          (r.cost_usd === null ? '-' : Number(r.cost_usd).toFixed(6)).padStart(12), String(r.unknown_cost_requests ?? 0).padStart(8)].join(' '));
      }
      return 0;
    },
  },
};

/** The CLI talks to a running gateway's admin API for state that lives in the server. */
async function admin(method: string, path: string, body?: unknown): Promise<unknown> {
  const base = process.env.AAM_ADMIN_URL || `http://127.0.0.1:${process.env.AAM_PORT || 8080}`;
  // A person's OpenID Connect ID token first: the action is then recorded under their name and role.
  const token = process.env.AAM_OIDC_TOKEN || process.env.AAM_ADMIN_TOKEN;
  if (!token) throw new Error('set AAM_OIDC_TOKEN (your ID token) or AAM_ADMIN_TOKEN (break-glass), and AAM_ADMIN_URL if the gateway is not on localhost:8080');
  let res: Response;
  try {
    res = await fetch(base + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    const from = process.env.AAM_ADMIN_URL ? 'AAM_ADMIN_URL' : process.env.AAM_PORT ? 'AAM_PORT' : 'the default: neither AAM_ADMIN_URL nor AAM_PORT is set';
    throw new Error(`cannot reach the gateway at ${base} (${from}; ${(e as Error).message}): start it, or set AAM_ADMIN_URL to where it listens (e.g. http://127.0.0.1:8080)`);
  }
  const json = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
  if (!res.ok) throw new Error(json.error?.message ?? `HTTP ${res.status}`);
  return json;
}

const printJson = (v: unknown) => { out(JSON.stringify(v, null, 2)); return 0; };
/** --json: the data as the admin API answers it; otherwise the lines made for people. */
const show = (values: Record<string, unknown>, data: unknown, lines: () => string[]): number => {
  if (values.json) return printJson(data);
  for (const l of lines()) out(l);
  return 0;
};
const JSON_FLAG = { json: { type: 'boolean' } } as const;
const toolPath = (p: string[]) => `/admin/v1/tools/${encodeURIComponent(p[0])}/${encodeURIComponent(p[1])}`;

type ToolDiff = { server: string; tool: string; status: string; changed: string[]; acceptedDigest?: string; currentDigest?: string; acceptedBy?: string; acceptedAt?: string; accepted?: Record<string, unknown>; current?: Record<string, unknown> };
type Approval = { id: string; status: string; agent: string; target: string; resource: string; action: string; reason: string; createdAt: string; expiresAt: string; decidedBy?: string; decidedAt?: string };
const digest = (d?: string) => (d ? d.slice(0, 19) : '-');

/** A tool definition's review: what changed, field by field, accepted then current. */
function diffLines(d: ToolDiff): string[] {
  const lines = [`${d.server}/${d.tool}: ${d.status}${d.changed.length ? ` (${d.changed.join(', ')} changed)` : ''}`,
    `  accepted: ${digest(d.acceptedDigest)}${d.acceptedBy ? ` by ${d.acceptedBy} ${ago(d.acceptedAt)}` : ''}`, `  current:  ${digest(d.currentDigest)}`];
  for (const f of d.changed) lines.push(`${f}:`, `  - ${JSON.stringify(d.accepted?.[f] ?? null)}`, `  + ${JSON.stringify(d.current?.[f] ?? null)}`);
  if (d.status === 'changed') lines.push(`withheld from agents until accepted: aam tools accept ${d.server} ${d.tool}`);
  return lines;
}

Object.assign(extraCommands, {
  'tools flagged': {
    summary: 'MCP tools withheld because their definition changed (rug-pull defence)', usage: 'aam tools flagged [--json]', options: JSON_FLAG,
    run: async ({ values }) => {
      const { data } = await admin('GET', '/admin/v1/tools/flagged') as { data: ToolDiff[] };
      return show(values, data, () => data.length === 0
        ? ['no tools withheld: every MCP tool matches the definition accepted for it (a changed one is listed here)']
        : [...table(['SERVER', 'TOOL', 'CHANGED', 'ACCEPTED BY', 'ACCEPTED'], data.map((d) => [d.server, d.tool, d.changed.join(',') || '-', d.acceptedBy ?? '-', ago(d.acceptedAt)])),
          '', 'review one: aam tools diff SERVER TOOL; offer it again: aam tools accept SERVER TOOL']);
    },
  },
  'tools diff': {
    summary: 'show how a tool definition changed since it was accepted', usage: 'aam tools diff SERVER TOOL [--json]', args: ['SERVER', 'TOOL'], options: JSON_FLAG,
    run: async ({ positionals, values }) => {
      if (positionals.length < 2) { err('usage: aam tools diff SERVER TOOL'); return 2; }
      const d = await admin('GET', `${toolPath(positionals)}/diff`) as ToolDiff;
      return show(values, d, () => diffLines(d));
    },
  },
  'tools accept': {
    summary: 'accept the current definition of a tool so it is offered again', usage: 'aam tools accept SERVER TOOL [--json]', args: ['SERVER', 'TOOL'], options: JSON_FLAG,
    run: async ({ positionals, values }) => {
      if (positionals.length < 2) { err('usage: aam tools accept SERVER TOOL'); return 2; }
      const d = await admin('POST', `${toolPath(positionals)}/accept`) as ToolDiff;
      return show(values, d, () => [`accepted ${d.server}/${d.tool} (${digest(d.currentDigest)}); agents are offered it again`]);
    },
  },
  'approvals list': {
    summary: 'tool calls held for approval', usage: 'aam approvals list [--status pending|approved|rejected|used|expired] [--json]   (default: all)', options: { status: { type: 'string' }, ...JSON_FLAG },
    run: async ({ values }) => {
      // Checked here as the other flags are (exit 2), not left to the gateway's 400 (exit 1).
      if (values.status !== undefined && !(APPROVAL_STATUSES as readonly string[]).includes(String(values.status))) { err(`--status must be one of ${APPROVAL_STATUSES.join(', ')}, not "${String(values.status)}"`); return 2; }
      const { data } = await admin('GET', `/admin/v1/approvals${values.status ? `?status=${encodeURIComponent(String(values.status))}` : ''}`) as { data: Approval[] };
      return show(values, data, () => data.length === 0
        ? [`no ${values.status ? `${String(values.status)} ` : ''}approvals: a call is held here when a policy rule with \`approval: required\` matches it`]
        : [...table(['ID', 'STATUS', 'AGENT', 'CALL', 'REASON', 'CREATED', 'EXPIRES'], data.map((a) => [a.id, a.status, a.agent, `${a.target} ${a.action}`, a.reason, ago(a.createdAt), ago(a.expiresAt)])),
          ...(data.some((a) => a.status === 'pending') ? ['', 'decide: aam approvals approve ID | aam approvals reject ID'] : [])]);
    },
  },
  'approvals approve': {
    summary: 'approve a held tool call (the agent retries it within the window)', usage: 'aam approvals approve ID [--json]', args: ['ID'], options: JSON_FLAG,
    run: async ({ positionals, values }) => {
      if (!positionals[0]) { err('missing approval ID (see: aam approvals list --status pending)'); return 2; }
      const a = await admin('POST', `/admin/v1/approvals/${encodeURIComponent(positionals[0])}/approve`) as Approval;
      return show(values, a, () => [`approved ${a.id}: ${a.agent}'s ${a.target} ${a.action}; its retry of the same call goes through until ${a.expiresAt} (${ago(a.expiresAt)})`]);
    },
  },
  'approvals reject': {
    summary: 'reject a held tool call', usage: 'aam approvals reject ID [--json]', args: ['ID'], options: JSON_FLAG,
    run: async ({ positionals, values }) => {
      if (!positionals[0]) { err('missing approval ID (see: aam approvals list --status pending)'); return 2; }
      const a = await admin('POST', `/admin/v1/approvals/${encodeURIComponent(positionals[0])}/reject`) as Approval;
      return show(values, a, () => [`rejected ${a.id}: ${a.agent}'s ${a.target} ${a.action} stays refused`]);
    },
  },
} satisfies Record<string, Command>);

Object.assign(extraCommands, {
  'credentials set': {
    summary: 'store a new version of a `stored: true` credential, read from stdin (never from argv)',
    usage: 'printf %s "$SECRET" | aam credentials set NAME',
    args: ['NAME'],
    run: async ({ positionals, g }) => {
      const name = positionals[0];
      if (!name) { err('missing credential NAME'); return 2; }
      if (process.stdin.isTTY) err(`enter the secret for ${name}, then press Ctrl-D:`);
      const secret = await readSecretFromStdin();
      const { r, read } = await withVault(g, async (vault) => ({ r: await vault.set(name, secret), read: vault.list().some((c) => c.name === name) }));
      out(`stored ${r.name} version ${r.version} (${r.created}); running gateways pick it up within a second`);
      // Stored ahead of its Credential document is allowed (a stored one must have a value before it loads), but a typo must show.
      if (!read) err(`note: ${g.config} has no Credential "${name}", so nothing reads this value until a Credential with \`stored: true\` of that name is added (a typo?)`);
      const unrecorded = await recordCliAdmin(g.data, 'credential_set', r.name, { version: r.version });
      if (unrecorded) { err(unrecorded); return 1; }
      return 0;
    },
  },
  'credentials list': {
    summary: 'credential names, sources, versions and last use — never values',
    usage: 'aam credentials list [--json]',
    options: { json: { type: 'boolean' } },
    run: async ({ values, g }) => {
      const list = await withVault(g, (vault) => Promise.resolve(vault.list()));
      if (values.json) return printJson(list);
      if (list.length === 0) { out(`no credentials: ${g.config} has no Credential document (add one, then \`aam credentials set NAME\` for a \`stored: true\` one)`); return 0; }
      const rows = table(['NAME', 'SOURCE', 'KIND', 'VER', 'STATUS', 'LAST USED'], list.map((c) => [c.name, c.source, c.kind, String(c.version ?? '-'), c.status, ago(c.last_used)]));
      out(rows[0]);
      list.forEach((c, i) => {
        out(rows[i + 1]);
        for (const w of [...(c.problem ? [c.problem] : []), ...c.warnings]) out(`  ! ${w}`);
      });
      return 0;
    },
  },
} satisfies Record<string, Command>);

Object.assign(extraCommands, auditCommands, importCommands, policyDiffCommands);
