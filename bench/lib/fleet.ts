// The benchmark's fleet run: one aam replica on PostgreSQL + Redis, started the way `npm test` starts
// them (scripts/test.ts: loopback, temp dir, PostgreSQL without fsync), and what one model request
// costs in the stores: Redis commands (INFO commandstats), PostgreSQL transactions
// (pg_stat_database) and the stores' CPU, read before and after the target's measurement.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import { startServices } from '../../scripts/test.ts';
import { databaseName } from '../../src/store/postgres.ts';
import { fleetPrefix } from '../../src/store/redis.ts';
import { cpuTicks, CLK_TCK } from './procs.ts';

export interface StoreCounters {
  redis: Record<string, number>;
  /** Microseconds Redis spent in each command (INFO commandstats usec: inside scripts too, so evalsha's includes its commands'). */
  redisUsec: Record<string, number>;
  /** INFO stats total_reads_processed / total_writes_processed: the socket reads and writes of Redis's loop (its wake-ups). */
  redisReads: number;
  redisWrites: number;
  /** Transactions committed or rolled back in the database read (pg_stat_database). */
  pgXacts: number;
  /** Of pgXacts, the reading's own query (1 when it ran in the database read, else 0). */
  pgSelf: number;
  /** Rows inserted in the database read (pg_stat_database tup_inserted: the audit events, bar a rollup row a minute). */
  pgRows: number;
  /** CPU ticks of each live PostgreSQL process ('pid kind', pgProcessKind), and of the children that exited ('exited': postmaster's cutime). */
  pgTicks: Record<string, number>;
  storeTicks: number;
  redisTicks: number;
}

export interface StoreCost {
  model_requests: number;
  /** Redis commands per model request, all and by command (top-level and inside scripts, as INFO commandstats counts them). */
  redis_commands_per_request: number;
  redis_by_command: Record<string, number>;
  /** Redis's microseconds per model request by command (commandstats usec; evalsha's includes the commands it ran). */
  redis_usec_by_command: Record<string, number>;
  /** Socket reads and writes of Redis per model request (its loop's work apart from the commands). */
  redis_reads_per_request: number;
  redis_writes_per_request: number;
  /** PostgreSQL transactions (each statement outside BEGIN is one) per model request. */
  pg_xacts_per_request: number;
  /** Rows inserted per transaction: the audit events per group commit, near enough (the head's UPDATE and reads count as transactions too). */
  pg_rows_per_xact: number;
  /** PostgreSQL's CPU per model request in microseconds, by process kind (backend, walwriter, autovacuum, exited...). */
  pg_cpu_us_by_process: Record<string, number>;
  /** CPU of redis-server and every PostgreSQL process (children that exited meanwhile included: autovacuum workers) per model request, in ms. */
  store_cpu_ms_per_request: number;
  /** Of which redis-server (the rest: the PostgreSQL processes). */
  redis_cpu_ms_per_request: number;
}

export interface BenchFleet {
  /** AAM_DATABASE_URL, AAM_REDIS_URL and AAM_MASTER_KEY for the replica and the CLI. */
  env: Record<string, string>;
  /**
   * A PostgreSQL database of its own on the same server (CREATE DATABASE, owned by the aam role),
   * empty: the `aam migrate` of the tree that uses it gives it that tree's schema. Its Redis keys
   * are apart as well, on the same Redis: aam prefixes every key and channel of a fleet with its
   * database's name (src/store/redis.ts fleetPrefix), so the same server holds both trees' counters
   * unmixed. Returns env for that database (same Redis URL and master key) and what it is.
   */
  database(name: string): Promise<{ env: Record<string, string>; name: string; redisPrefix: string }>;
  /** Store counters; PostgreSQL transactions of `database` (default: the first one, `aam`). */
  counters(database?: string): Promise<StoreCounters>;
  stop(): Promise<void>;
}

