// `aam audit verify|export|query|show|public-key|prune`. Shaped like src/cli/main.ts's Command
// (structurally, so audit does not import the cli layer); wire with
// `Object.assign(extraCommands, auditCommands)` in src/cli/commands.ts.
import type { ParseArgsConfig } from 'node:util';
import { accessSync, constants, createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { verifyDatabase, verifyExport } from './verify.ts';
import type { VerifyResult } from './verify.ts';
import { newestCheckpoint, readCheckpointSource } from './anchor.ts';
import type { Checkpoint } from './checkpoint.ts';
import { exportJsonl } from './export.ts';
import { queryEvents, describeEvent, decisionArg, limitArg, planeArg } from './query.ts';
import { delegationTree, describeTree, type RequestNode } from './tree.ts';
import { toOcsf } from './ocsf.ts';
import { AUDIT_DB_FILE, auditDbPath, openAuditDb, readEvents } from './store.ts';
import { recoverUncommitted } from './log.ts';
import { loadOrCreateSigningKey, signingKeyPath } from './keys.ts';
import { openAuditLog } from './log.ts';
import { applyRetention } from './retention.ts';
import { flagTime, parseDurationSeconds } from '../config/duration.ts';
import { loadConfigHere as loadConfig } from '../config/isolated.ts';
import type { AuditEvent } from './event.ts';
import { str } from '../lib/json.ts';
import { fleetDrivers } from '../store/fleet-lazy.ts';
import { databaseTls } from '../store/fleet-tls.ts';
import type { Sql } from '../store/postgres.ts';
import { verifyFleet, type FleetVerifyResult } from './fleet-verify.ts';
import { fleetSigningKey, parseFleetCheckpoints, queryFleetEvents, SIGNING_KEY_KEK_INFO, type FleetCheckpoint } from './fleet-log.ts';
import { verifyFleetFile } from './fleet-verify.ts';
import { exportFleetJsonl } from './fleet-export.ts';
import { pruneFleet } from './fleet-retention.ts';
import { keyIdOf } from './keys.ts';
import { loadMasterKey } from '../credentials/master-key.ts';
import { errMsg } from '../lib/error-message.ts';
import { given, UsageError } from '../lib/usage-error.ts';

type Values = Record<string, string | boolean | string[] | undefined>;
type Format = 'text' | 'json' | 'jsonl';
const FORMAT_FLAGS = { json: { type: 'boolean' }, jsonl: { type: 'boolean' } } as const;
export interface AuditCommand {
  summary: string;
  usage: string;
  options?: ParseArgsConfig['options'];
  args?: readonly string[];
  run(args: { values: Values; positionals: string[]; g: { config: string; data: string } }): Promise<number> | number;
}

const out = (line: string): void => { process.stdout.write(line + '\n'); };
const err = (line: string): void => { process.stderr.write(line + '\n'); };

/** --since as ISO-8601 (given as an ISO time or a duration ago like 24h or 7d); undefined when not given. */
function sinceFlag(v: unknown): string | undefined {
  const t = flagTime('--since', v);
  return t === undefined ? undefined : new Date(t).toISOString();
}

/** The agents of a team in the config's Agent documents (as the admin API's ?team= resolves it from the running config). */
function teamAgents(config: string, team: string): string[] {
  return [...loadConfig(config).agents.values()].filter((a) => a.spec.team === team).map((a) => a.name);
}

function configTeams(config: string): string[] {
  return [...new Set([...loadConfig(config).agents.values()].map((a) => a.spec.team).filter((t): t is string => typeof t === 'string'))].sort();
}

export const auditCommands: Record<string, AuditCommand> = {
  'audit verify': {
    summary: 'verify the audit hash chain and signed checkpoints (database or exported file), optionally against a checkpoint kept elsewhere',
    usage: 'aam audit verify [--public-key PEM_FILE] [--file EXPORT.jsonl] [--checkpoint FILE|URL|JSON] [--json]   (exit 0 = intact, 1 = tampered or cut, 2 = a file or checkpoint given cannot be read)',
    options: { 'public-key': { type: 'string' }, file: { type: 'string' }, checkpoint: { type: 'string' }, json: { type: 'boolean' } },
    run: async ({ values, g }) => {
      const keyFile = str(values['public-key']);
      const file = str(values.file);
      // A file that cannot be read is a usage error (2), never "tampered" (1).
      for (const [path, flag, what] of [[keyFile, '--public-key', 'the PEM from `aam audit public-key`'], [file, '--file', 'an `aam audit export` or sink JSONL file']] as const) {
        const why = path === undefined ? undefined : unreadable(path);
        if (why) { err(`${flag} ${path}: ${why}; give ${what}`); return 2; }
      }
      const pem = keyFile ? readFileSync(keyFile, 'utf8') : undefined;
      const source = str(values.checkpoint);
      const fleetUrl = process.env.AAM_DATABASE_URL;
      if (fleetUrl && !file) {
        let given: FleetCheckpoint[] = [];
        if (source) {
          try { given = parseFleetCheckpoints(/^https?:\/\//i.test(source) ? await (await fetch(source, { signal: AbortSignal.timeout(10_000) })).text() : readFileSync(source, 'utf8')); } catch (e) {
            err(`--checkpoint ${source}: ${errMsg(e)}; give a copy of a replica's audit-checkpoints.jsonl (its fleet_checkpoint lines)`);
            return 2;
          }
          if (given.length === 0) { err(`--checkpoint ${source}: no fleet_checkpoint line in it; give a copy of a replica's audit-checkpoints.jsonl`); return 2; }
        }
        const fr = await withFleet(fleetUrl, (sql) => verifyFleet(sql, given));
        if (values.json) out(JSON.stringify(fr, null, 2));
        else printFleetVerify(fr);
        return fr.ok ? 0 : 1;
      }
      // A fleet export or a fleet sink's file (its event lines name their replica chain).
      const text = file ? readFileSync(file, 'utf8') : '';
      if (file && FLEET_FILE.test(text)) {
        if (!pem) { err('verifying a fleet export needs the public key(s) you trust: --public-key FILE (from `aam audit public-key` with AAM_DATABASE_URL set)'); return 2; }
        const fr = await verifyFleetFile(text, pem.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [], keyIdOf);
        if (values.json) out(JSON.stringify(fr, null, 2));
        else printFleetVerify(fr, file);
        return fr.ok ? 0 : 1;
      }
      let outside: Checkpoint | undefined;
      if (source) {
        try {
          outside = newestCheckpoint(await readCheckpointSource(source));
        } catch (e) {
          err(`--checkpoint ${source}: ${errMsg(e)}; give a copy of audit-checkpoints.jsonl (or one line of it), or an http(s) URL serving one`);
          return 2;
        }
      }
      let r: VerifyResult;
      if (file) {
        if (!pem) { err('verifying an export needs the public key you trust: --public-key FILE (from `aam audit public-key`)'); return 2; }
        r = verifyExport(text, pem, outside);
      } else {
        await recover(g.data);
        if (noTrail(g.data)) return 1;
        const progress = progressLine('verified', 'events');
        r = verifyDatabase(g.data, pem, progress, outside);
        progress.done();
      }
      if (values.json) out(JSON.stringify(r, null, 2));
      else printVerify(r, file ?? g.data);
      return r.ok ? 0 : 1;
    },
  },
  'audit export': {
    summary: 'export the audit trail as verifiable JSONL (or OCSF API Activity JSON lines)',
    usage: 'aam audit export [--since ISO-8601|24h|7d] [--out FILE] [--format native|ocsf]',
    options: { since: { type: 'string' }, out: { type: 'string', short: 'o' }, format: { type: 'string' } },
    run: async ({ values, g }) => {
      const format = str(values.format) ?? 'native';
      if (format !== 'native' && format !== 'ocsf') { err(`--format must be native or ocsf, not "${format}"`); return 2; }
      // Checked before the output file is made.
      const since = sinceFlag(values.since);
      const fleetUrl = process.env.AAM_DATABASE_URL;
      if (!fleetUrl) {
        await recover(g.data);
        if (noTrail(g.data)) return 1;
      }
      const path = str(values.out);
      const stream: Writable = path ? createWriteStream(path, { mode: 0o600 }) : process.stdout;
      if (fleetUrl) {
        // Fleet mode: every replica's chain, from PostgreSQL, whichever machine runs the command.
        const progress = progressLine('exported', 'events');
        await withFleet(fleetUrl, async (sql) => {
          if (format === 'native') {
            const s = await exportFleetJsonl(sql, { since, out: stream, onProgress: progress });
            progress.done();
            err(`exported ${s.events} events of ${s.chains} replica chains, ${s.checkpoints} checkpoints and ${s.retention} retention records${path ? ' to ' + path : ''}`);
            return;
          }
          for await (const rows of sql<Array<{ body: string }>>`SELECT body FROM audit_trail ${since ? sql`WHERE ts >= ${since}` : sql``} ORDER BY ts, replica, seq`.cursor(2000)) {
            for (const r of rows) if (!stream.write(JSON.stringify(toOcsf(JSON.parse(r.body) as AuditEvent)) + '\n')) await once(stream, 'drain');
          }
        });
      } else if (format === 'native') {
        const progress = progressLine('exported', 'events');
        const s = await exportJsonl(g.data, { since, out: stream, onProgress: progress });
        progress.done();
        err(`exported ${s.events} events and ${s.checkpoints} checkpoints from seq ${s.fromSeq}${path ? ' to ' + path : ''}`);
      } else {
        const db = openAuditDb(g.data);
        try {
          for (const e of readEvents(db, { since })) {
            if (!stream.write(JSON.stringify(toOcsf(JSON.parse(e.text) as AuditEvent)) + '\n')) await once(stream, 'drain');
          }
        } finally { db.close(); }
      }
      if (path) { stream.end(); await once(stream, 'finish'); }
      return 0;
    },
  },
  'audit query': {
    summary: 'list audit events (newest first)',
    usage: 'aam audit query [--agent NAME] [--team TEAM] [--since ISO-8601|24h|7d] [--decision allow|deny|approval_required] [--plane model|tool|a2a|admin] [--request-id ID] [--trace TRACE_ID] [--type TYPE] [--limit N] [--json | --jsonl]   (--json: one JSON array; --jsonl: one event per line)',
    options: { agent: { type: 'string' }, team: { type: 'string' }, since: { type: 'string' }, decision: { type: 'string' }, plane: { type: 'string' }, 'request-id': { type: 'string' }, trace: { type: 'string' }, type: { type: 'string' }, limit: { type: 'string' }, ...FORMAT_FLAGS },
    run: async ({ values, g }) => {
      const format = outputFormat(values);
      given(() => { if (values.decision !== undefined) decisionArg(String(values.decision)); if (values.plane !== undefined) planeArg(String(values.plane)); });
      const limit = given(() => limitArg(str(values.limit)));
      const since = sinceFlag(values.since);
      const team = str(values.team);
      const agents = team === undefined ? undefined : teamAgents(g.config, team);
      if (agents?.length === 0) { err(`no Agent in ${g.config} has team "${team}"; teams there: ${configTeams(g.config).join(', ') || '(none)'}`); return 2; }
      const fleetUrl = process.env.AAM_DATABASE_URL;
      if (fleetUrl) {
        const events = await withFleet(fleetUrl, (sql) => queryFleetEvents(sql, {
          agent: str(values.agent), agents, since, decision: str(values.decision), plane: str(values.plane),
          requestId: str(values['request-id']), traceId: str(values.trace), type: str(values.type), limit,
        }));
        printEvents(events as unknown as AuditEvent[], format);
        return 0;
      }
      await recover(g.data);
      if (noTrail(g.data)) return 1;
      const db = openAuditDb(g.data);
      try {
        const events = queryEvents(db, {
          agent: str(values.agent), agents, since, decision: str(values.decision), plane: str(values.plane),
          requestId: str(values['request-id']), traceId: str(values.trace), type: str(values.type), limit,
        });
        printEvents(events, format);
        return 0;
      } finally { db.close(); }
    },
  },
  'audit show': {
    summary: 'print the whole chain of one request: identity -> decision -> credential -> upstream -> outcome',
    usage: 'aam audit show REQUEST_ID [--json | --jsonl]   (--json: one JSON object, the events of the A2A calls it made under children; --jsonl: one event per line)',
    args: ['REQUEST_ID'],
    options: FORMAT_FLAGS,
    run: async ({ values, positionals, g }) => {
      const format = outputFormat(values);
      await recover(g.data);
      const id = positionals[0];
      if (!id) { err('missing REQUEST_ID (the x-request-id of the request, or request_id in `aam audit query`)'); return 2; }
      const fleetUrl = process.env.AAM_DATABASE_URL;
      if (fleetUrl) {
        const events = (await withFleet(fleetUrl, (sql) => queryFleetEvents(sql, { requestId: id, limit: 10_000 }))).reverse();
        if (events.length === 0) { err(`no audit events for request "${id}" in the fleet trail`); return 1; }
        printTree({ requestId: id, events: events as unknown as AuditEvent[], children: [] }, format);
        return 0;
      }
      if (noTrail(g.data)) return 1;
      const db = openAuditDb(g.data);
      try {
        const tree = delegationTree(db, id);
        if (tree.events.length === 0) { err(`no audit events for request "${id}"`); return 1; }
        printTree(tree, format);
        return 0;
      } finally { db.close(); }
    },
  },
  'audit public-key': {
    summary: 'print the public key that verifies audit checkpoints (give it to auditors)',
    usage: 'aam audit public-key',
    run: async ({ g }) => {
      const fleetUrl = process.env.AAM_DATABASE_URL;
      if (fleetUrl) {
        // Fleet mode: the keys that sign fleet checkpoints (one per master key the fleet has run with).
        const keys = await withFleet(fleetUrl, (sql) => sql<Array<{ public_pem: string }>>`SELECT public_pem FROM audit_keys ORDER BY created_at`);
        if (keys.length === 0) { err('the fleet has no audit signing key yet: it is created when the first replica starts'); return 1; }
        for (const k of keys) out(k.public_pem.trimEnd());
        return 0;
      }
      const path = signingKeyPath(g.data);
      try {
        if (!existsSync(path)) throw new Error('no such file');
        out(loadOrCreateSigningKey(path).publicKeyPem.trimEnd());
      } catch (e) {
        const db = openAuditDb(g.data);
        const stored = db.prepare("SELECT value FROM audit_meta WHERE key LIKE 'public_key:%' LIMIT 1").get();
        db.close();
        if (!stored) { err(`cannot read the audit signing key ${path}: ${String(e)}`); return 1; }
        err(`warning: key file unreadable (${String(e)}); printing the key stored with the audit data`);
        out(String(stored.value).trimEnd());
      }
      return 0;
    },
  },
  'audit prune': {
    summary: 'delete audit events older than a time, keeping the rest verifiable (signed retention checkpoint)',
    usage: 'aam audit prune --before ISO-8601 | --older-than 90d',
    options: { before: { type: 'string' }, 'older-than': { type: 'string' } },
    run: async ({ values, g }) => {
      const cut = cutoff(str(values.before), str(values['older-than']));
      if (!cut) { err('give --before ISO-8601 or --older-than 90d (or 12h, 30m)'); return 2; }
      const fleetUrl = process.env.AAM_DATABASE_URL;
      if (fleetUrl) {
        // Signing the retention record needs the fleet's key, opened with the master key (AAM_MASTER_KEY).
        const kek = loadMasterKey({ dataDir: g.data, env: process.env }).derive(SIGNING_KEY_KEK_INFO);
        const r = await withFleet(fleetUrl, async (sql) => pruneFleet(sql, await fleetSigningKey(sql, kek), cut));
        if (!r.record) { out('no event is older than the cut (or every older one still waits for a sink)'); return 0; }
        out(`dropped ${r.deletedEvents} events of ${r.chains} replica chain(s); each now starts at a signed retention cut:`);
        out(JSON.stringify({ kind: 'fleet_retention', ...r.record }));
        return 0;
      }
      const log = openAuditLog({ dataDir: g.data });
      try {
        const r = await applyRetention(log, cut, { keepUndelivered: true });
        out(r.cutSeq
          ? `dropped ${r.segments} segment(s), ${r.deletedEvents} events up to seq ${r.cutSeq}; the chain now starts at a signed retention checkpoint`
          : 'no whole segment is older than the cut (the segment being written is never dropped)');
      } finally { await log.close(); }
      return 0;
    },
  },
};

/**
 * Progress of long CLI work on stderr, at most every 2 s and only on a terminal (scripts reading
 * stdout, and logs, get no noise).
 */
function progressLine(verb: string, unit: string): ((n: number, total?: number) => void) & { done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = Date.now();
  let shown = false;
  const show = (n: number, total?: number): void => {
    if (!tty || Date.now() - last < 2000) return;
    last = Date.now();
    shown = true;
    process.stderr.write(`\r${verb} ${n.toLocaleString('en-US')}${total ? ` of ${total.toLocaleString('en-US')}` : ''} ${unit}...`);
  };
  return Object.assign(show, { done: () => { if (shown) process.stderr.write('\n'); } });
}

/**
 * True (and said) when the data dir holds no trail: opening it would create an empty one, so a
 * mistyped --data (or a trail deleted whole) would read as an intact trail of 0 events.
 */
/** Why a file named on the command line cannot be read, or undefined. */
function unreadable(path: string): string | undefined {
  try {
    return statSync(path).isFile() ? (accessSync(path, constants.R_OK), undefined) : 'not a file';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : errMsg(e);
  }
}

function noTrail(dataDir: string): boolean {
  if (existsSync(auditDbPath(dataDir))) return false;
  err(`no audit trail in ${dataDir} (no ${AUDIT_DB_FILE}): give the gateway's data dir (--data or AAM_DATA_DIR); if the trail was there, it is gone`);
  return true;
}

/** Events a killed gateway wrote to its segment file but never committed belong in the trail before anyone reads it. */
async function recover(dataDir: string): Promise<void> {
  const n = await recoverUncommitted(dataDir);
  if (n > 0) err(`recovered ${n} event(s) a gateway wrote to its segment file but stopped before committing`);
}

/** The prune cut from its flags; a value that is no time is the caller's fault (UsageError, exit 2), as for --since. */
function cutoff(before: string | undefined, olderThan: string | undefined): Date | undefined {
  if (before) {
    const d = new Date(before);
    if (Number.isNaN(d.getTime())) throw new UsageError(`--before: "${before}" is not an ISO-8601 time (like 2026-01-31T00:00:00Z); or give --older-than 90d`);
    return d;
  }
  return olderThan ? new Date(Date.now() - given(() => parseDurationSeconds(olderThan, '--older-than')) * 1000) : undefined;
}

function printVerify(r: VerifyResult, what: string): void {
  if (r.ok) {
    out(`OK: ${what}: ${r.events} events (seq ${r.firstSeq}..${r.lastSeq}), ${r.checkpoints} checkpoints, chain from ${r.anchor === 'genesis' ? 'genesis' : `${r.anchor.type} checkpoint at ${r.anchor.tree_size}`}`);
    if (r.unsignedTail) out(`note: the last ${r.unsignedTail} events are chained but not yet covered by a signed checkpoint`);
    if (r.outside?.covered) out(`OK: the trail holds every event up to the outside checkpoint at seq ${r.outside.tree_size} (signed ${r.outside.time}) with the hash it signed`);
    else if (r.outside) out(`note: the outside checkpoint at seq ${r.outside.tree_size} is older than the retention cut, so nothing it signed is left to compare and it proves nothing; give a newer one`);
    else out('note: without an outside checkpoint a cut tail, or a trail rewritten and re-signed with the signing key, goes unnoticed: add --checkpoint <copy of audit-checkpoints.jsonl>');
  } else {
    const e = r.firstError;
    out(`TAMPERED: ${what}: ${e?.kind} at seq ${e?.seq}: ${e?.message}`);
  }
  if (r.keySource !== 'given') {
    out(`warning: checked with the ${r.keySource === 'key_file' ? "signing key file's public half" : 'public key stored with the data'}; pass --public-key with a copy kept elsewhere for an independent check`);
    if (r.outside) out('warning: so the outside checkpoint proves little: whoever can rewrite the data dir may hold that key too and sign a checkpoint for a rewritten trail');
  }
}

/** Fleet mode (AAM_DATABASE_URL): the trail is in PostgreSQL, whichever machine runs the command. */
async function withFleet<T>(url: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const drivers = await fleetDrivers();
  const sql = drivers.connectPostgres(url, 2, { tls: databaseTls(process.env, url) });
  try {
    await drivers.requireSchema(sql).catch((e: unknown) => { throw drivers.connectionError(e); });
    return await fn(sql);
  } finally { await sql.end({ timeout: 2 }); }
}

/** Lines only a fleet trail's file has: events naming their chain, fleet checkpoints and retention records. */
const FLEET_FILE = /^\{"kind":"(event","replica"|fleet_chain"|fleet_checkpoint"|fleet_retention")/m;

function printFleetVerify(r: FleetVerifyResult, file?: string): void {
  if (r.ok) {
    out(`OK: fleet trail${file ? ` ${file}` : ''}: ${r.events} events in ${r.chains} replica chains, ${r.checkpoints} signed checkpoints`);
    if (r.pruned) out(`note: ${r.pruned} chain(s) start at a signed retention cut (aam audit prune)`);
    if (r.partial) out(`note: ${r.partial} chain(s) start after a signed checkpoint (an export --since)`);
    if (r.unsignedTail) out(`note: the last ${r.unsignedTail} events are chained but not yet covered by a signed checkpoint`);
    if (r.outside) out(`OK: the trail holds every chain head the ${r.outside} given checkpoint(s) signed`);
    else if (!file) out('note: without an outside checkpoint a trail cut short together with its checkpoint rows goes unnoticed: add --checkpoint <copy of a replica\'s audit-checkpoints.jsonl>');
  } else {
    for (const e of r.errors) out(`TAMPERED: fleet trail: ${e.kind} in replica ${e.replica} at seq ${e.seq}: ${e.message}`);
  }
  if (!file) out('warning: checked with the public keys stored in the fleet database; keep a copy of a recent checkpoint elsewhere for an independent check');
}

function flatten(n: RequestNode): AuditEvent[] {
  return [...n.events, ...n.children.flatMap(flatten)];
}

/** --json is one JSON document, as every command's (jq, JSON.parse); --jsonl one event per line, as exports are. */
function outputFormat(values: Values): Format {
  if (values.json && values.jsonl) throw new UsageError('give --json (one JSON document) or --jsonl (one event per line), not both');
  return values.json ? 'json' : values.jsonl ? 'jsonl' : 'text';
}

function printEvents(events: AuditEvent[], format: Format): void {
  if (format === 'json') { out(JSON.stringify(events, null, 2)); return; }
  for (const e of events) out(format === 'jsonl' ? JSON.stringify(e) : describeEvent(e));
}

/** One request's events with, under children, those of the A2A calls it made (and theirs). */
const treeDocument = (n: RequestNode): unknown => ({ request_id: n.requestId, events: n.events, children: n.children.map(treeDocument) });

function printTree(tree: RequestNode, format: Format): void {
  if (format === 'json') out(JSON.stringify(treeDocument(tree), null, 2));
  // The request's own events, then (indented) what agents did while serving its A2A calls.
  else if (format === 'jsonl' || tree.children.length === 0) printEvents(flatten(tree), format);
  else for (const line of describeTree(tree)) out(line);
}
