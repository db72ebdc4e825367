// `aam policy diff OLD NEW [--against-trail 7d]`: exit 0 when nothing would change, 1 when
// something would (like diff(1)), 2 when the arguments or inputs are wrong.
import { createReadStream, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from './command.ts';
import { ConfigError, formatIssues } from '../config/errors.ts';
import { loadConfigHere as loadConfig } from '../config/isolated.ts';
import { compilePolicies } from '../policy/compile.ts';
import { diffAgainstTrail, diffCapabilities, type DiffSide } from '../policy/diff.ts';
import { sinceTime } from '../gateway/usage.ts';
import { auditDbPath, openAuditDb, readEvents, toEvent } from '../audit/store.ts';
import { recoverUncommitted } from '../audit/log.ts';
import { fleetEventsSince } from '../audit/fleet-log.ts';
import { fleetDrivers } from '../store/fleet-lazy.ts';
import { databaseTls } from '../store/fleet-tls.ts';

const out = (line: string) => process.stdout.write(line + '\n');
const err = (line: string) => process.stderr.write(line + '\n');

/** Event types that carry a decision (the key test skips every other block unread). */
const DECISION_TYPES = new Set(['decision', 'model_call', 'a2a_call', 'tool.decision']);

/** Decision events of an `aam audit export` file (native JSONL) at or after `since`, e.g. a fleet's trail. */
async function exportedDecisions(file: string, since: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  let n = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    n++;
    if (!line.trim()) continue;
    let e: unknown;
    try { e = JSON.parse(line); } catch { throw new Error(`line ${n} is not JSON; give a native export (aam audit export), not --format ocsf`); }
    if (typeof e !== 'object' || e === null) throw new Error(`line ${n} is not an audit event`);
    const ev = e as Record<string, unknown>;
    if (DECISION_TYPES.has(String(ev.type)) && String(ev.time ?? '') >= since) out.push(ev);
  }
  return out;
}

function side(path: string, which: string): DiffSide {
  if (!existsSync(path)) throw new Error(`${which} config ${path} does not exist`);
  try {
    const config = loadConfig(path);
    return { config, compiled: compilePolicies(config) };
  } catch (e) {
    if (e instanceof ConfigError) throw new Error(`${which} config ${path} is not valid:\n${formatIssues(e.issues)}`);
    throw e;
  }
}

export const policyDiffCommands: Record<string, Command> = {
  'policy diff': {
    summary: 'what a config change would change: replay the trail\'s recent decisions under NEW (--against-trail), or compare what each agent may do',
    usage: 'aam policy diff OLD.yaml NEW.yaml [--against-trail 7d|ISO [--data D | --file EXPORT.jsonl]] [--json]  (with AAM_DATABASE_URL: the fleet trail)   (exit 0: no change, 1: changes, 2: error)',
    args: ['OLD.yaml', 'NEW.yaml'],
    options: { 'against-trail': { type: 'string' }, file: { type: 'string' }, json: { type: 'boolean' } },
    run: async ({ values, positionals, g }) => {
      if (positionals.length !== 2) { err('usage: aam policy diff OLD.yaml NEW.yaml [--against-trail 7d]  (give exactly two config files)'); return 2; }
      let old: DiffSide, next: DiffSide;
      try {
        old = side(positionals[0], 'OLD');
        next = side(positionals[1], 'NEW');
      } catch (e) { err(`error: ${(e as Error).message}`); return 2; }
      const window = values['against-trail'];
      if (window === undefined && values.file !== undefined) { err('--file is the trail to replay: give --against-trail too (e.g. --against-trail 7d)'); return 2; }
      if (window === undefined) {
        const r = diffCapabilities(old, next);
        if (values.json) out(JSON.stringify(r.changes, null, 2)); else for (const l of r.lines) out(l);
        return r.changes.length ? 1 : 0;
      }
      let since: number;
      try { since = sinceTime(String(window)); } catch (e) { err(`--against-trail: ${(e as Error).message}`); return 2; }
      if (since > Date.now()) { err(`--against-trail ${String(window)} is in the future; give a window like 7d or a past ISO time`); return 2; }
      const report = (r: ReturnType<typeof diffAgainstTrail>): number => {
        if (values.json) out(JSON.stringify({ replayed: r.replayed, changed: r.changed, not_reproduced: r.notReproduced, changes: r.changes }, null, 2));
        else for (const l of r.lines) out(l);
        return r.changed ? 1 : 0;
      };
      if (values.file !== undefined) {
        const file = String(values.file);
        if (!existsSync(file)) { err(`--file ${file} does not exist; write one with \`aam audit export --out FILE\``); return 2; }
        let events: Record<string, unknown>[];
        try { events = await exportedDecisions(file, new Date(since).toISOString()); } catch (e) { err(`--file ${file}: ${(e as Error).message}`); return 2; }
        return report(diffAgainstTrail(old.compiled, next.compiled, events));
      }
      const fleetUrl = process.env.AAM_DATABASE_URL;
      if (fleetUrl) {
        // Fleet mode: every replica's decisions, straight from PostgreSQL.
        const drivers = await fleetDrivers();
        const sql = drivers.connectPostgres(fleetUrl, 2, { tls: databaseTls(process.env, fleetUrl) });
        let events: Record<string, unknown>[];
        try { events = await fleetEventsSince(sql, new Date(since).toISOString(), [...DECISION_TYPES]); } catch (e) {
          // A refused login or connection in the words every command uses (what to check); a failed query as it is.
          const why = drivers.connectionError(e);
          err(`${why === e ? `cannot read the fleet's audit trail from PostgreSQL (AAM_DATABASE_URL): ${(e as Error).message}` : (why as Error).message}; or replay an \`aam audit export\` file with --file`);
          return 2;
        } finally { await sql.end({ timeout: 2 }); }
        return report(diffAgainstTrail(old.compiled, next.compiled, events));
      }
      if (!existsSync(auditDbPath(g.data))) { err(`no audit trail in ${g.data}; pass --data (or AAM_DATA_DIR) of the gateway whose decisions to replay, or set AAM_DATABASE_URL for a fleet's`); return 2; }
      await recoverUncommitted(g.data);
      const db = openAuditDb(g.data);
      try {
        const events = (function* () {
          for (const e of readEvents(db, { since: new Date(since).toISOString(), match: (k) => DECISION_TYPES.has(k.type) })) yield toEvent(e) as Record<string, unknown>;
        })();
        return report(diffAgainstTrail(old.compiled, next.compiled, events));
      } finally { db.close(); }
    },
  },
};