/**
 * Started from the benchmark process, so the stores inherit its CPU (the load generator's core, not
 * the gateway's). PostgreSQL daemonizes into a session of its own, so it gets the run's priority
 * (nice, and its autogroup's) here; its backends inherit it from the postmaster.
 */
export async function startBenchFleet(nice = 0): Promise<BenchFleet> {
  const services = await startServices();
  process.once('exit', () => services.stop()); // also when the run fails half-way
  if (nice !== 0) {
    const postmaster = readFileSync(services.pids.postmasterFile, 'utf8').split('\n')[0].trim();
    spawnSync('renice', ['-n', String(nice), '-p', postmaster], { stdio: 'ignore' });
    try { writeFileSync(`/proc/${postmaster}/autogroup`, String(nice)); } catch { /* not permitted: noted by the caller's numbers */ }
  }
  const databaseUrl = services.env.AAM_TEST_DATABASE_URL;
  const redisUrl = services.env.AAM_TEST_REDIS_URL;
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const redisInfo = (): { calls: Record<string, number>; usec: Record<string, number>; reads: number; writes: number } => {
    // Host, port and password apart: redis-cli 7.0 sends an empty user name from redis://:pw@ and is refused.
    const u = new URL(redisUrl);
    const out = spawnSync('redis-cli', ['-h', u.hostname, '-p', u.port, '-a', decodeURIComponent(u.password), '--no-auth-warning', 'INFO', 'all'], { encoding: 'utf8' }).stdout;
    const calls: Record<string, number> = {};
    const usec: Record<string, number> = {};
    for (const m of out.matchAll(/^cmdstat_([\w|]+):calls=(\d+),usec=(\d+)/gm)) { calls[m[1]] = Number(m[2]); usec[m[1]] = Number(m[3]); }
    const stat = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(out)?.[1] ?? 0);
    return { calls, usec, reads: stat('total_reads_processed'), writes: stat('total_writes_processed') };
  };
  const pgTicks = (): Record<string, number> => {
    const postmaster = Number(readFileSync(services.pids.postmasterFile, 'utf8').split('\n')[0]);
    const out: Record<string, number> = { postmaster: cpuTicks(postmaster) ?? 0, exited: childTicks(postmaster) };
    for (const pid of childrenOf(postmaster)) out[`${pid} ${pgProcessKind(pid)}`] = cpuTicks(pid) ?? 0;
    return out;
  };
  const env = { AAM_DATABASE_URL: databaseUrl, AAM_REDIS_URL: redisUrl, AAM_MASTER_KEY: randomBytes(32).toString('hex') };
  const home = databaseName(databaseUrl);
  return {
    env,
    async database(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`database name ${name}: use [a-z0-9_]`);
      await sql.unsafe(`CREATE DATABASE ${name}`);
      const u = new URL(databaseUrl);
      u.pathname = `/${name}`;
      return { env: { ...env, AAM_DATABASE_URL: u.toString() }, name, redisPrefix: fleetPrefix(name) };
    },
    async counters(database = home) {
      // Backends report their statistics about once a second: wait for the last ones.
      await sleep(1500);
      const [row] = await sql<Array<{ n: string; rows: string }>>`SELECT xact_commit + xact_rollback AS n, tup_inserted AS rows FROM pg_stat_database WHERE datname = ${database}`;
      const r = redisInfo();
      // The stores' CPU is Redis's and every PostgreSQL process's of the same reading (exited children included).
      const pg = pgTicks();
      const redisTicks = cpuTicks(services.pids.redis) ?? 0;
      return {
        redis: r.calls, redisUsec: r.usec, redisReads: r.reads, redisWrites: r.writes, pgXacts: Number(row?.n ?? 0), pgSelf: database === home ? 1 : 0,
        pgRows: Number(row?.rows ?? 0), pgTicks: pg, storeTicks: Object.values(pg).reduce((sum, t) => sum + t, redisTicks), redisTicks,
      };
    },
    async stop() {
      await sql.end({ timeout: 2 });
      services.stop();
    },
  };
}

/**
 * What a PostgreSQL process is, from the title it sets (postgres: walwriter, postgres: autovacuum
 * worker, ...); a backend's title names its user and database, so every other title is 'backend'.
 */
function pgProcessKind(pid: number): string {
  let title = '';
  try { title = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { return 'backend'; }
  const m = /^postgres: (walwriter|checkpointer|background writer|autovacuum launcher|autovacuum worker|logical replication launcher|archiver|walsender)\b/.exec(title);
  return m ? m[1].replace(/ /g, '_') : 'backend';
}

/** CPU ticks of a process's children that exited and were waited for (/proc/<pid>/stat cutime + cstime): autovacuum workers, closed connections. */
function childTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[13]) + Number(fields[14]);
  } catch { return 0; }
}

function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/** What the requests between two counter readings cost the stores (the readings' own queries are subtracted). */
export function storeCost(before: StoreCounters, after: StoreCounters, modelRequests: number): StoreCost {
  const byCommand: Record<string, number> = {};
  let total = 0;
  for (const [cmd, n] of Object.entries(after.redis)) {
    const d = n - (before.redis[cmd] ?? 0) - (cmd === 'info' ? 1 : 0);
    if (d <= 0) continue;
    byCommand[cmd] = Math.round((d / modelRequests) * 1000) / 1000;
    total += d;
  }
  const per = (v: number): number => Math.round((v / modelRequests) * 1000) / 1000;
  const usecBy: Record<string, number> = {};
  for (const [cmd, us] of Object.entries(after.redisUsec)) {
    const d = us - (before.redisUsec[cmd] ?? 0);
    if (d > 0 && cmd !== 'info') usecBy[cmd] = Math.round((d / modelRequests) * 100) / 100;
  }
  // By kind; a process that exited between the readings left its CPU in 'exited', less what it had at the first.
  const pgTicks: Record<string, number> = {};
  for (const [key, t] of Object.entries(after.pgTicks)) {
    const kind = key.slice(key.indexOf(' ') + 1);
    pgTicks[kind] = (pgTicks[kind] ?? 0) + t - (before.pgTicks[key] ?? 0);
  }
  for (const [key, t] of Object.entries(before.pgTicks)) if (!(key in after.pgTicks)) pgTicks.exited -= t;
  const pgUs: Record<string, number> = {};
  for (const [kind, t] of Object.entries(pgTicks)) if (t > 0) pgUs[kind] = Math.round((t / CLK_TCK / modelRequests) * 1e7) / 10;
  const xacts = after.pgXacts - before.pgXacts - after.pgSelf;
  return {
    model_requests: modelRequests,
    redis_commands_per_request: per(total),
    redis_by_command: byCommand,
    redis_usec_by_command: usecBy,
    // The reading's own INFO is one read and one write.
    redis_reads_per_request: per(after.redisReads - before.redisReads - 1),
    redis_writes_per_request: per(after.redisWrites - before.redisWrites - 1),
    pg_xacts_per_request: per(xacts),
    pg_rows_per_xact: xacts > 0 ? Math.round(((after.pgRows - before.pgRows) / xacts) * 10) / 10 : 0,
    pg_cpu_us_by_process: pgUs,
    store_cpu_ms_per_request: per(((after.storeTicks - before.storeTicks) / CLK_TCK) * 1000),
    redis_cpu_ms_per_request: per(((after.redisTicks - before.redisTicks) / CLK_TCK) * 1000),
  };
}

/** The PostgreSQL half of a stores' line: rows per transaction and PostgreSQL's CPU per request by process. */
export function pgDetail(st: StoreCost): string {
  return `${st.pg_rows_per_xact} rows inserted per PostgreSQL transaction; PostgreSQL CPU us/request by process ${Object.entries(st.pg_cpu_us_by_process).sort((a, b) => b[1] - a[1]).map(([k, us]) => `${k} ${us}`).join(', ')}`;
}
