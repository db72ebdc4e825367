// Budgets and rpm/tpm limits on the fleet store. Admission is ONE Redis script per request (one
// round trip): it checks rpm/tpm (GCRA, Redis's clock) and the budgets, then counts the rates and
// reserves the estimate on every budget key, all or nothing (a budget refusal counts no rate). Reservations carry an expiry, so a
// replica that dies mid-request does not hold budget forever. Settled spend goes to Redis (the
// live total the script checks) and, batched about once a second, to PostgreSQL (durable: a
// Redis that restarts empty is re-seeded from it, so an exhausted budget stays exhausted).
import type { Fleet } from './fleet.ts';
import { exactCacheKey, parseCacheValue } from './fleet-cache.ts';
import { SCRIPT, scriptRunner } from './redis-script.ts';
import { refusalExhausts, StoreUnavailable, type AdmitRequest, type AdmitResult, type BudgetAlert, type Limiter, type Period, type Ticket } from './types.ts';

const dayStart = (t: number): number => { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()); };
const monthStart = (t: number): number => { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1); };
const nextMonth = (start: number): number => { const d = new Date(start); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1); };

// One script call per request at most: it first applies the settlements this replica queued since
// its last call (the settle of request N rides on the admission of a later request), then admits
// the admissions it carries one after another (a request alone goes at once; the requests of one
// loop turn, while a call is in flight, share the turn's call: one script and one read and write
// of each budget and rate hash for all of them).
// The budgets of a call's requests go once per call as plans (a policy's budgets: their keys and
// limits), which its settlements and admissions name by number: the requests of one agent share
// one, and each string a call carries is Redis parsing it and Lua interning it (~0.1 us each; 23
// strings a request before, 11 now).
// KEYS: per plan, per budget key its hash and its reservation zset; then each settlement's tpm rate
//       hashes; then each admission's rate hashes and (readCache) its response cache entry.
// ARGV: dayField, monthField, nSettlements, budget key ttl ms, reservation ttl ms, nPlans,
//       per plan: nBudgets, (daily, monthly; -1 = none) per budget;
//       per settlement: its head, [actualTokens (-1: unknown), estimatedTokens: when nRates > 0],
//         member, amount reserved, charge; head = plan * 4096 + nRates * 4 + flags, flags: 1 retry
//         (carried again after a failed call, which may have run: charge only where its reservation
//         is still there) + 2 report (its budgets have alert thresholds: the reply carries their totals);
//       then nAdmissions, and per admission: its head, [tokens, (rpm, tpm) per rate: when nRates > 0],
//       amount, member; head = plan * 4096 + nRates * 4 + readCache (1: its last key is a response
//       cache entry). nAdmissions = 0: settle only.
// The small numbers of a settlement or admission go as one head: each ARGV string is Redis parsing
// it into an object and Lua interning it (~0.85 k instructions each in Redis, callgrind), 11 a
// request before, 7 now.
// A live cache entry is a hit: it costs $0, so nothing is reserved (rates still count).
// Replies: { admissions, totals, cached } with per admission its cache entry's value (nil: none) and 'ok' | {'rate', 'rpm'|'tpm', index, waitMs}
//          | {'budget', index, period, committed} | {'seed', index...} (budget totals of this window
//          not in Redis yet: nothing counted), and totals the daily and monthly spend after the
//          charge per budget of each settlement that reports ('' when that window is not in Redis).
//          An admitted request's reply is a string, not a table, and a settlement that does not
//          report has no totals: each is a reply element Redis writes and the replica parses.
// A settled reservation that already expired is not subtracted twice; its charge still counts
// (except on a retry: there a missing reservation means the failed call ran, or Redis restarted
// empty and re-seeds the total from PostgreSQL, which has the charge).
// Commands are what this costs Redis (each call ~0.5-3 us of its one thread, per request; with a
// settle and an admission on one budget: TIME, ZREM, HMGET, ZADD, HSET, and per rate HMGET, HSET,
// PEXPIRE): a budget hash is read once per call (its day and month totals, the reserved sum 'r',
// the next sweep 'w') and written once at its end (one HSET of what moved: a settle and the next
// admission on one key cancel out in 'r'), not by HINCRBYFLOAT per settlement; a rate hash too
// (the settle's tpm correction and the admission's tats in one HSET); expired reservations are swept once a second per
// budget and before any refusal, not looked for per request; and expiries are set when a key is
// made, not per request: a budget hash when it is seeded (at least once a month while in use), its
// reservation zset when it is created (the same long expiry; members expire by their score, and a
// member that never expires keeps the zset from being deleted when its last reservation settles).
// The reservations a call makes go in one ZADD per zset at its end (with that member once), not a
// ZADD per admission with the keeper each time (and their expiry formatted once per call, not by a
// sprintf per admission that ZADD parses back).
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local W = 60000
local dayF, monF = ARGV[1], ARGV[2]
local ns = tonumber(ARGV[3])
local keyTtl = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local a = 7
local k = 0
-- Per plan: its budget count, the KEYS index before its first key, the ARGV index of its first limit.
local pn, pk, pa = {}, {}, {}
for p = 1, tonumber(ARGV[6]) do
  local nb = tonumber(ARGV[a])
  pn[p], pk[p], pa[p] = nb, k, a + 1
  a = a + 1 + 2 * nb
  k = k + 2 * nb
end
-- A number of ARGV, each distinct string parsed once per call: the requests of one call repeat
-- theirs (counts, prices, limits, ttl), and tonumber is a strtod.
local parsed = {}
local function arg(v)
  local x = parsed[v]
  if x == nil then x = tonumber(v); parsed[v] = x end
  return x
end
local totals = {}
-- The member that never expires (see the end). Longer than zset-max-listpack-value (64 bytes by
-- default), so that Redis keeps the zset as a skiplist from its first ZADD: as a listpack (up to 128
-- members) every ZADD and ZREM scans it and moves its bytes (100 members: ZADD 4.2 us, ZREM 0.5;
-- as a skiplist 0.6 and 0.3, and no slower with few; the bench at c=64: ZADD 2.9-3.2 -> 0.9-1.5 us
-- per request). A zset of an earlier version (keeper '~') turns into a skiplist at its next ZADD.
local KEEP = '~ never expires: keeps this zset, and as a skiplist (longer than 64 bytes: no listpack)'
-- The budget hashes this call touches, each read once (HMGET of its day and month totals and the
-- reserved sum 'r') and written once at the end (one HSET of what moved), however many of the
-- call's settlements and its admission use it.
local books = {}
local touched = {}
local function book(bk)
  local b = books[bk]
  if not b then
    local v = redis.call('HMGET', bk, dayF, monF, 'r', 'w')
    -- dr: the reserved sum's move; wd, wm: a total to write, ww: 'w' to write.
    b = { d = tonumber(v[1]), m = tonumber(v[2]), r = tonumber(v[3]) or 0, w = tonumber(v[4]) or 0, dr = 0, wd = false, wm = false, ww = false }
    books[bk] = b
    touched[#touched + 1] = bk
  end
  return b
end
-- Expired reservations (their replica died) let go: at most once a second per budget ('w', the
-- next sweep), and always before a refusal, so no request is refused for a reservation that expired.
local function sweep(b, zk)
  local dead = redis.call('ZRANGEBYSCORE', zk, '-inf', now)
  if #dead > 0 then
    local sum = 0
    for _, m in ipairs(dead) do sum = sum + tonumber(string.match(m, '|(.*)$')) end
    redis.call('ZREMRANGEBYSCORE', zk, '-inf', now)
    b.dr = b.dr - sum
  end
  b.w = now + 1000
  b.ww = true
end
-- The budget's refusal if this amount does not fit (day first, then month), else nil.
local function over(b, j, daily, monthly, amount)
  local reserved = math.max(0, b.r + b.dr)
  if daily >= 0 and (b.d + reserved + amount) > daily + 1e-9 then
    return { 'budget', j, 'daily', tostring(b.d + reserved) }
  elseif monthly >= 0 and (b.m + reserved + amount) > monthly + 1e-9 then
    return { 'budget', j, 'monthly', tostring(b.m + reserved) }
  end
  return nil
end
-- The rate hashes this call touches, the same way: read once (HMGET of the rpm and tpm tats and the
-- tpm interval), written once at the end with the expiry of what was written.
local rates = {}
local rateKeys = {}
local function rate(rk)
  local c = rates[rk]
  if not c then
    local v = redis.call('HMGET', rk, 'r', 't', 'i')
    c = { r = tonumber(v[1]), t = tonumber(v[2]), i = tonumber(v[3]), wr = false, wt = false, wi = false, need = 0 }
    rates[rk] = c
    rateKeys[#rateKeys + 1] = rk
  end
  return c
end
-- A total as the hash keeps it: 15 significant digits (DBL_DIG), so a sum of decimal prices stays
-- that decimal: 0.7 + 0.1 is 0.8 (HINCRBYFLOAT by a Lua number kept 0.79999999999999997).
local function num(x) return string.format('%.15g', x) end
-- A head's fields: plan, nRates, flags (the low 2 bits).
local function head(h)
  local f = h % 4
  local low = h % 4096
  return (h - low) / 4096, (low - f) / 4, f
end
for s = 1, ns do
  local p, nr, flags = head(arg(ARGV[a]))
  a = a + 1
  -- The tokens come only for a tpm correction.
  local actual, est = false, false
  if nr > 0 then actual, est = arg(ARGV[a]), arg(ARGV[a + 1]); a = a + 2 end
  local member, amount, charge = ARGV[a], arg(ARGV[a + 1]), arg(ARGV[a + 2])
  local retry, report = flags % 2 == 1, flags >= 2
  a = a + 3
  local nb, pk0 = pn[p], pk[p]
  for i = 1, nr do
    local c = rate(KEYS[k + i])
    if c.i then
      c.t = math.max(now, (c.t or now) + (actual - est) * c.i)
      c.wt = true
      -- Only a later tat can outlive the hash's expiry (set by the admission for the tat it wrote).
      if actual > est then c.need = math.max(c.need, math.ceil(c.t - now) + 1000) end
    end
  end
  for j = 1, nb do
    local bk, zk = KEYS[pk0 + 2 * j - 1], KEYS[pk0 + 2 * j]
    local removed = redis.call('ZREM', zk, member) == 1
    local d, m = '', ''
    local charged = charge > 0 and (removed or not retry)
    if removed or charged then
      local b = book(bk)
      if removed then b.dr = b.dr - amount end
      if charged then
        -- Formatted (a sprintf each) only for a budget with alert thresholds, the reply's reader;
        -- the hash gets the same formatting of the call's last total at its end.
        if b.d then b.d = b.d + charge; b.wd = true; if report then d = num(b.d) end end
        if b.m then b.m = b.m + charge; b.wm = true; if report then m = num(b.m) end end
      end
    end
    if report then
      totals[#totals + 1] = d
      totals[#totals + 1] = m
    end
  end
  k = k + nr
end
local cached = false
-- Keys of the admission admit() read (the next one's start after them).
local used = 0
-- Reservations to add per zset (score, member, ...; n: how many) in order of first use, and their
-- expiry's score (formatted once per call: a Lua number turned into a string costs a sprintf).
local adds, zsets, score = {}, {}, nil
local OK = 'ok'
local function admit()
  local p, nr, readCache = head(arg(ARGV[a]))
  a = a + 1
  -- Read and made only for rates (a table is Lua allocation and GC work).
  local tokens = false
  if nr > 0 then tokens = arg(ARGV[a]); a = a + 1 end
  local cells = nr > 0 and {}
  local rateFail = nil
  for i = 1, nr do
    local rpm, tpm = arg(ARGV[a]), arg(ARGV[a + 1])
    a = a + 2
    local c = rate(KEYS[k + i])
    local rtat, ttat = c.r or 0, c.t or 0
    cells[i] = { rpm, tpm, rtat, ttat }
    if not rateFail and rpm > 0 then
      local excess = math.max(rtat, now) + W / rpm - now - W
      if excess > 0.000001 then rateFail = { 'rate', 'rpm', i, tostring(math.ceil(excess)) } end
    end
    if not rateFail and tpm > 0 and tokens > 0 then
      local excess = math.max(ttat, now) + math.min(tokens, tpm) * W / tpm - now - W
      if excess > 0.000001 then rateFail = { 'rate', 'tpm', i, tostring(math.ceil(excess)) } end
    end
  end
  local nb, pk0, la = pn[p], pk[p], pa[p]
  local amount, member = arg(ARGV[a]), ARGV[a + 1]
  used = nr
  if readCache == 1 then
    used = used + 1
    local v = redis.call('GET', KEYS[k + nr + 1])
    local exp = v and tonumber(string.match(v, '^(%d+)\\n'))
    if exp and exp > now then
      cached = v
      amount = 0
    end
  end
  a = a + 2
  local budgetFail = nil
  -- Made only when a window is missing (a table per admission is Lua allocation and GC work).
  local missing = nil
  for j = 1, nb do
    local bk, zk = KEYS[pk0 + 2 * j - 1], KEYS[pk0 + 2 * j]
    local daily, monthly = arg(ARGV[la + 2 * j - 2]), arg(ARGV[la + 2 * j - 1])
    local b = book(bk)
    if (daily >= 0 and not b.d) or (monthly >= 0 and not b.m) then
      if not missing then missing = { 'seed' } end
      missing[#missing + 1] = j
    elseif not budgetFail then
      local swept = now >= b.w
      if swept then sweep(b, zk) end
      budgetFail = over(b, j, daily, monthly, amount)
      if budgetFail and not swept then
        sweep(b, zk)
        budgetFail = over(b, j, daily, monthly, amount)
      end
    end
    -- No window to seed it, so nothing else sets its expiry.
    if daily < 0 and monthly < 0 then redis.call('PEXPIRE', bk, keyTtl) end
  end
  if missing then return missing end
  if rateFail then return rateFail end
  -- A request its budget refuses did no work upstream: it uses no rpm/tpm (as the embedded limiter).
  if budgetFail then return budgetFail end
  for i = 1, nr do
    local c = cells[i]
    local until_ = now
    local rt, tt, ti = nil, nil, nil
    if c[1] > 0 then
      rt = math.max(c[3], now) + W / c[1]
      until_ = math.max(until_, rt)
    end
    if c[2] > 0 then
      tt = c[4]
      if tokens > 0 then tt = math.max(c[4], now) + tokens * W / c[2] end
      ti = W / c[2]
      until_ = math.max(until_, tt)
    end
    local h = rates[KEYS[k + i]]
    if rt then h.r = rt; h.wr = true end
    if tt then h.t = tt; h.i = ti; h.wt = true; h.wi = true end
    -- The expiry of the tats this admission wrote (it replaces a settle's, as a later PEXPIRE would).
    h.exp = math.ceil(until_ - now) + 1000
  end
  if amount > 0 then
    -- The reservation's expiry as ZADD takes it.
    if not score then score = string.format('%d', now + ttl) end
    for j = 1, nb do
      local bk, zk = KEYS[pk0 + 2 * j - 1], KEYS[pk0 + 2 * j]
      -- Added at the call's end, one ZADD per zset (see the end): nothing in this call reads a
      -- reservation made in it (a sweep takes only expired ones).
      local z = adds[zk]
      if not z then z = { n = 0 }; adds[zk] = z; zsets[#zsets + 1] = zk end
      z[#z + 1] = score
      z[#z + 1] = member
      z.n = z.n + 1
      books[bk].dr = books[bk].dr + amount
    end
  end
  return OK
end
-- The admissions, one after another as if each were a call of its own (their budgets and rates read
-- and written once for all).
local nadm = arg(ARGV[a])
a = a + 1
local admissions, cachedAll = {}, {}
for x = 1, nadm do
  cached = false
  admissions[x] = admit()
  cachedAll[x] = cached
  k = k + used
end
-- The call's reservations, one ZADD per zset, with a member that never expires (score +inf, never
-- swept), so the zset is not deleted and made again each time its last reservation settles. That
-- one new too: the zset is made here (or by an earlier version, without it), and gets the budget
-- key's expiry.
for _, zk in ipairs(zsets) do
  local z = adds[zk]
  z[#z + 1] = '+inf'
  z[#z + 1] = KEEP
  if redis.call('ZADD', zk, unpack(z)) ~= z.n then redis.call('PEXPIRE', zk, keyTtl) end
end
for _, rk in ipairs(rateKeys) do
  local c = rates[rk]
  local set = {}
  if c.wr then set[#set + 1] = 'r'; set[#set + 1] = tostring(c.r) end
  if c.wt then set[#set + 1] = 't'; set[#set + 1] = tostring(c.t) end
  if c.wi then set[#set + 1] = 'i'; set[#set + 1] = tostring(c.i) end
  if #set > 0 then redis.call('HSET', rk, unpack(set)) end
  if c.exp then redis.call('PEXPIRE', rk, c.exp)
  elseif c.need > 0 and redis.call('PTTL', rk) < c.need then redis.call('PEXPIRE', rk, c.need) end
end
for _, bk in ipairs(touched) do
  local b = books[bk]
  local set = {}
  if b.wd then set[#set + 1] = dayF; set[#set + 1] = num(b.d) end
  if b.wm then set[#set + 1] = monF; set[#set + 1] = num(b.m) end
  if b.dr ~= 0 then set[#set + 1] = 'r'; set[#set + 1] = num(b.r + b.dr) end
  if b.ww then set[#set + 1] = 'w'; set[#set + 1] = b.w end
  if #set > 0 then redis.call('HSET', bk, unpack(set)) end
end
return { admissions, totals, cachedAll }
`;

interface FleetTicket extends Ticket {
  /**
   * Its budgets' plan: their hash and zset names in script order (keys), the budgets themselves,
   * and the charge settled on them until the next fold (see #fold).
   */
  plan: BudgetPlan;
  /** Rate hashes whose tpm a settlement corrects (rates without tpm need nothing). */
  tpmKeys: string[];
  member: string;
  amount: number;
  tokens: number;
  done: boolean;
}

/** A settle or release waiting to ride on the next script call (retry: its first call failed; at: when queued, performance.now()). */
interface Settlement { ft: FleetTicket; charge: number; tokens: number; retry?: boolean; at: number }

export interface FleetLimiterOptions {
  /** How long a reservation holds budget if its request never settles (crashed replica). Default 15 min. */
  reservationTtlMs?: number;
  /** How often settled spend is written to PostgreSQL. Default 1 s. */
  flushMs?: number;
  /** How long a settlement waits for an admission to ride on before it is sent alone. Default 50 ms. */
  settleDelayMs?: number;
  onError?: (what: string, e: unknown) => void;
}

/** An admission's reply: 'ok', or its refusal or seed request (see the script's Replies). */
type AdmitReply = 'ok' | unknown[];
type Reply = [admissions: AdmitReply[], totals: string[], cached: Array<string | null>];
/**
 * An admission's script arguments: its budgets' plan (sent once per call), its own keys (rate
 * hashes, cache entry), its head's low bits (nRates * 4 + readCache; the plan's number in the call
 * is added when it is written) and its ARGV block after the head.
 */
interface Own { plan: BudgetPlan; keys: string[]; low: number; args: Array<string | number> }
/**
 * The admissions of one script call, waiting for it: their arguments in call order and one promise
 * for all of them (not a promise, an executor and a reply object per request). Once it resolves,
 * `reply` is the call's (admission i's is reply[0][i]) and d, m its window.
 */
interface Call { owns: Own[]; done: Promise<void>; resolve: () => void; reject: (e: unknown) => void; reply: Reply | null; d: number; m: number }

const NONE: string[] = [];
/** No settlements on a call (never changed). */
const NO_BATCH: Settlement[] = [];
/** No admissions on a call (never changed): it only settles. */
const SETTLE_ONLY: Own[] = [];

/** The UTC day and month a time falls in, and their field names in a budget hash. */
interface Window { d: number; m: number; dayField: string; monthField: string; pendingDaily: string; pendingMonthly: string }

/**
 * A request's budgets as the script takes them: their hash and zset names, and (daily, monthly)
 * per budget (read-only once made); and `recent`, the charges settled on them since the last fold
 * (USD, the same for each of its keys, day and month): one number per settle, not a Map update per key.
 * `alerts`: one of its budgets has alert thresholds (its settlements want the totals back).
 * `call`, `index`: the script call it was last written in and its number there (each plan goes
 * once per call, its settlements and admissions name it by number).
 */
interface BudgetPlan { keys: string[]; args: number[]; budgets: AdmitRequest['budgets']; recent: number; alerts: boolean; call: number; index: number }
/**
 * A number as the script's ARGV text, the last one formatted kept: a replica's requests repeat
 * their estimate and their charge (one price and usage shape per route), and each fraction costs a
 * shortest-decimal conversion (encodeInto's String(), the member's template) every time.
 */
function lastText(): (n: number) => string {
  let last = 0;
  let text = '0';
  return (n) => {
    if (n !== last) { last = n; text = String(n); }
    return text;
  };
}

/** Rate hash names kept (agents and virtual keys seen); past this the map starts again. */
const MAX_RATE_NAMES = 10_000;

/** A settlement's or admission's head in the script's ARGV: plan * HEAD_PLAN + nRates * 4 + flags (see the script). */
const HEAD_PLAN = 4096;
/** Settlements carried by one script call (bounds its size; the rest ride on the next). */
const MAX_SETTLEMENTS = 64;
/** Admissions carried by one script call (the rest go in the next). */
const MAX_ADMISSIONS = 64;
/** Settlements kept while Redis is away; past this the oldest are dropped (their reservations expire). */
const MAX_QUEUED = 10_000;
/** Expiry of a budget's hash and reservation zset (35 days: longer than a month, renewed by each window's seed). */
const BUDGET_KEY_TTL_MS = 35 * 86_400_000;
/**
 * A budget key's names: its hash (totals per window, 'r' reserved) and its reservation zset. The
 * zset is `bq:` since its expiry is set when it is made instead of per request (`bz:` before): a
 * replica of the earlier version keeps its own zset and its own per-request expiry in a mixed fleet.
 */
const budgetHash = (p: string, key: string): string => `${p}b:${key}`;
const budgetZset = (p: string, key: string): string => `${p}bq:${key}`;

export class FleetLimiter implements Limiter {
  readonly #fleet: Fleet;
  readonly #run: (args: Array<string | number>, now?: boolean) => Promise<Reply>;
  readonly #ttl: number;
  readonly #settleDelay: number;
  readonly #onError: (what: string, e: unknown) => void;
  #seq = 0;
  /** Script calls built (stamps the plans a call carries, see #script). */
  #calls = 0;
  /** The plans of the call being built (reused). */
  readonly #callPlans: BudgetPlan[] = [];
  /** Admissions waiting for this turn's script calls (one call carries up to MAX_ADMISSIONS). */
  #waiting: Call[] = [];
  #armed = false;
  /** Settlements not yet in Redis, oldest first: their reservations still hold budget meanwhile. */
  #queue: Settlement[] = [];
  #idle: NodeJS.Timeout | null = null;
  #sending: Promise<void> | null = null;
  /** Settled spend not yet in PostgreSQL: "key|period|windowStart" -> USD. */
  #pending = new Map<string, number>();
  /** Plans with settled spend of #recentWindow not yet folded into #pending (their `recent`). */
  #recent: BudgetPlan[] = [];
  #recentWindow: Window | null = null;
  #timer: NodeJS.Timeout;
  #flushing: Promise<void> | null = null;
  /** Redis round trips made by admissions (for the benchmark notes and tests). */
  admitCalls = 0;
  /** Redis round trips made by settlements alone (no admission came within settleDelayMs). */
  settleCalls = 0;
  /** The current window's strings, built once per day (not per request). */
  #win: Window = { d: -1, m: -1, dayField: '', monthField: '', pendingDaily: '', pendingMonthly: '' };
  /** Budget plans per budgets array (see #budgetPlan); weak: a reloaded config's old arrays go with it. */
  #plans = new WeakMap<AdmitRequest['budgets'], BudgetPlan>();
  /** Rate hash names per rate key (see #rateKey). */
  #rateNames = new Map<string, string>();
  /** Estimates' and charges' texts (see lastText). */
  readonly #amountText = lastText();
  readonly #chargeText = lastText();
  /** Budget threshold crossings (alert_at); each fires on exactly one replica of the fleet. */
  onAlert: (alert: BudgetAlert) => void = () => {};
  /**
   * Other requests are in flight on this process (the runtime's count): their admissions likely
   * come in this loop turn, so one on an idle connection waits for the turn's call instead of
   * leaving alone at once and the rest of the turn following in a second call (at c=64, 39 % of
   * the calls carried one admission). False by default: a limiter alone (CLI, tests) sends at once.
   */
  othersInFlight: () => boolean = () => false;

  constructor(fleet: Fleet, opts: FleetLimiterOptions = {}) {
    this.#fleet = fleet;
    this.#ttl = opts.reservationTtlMs ?? 15 * 60_000;
    this.#settleDelay = opts.settleDelayMs ?? 50;
    this.#onError = opts.onError ?? (() => {});
    this.#run = scriptRunner<Reply>(fleet.admission, ADMIT);
    this.#timer = setInterval(() => { void this.flush(); }, opts.flushMs ?? 1000);
    this.#timer.unref();
  }

  async admit(req: AdmitRequest): Promise<AdmitResult> {
    let { d, m } = this.#windowAt(Date.now());
    const p = this.#fleet.prefix;
    const amount = req.amountUsd > 0 && Number.isFinite(req.amountUsd) ? req.amountUsd : 0;
    const tokens = req.tokens > 0 && Number.isFinite(req.tokens) ? req.tokens : 0;
    const amountText = this.#amountText(amount);
    const member = `${this.#fleet.replicaId}:${++this.#seq}|${amountText}`;
    const plan = this.#budgetPlan(req.budgets);
    const nr = req.rates.length;
    // Keys: rate hashes, then the cache entry (none: a shared empty array).
    let keys = NONE;
    let tpmKeys = NONE;
    if (nr >= HEAD_PLAN / 4) throw new Error(`${nr} rate limits on one request: at most ${HEAD_PLAN / 4 - 1}`);
    // Made at its final size (no growth copies).
    const args = new Array<string | number>((nr > 0 ? 1 + 2 * nr : 0) + 2);
    let at = 0;
    if (nr > 0 || req.cacheKey !== undefined) {
      keys = [];
      if (nr > 0) args[at++] = tokens;
      for (let i = 0; i < nr; i++) {
        const r = req.rates[i];
        const key = this.#rateKey(r.key);
        keys.push(key);
        if (r.limits.tpm) { if (tpmKeys === NONE) tpmKeys = []; tpmKeys.push(key); }
        args[at++] = r.limits.rpm ?? 0;
        args[at++] = r.limits.tpm ?? 0;
      }
      if (req.cacheKey !== undefined) keys.push(exactCacheKey(p, req.cacheKey));
    }
    args[at++] = amountText;
    args[at++] = member;
    const own: Own = { plan, keys, low: nr * 4 + (req.cacheKey !== undefined ? 1 : 0), args };
    let reply: AdmitReply;
    let value: string | null;
    // In flight is what the admission connection has not answered (every script call of this
    // limiter, its seeds' commands), counted there in one place, not by hand at each call site.
    if (this.#fleet.admission.unanswered === 0 && !this.othersInFlight()) {
      // Alone (c=1): one script call with the queued settlements, sent at once, in admit's own frame.
      this.admitCalls++;
      const batch = this.#take();
      let r: Reply;
      try {
        r = await this.#script(batch, [own], d, m);
      } catch (e) {
        this.#notCarried(batch, e);
        throw new StoreUnavailable('redis', (e as Error).message);
      }
      if (batch.length > 0) this.#crossed(batch, r[1], d, m);
      reply = r[0][0];
      value = r[2][0] ?? null;
    } else {
      // A call is in flight, or other requests are: this one goes with the others of its turn.
      const call = this.#admission();
      const i = call.owns.push(own) - 1;
      try {
        await call.done;
      } catch (e) {
        throw new StoreUnavailable('redis', (e as Error).message);
      }
      const r = call.reply as Reply;
      reply = r[0][i];
      value = r[2][i] ?? null;
      d = call.d;
      m = call.m;
    }
    if (reply !== 'ok' && reply[0] === 'seed') {
      await this.#seed(req, reply.slice(1).map(Number), d, m);
      this.admitCalls++;
      let r: Reply;
      try {
        r = await this.#script(NO_BATCH, [own], d, m);
      } catch (e) {
        throw new StoreUnavailable('redis', (e as Error).message);
      }
      reply = r[0][0];
      value = r[2][0];
      if (reply !== 'ok' && reply[0] === 'seed') throw new StoreUnavailable('redis', 'budget totals could not be loaded into Redis');
    }
    if (reply === 'ok') {
      const cached = req.cacheKey === undefined ? undefined : value === null ? null : parseCacheValue(value);
      // A hit reserved nothing: settling it charges nothing unless a real cost is given.
      const ticket: FleetTicket = { kind: 'ticket', plan, tpmKeys, member, amount: cached ? 0 : amount, tokens, done: false };
      return { ok: true, ticket, cached };
    }
    if (reply[0] === 'rate') {
      const i = Number(reply[2]) - 1;
      return { ok: false, code: 'rate_limited', limit: reply[1] as 'rpm' | 'tpm', key: req.rates[i].key, retryAfterSeconds: Math.max(1, Math.ceil(Number(reply[3]) / 1000)) };
    }
    const j = Number(reply[1]) - 1;
    const period = reply[2] as Period;
    const b = req.budgets[j];
    const limit = (period === 'daily' ? b.limits.daily_usd : b.limits.monthly_usd) ?? 0;
    if (b.limits.alert_at?.includes(100) && refusalExhausts(amount, limit)) this.#alertOnce(b.key, period, 100, Number(reply[3]), limit, period === 'daily' ? d : m);
    return {
      ok: false, code: 'budget_exceeded', key: b.key, period, spent: Number(reply[3]), limit,
      resetAt: new Date(period === 'daily' ? d + 86_400_000 : nextMonth(m)),
    };
  }

  /**
   * The Redis names and script arguments of one request's budgets, kept per budgets array when it
   * is frozen: decide.ts passes one frozen array for every request of one compiled policy set (a
   * config reload compiles new ones, so a plan never outlives its limits). Others are made per call.
   */
  #budgetPlan(budgets: AdmitRequest['budgets']): BudgetPlan {
    const frozen = Object.isFrozen(budgets);
    let plan = frozen ? this.#plans.get(budgets) : undefined;
    if (plan) return plan;
    const p = this.#fleet.prefix;
    plan = { keys: [], args: [], budgets, recent: 0, alerts: budgets.some((b) => (b.limits.alert_at?.length ?? 0) > 0), call: 0, index: 0 };
    for (const b of budgets) {
      plan.keys.push(budgetHash(p, b.key), budgetZset(p, b.key));
      plan.args.push(b.limits.daily_usd ?? -1, b.limits.monthly_usd ?? -1);
    }
    if (frozen) this.#plans.set(budgets, plan);
    return plan;
  }

  /** A rate key's hash name (the same for every request of one agent or virtual key; bounded). */
  #rateKey(key: string): string {
    let name = this.#rateNames.get(key);
    if (name === undefined) {
      if (this.#rateNames.size >= MAX_RATE_NAMES) this.#rateNames.clear();
      name = `${this.#fleet.prefix}rl:${key}`;
      this.#rateNames.set(key, name);
    }
    return name;
  }

  /** The window of `now` (Date arithmetic only when the day changes). */
  #windowAt(now: number): Window {
    const w = this.#win;
    return now >= w.d && now < w.d + 86_400_000 ? w : this.#window(dayStart(now), monthStart(now));
  }

  #window(d: number, m: number): Window {
    if (this.#win.d !== d || this.#win.m !== m) this.#win = { d, m, dayField: `d:${d}`, monthField: `m:${m}`, pendingDaily: `|daily|${d}`, pendingMonthly: `|monthly|${m}` };
    return this.#win;
  }


  /** Up to MAX_SETTLEMENTS queued settlements, while Redis is connected (else they wait: a command now would fail unsent). */
  #take(): Settlement[] {
    if (this.#queue.length === 0 || this.#fleet.admission.status !== 'ready') return [];
    const batch = this.#queue.length <= MAX_SETTLEMENTS ? this.#queue : this.#queue.slice(0, MAX_SETTLEMENTS);
    this.#queue = batch === this.#queue ? [] : this.#queue.slice(MAX_SETTLEMENTS);
    return batch;
  }

  /** A call carrying `batch` failed: its settlements ride on a later call (see #again). */
  #notCarried(batch: Settlement[], e: unknown): void {
    if (batch.length === 0) return;
    this.#onError('settle', e);
    this.#again(batch);
  }

  /**
   * The call an admission made while a script call is in flight joins: it is sent at the turn's
   * check phase, where one call carries every admission of the turn (Redis reads their budget and
   * rate hashes once, and runs one script, not one each), up to MAX_ADMISSIONS each.
   */
  #admission(): Call {
    const last = this.#waiting.length > 0 ? this.#waiting[this.#waiting.length - 1] : undefined;
    if (last !== undefined && last.owns.length < MAX_ADMISSIONS) return last;
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const done = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
    const call: Call = { owns: [], done, resolve, reject, reply: null, d: 0, m: 0 };
    this.#waiting.push(call);
    if (!this.#armed) { this.#armed = true; setImmediate(this.#turn); }
    return call;
  }

  readonly #turn = (): void => {
    this.#armed = false;
    const calls = this.#waiting;
    this.#waiting = [];
    for (let i = 0; i < calls.length; i++) this.#send(calls[i]);
  };

  /** One script call, written at once: the queued settlements and the call's admissions. */
  #send(call: Call): void {
    const { d, m } = this.#windowAt(Date.now());
    this.admitCalls++;
    const batch = this.#take();
    this.#script(batch, call.owns, d, m, true).then((r) => {
      if (batch.length > 0) this.#crossed(batch, r[1], d, m);
      call.reply = r;
      call.d = d;
      call.m = m;
      call.resolve();
    }, (e: unknown) => {
      this.#notCarried(batch, e);
      call.reject(e);
    });
  }

  /**
   * The script's call: [script, numKeys, ...keys, ...argv] built in one array of its final size (the
   * runner sends this array itself). Each budget plan its settlements and admissions use goes once.
   */
  #script(batch: Settlement[], owns: Own[], d: number, m: number, now = false): Promise<Reply> {
    const w = this.#window(d, m);
    const call = ++this.#calls;
    const plans = this.#callPlans;
    plans.length = 0;
    let nk = 0;
    let na = 7;
    const use = (plan: BudgetPlan): void => {
      if (plan.call === call) return;
      plan.call = call;
      plans.push(plan);
      plan.index = plans.length;
      nk += plan.keys.length;
      na += 1 + plan.args.length;
    };
    for (let i = 0; i < batch.length; i++) {
      const { ft, tokens } = batch[i];
      use(ft.plan);
      const nr = tokens >= 0 ? ft.tpmKeys.length : 0;
      nk += nr;
      na += nr > 0 ? 6 : 4;
    }
    for (let i = 0; i < owns.length; i++) { use(owns[i].plan); nk += owns[i].keys.length; na += 1 + owns[i].args.length; }
    const out = new Array<string | number>(2 + nk + na);
    out[0] = SCRIPT;
    out[1] = nk;
    let at = 2;
    for (let i = 0; i < plans.length; i++) { const keys = plans[i].keys; for (let j = 0; j < keys.length; j++) out[at++] = keys[j]; }
    for (let i = 0; i < batch.length; i++) {
      const { ft, tokens } = batch[i];
      if (tokens >= 0) for (let j = 0; j < ft.tpmKeys.length; j++) out[at++] = ft.tpmKeys[j];
    }
    for (let i = 0; i < owns.length; i++) { const keys = owns[i].keys; for (let j = 0; j < keys.length; j++) out[at++] = keys[j]; }
    out[at++] = w.dayField;
    out[at++] = w.monthField;
    out[at++] = batch.length;
    out[at++] = BUDGET_KEY_TTL_MS;
    out[at++] = this.#ttl;
    out[at++] = plans.length;
    for (let i = 0; i < plans.length; i++) {
      const args = plans[i].args;
      out[at++] = args.length / 2;
      for (let j = 0; j < args.length; j++) out[at++] = args[j];
    }
    for (let i = 0; i < batch.length; i++) {
      const s = batch[i];
      const { ft, tokens } = s;
      const nr = tokens >= 0 ? ft.tpmKeys.length : 0;
      out[at++] = ft.plan.index * HEAD_PLAN + nr * 4 + (s.retry ? 1 : 0) + (ft.plan.alerts ? 2 : 0);
      if (nr > 0) { out[at++] = tokens; out[at++] = ft.tokens; }
      out[at++] = ft.member;
      out[at++] = this.#amountText(ft.amount);
      out[at++] = this.#chargeText(s.charge);
    }
    out[at++] = owns.length;
    for (let i = 0; i < owns.length; i++) {
      out[at++] = owns[i].plan.index * HEAD_PLAN + owns[i].low;
      const args = owns[i].args;
      for (let j = 0; j < args.length; j++) out[at++] = args[j];
    }
    plans.length = 0;
    return this.#run(out, now);
  }

  /**
   * Send queued settlements alone: no admission came to carry them. #sending is let go in a
   * callback, never inside the sending body: with Redis away that body sends nothing and ends
   * before the assignment, so a `finally` in it cleared #sending before it was set, leaving a
   * settled promise there that every later call returned. No settlement then went alone again
   * (until a restart): a quiet replica's last reservations held their budget for the reservation
   * TTL (15 min), and shutdown did not send the queue.
   */
  #sendQueued(): Promise<void> {
    if (this.#sending) return this.#sending;
    const sending = this.#sendAll().finally(() => {
      this.#sending = null;
      // Redis away: try again later (the queue is bounded meanwhile).
      if (this.#queue.length > 0) this.#arm();
    });
    this.#sending = sending;
    return sending;
  }

  async #sendAll(): Promise<void> {
    while (this.#queue.length > 0 && this.#fleet.admission.status === 'ready') {
      const { d, m } = this.#windowAt(Date.now());
      this.settleCalls++;
      // A failed call queued its settlements again: wait a delay before the next try.
      const batch = this.#take();
      if (batch.length === 0) break;
      try {
        this.#crossed(batch, (await this.#script(batch, SETTLE_ONLY, d, m))[1], d, m);
      } catch (e) {
        this.#notCarried(batch, e);
        break;
      }
    }
  }

  /**
   * One timer for the queue, not one per settle: admissions keep taking the queue, so when it
   * fires it usually finds the queue empty or young and only waits again (a few times a second
   * under load, instead of a setTimeout and clearTimeout per request).
   */
  #arm(delay = this.#settleDelay): void {
    if (this.#idle) return;
    this.#idle = setTimeout(() => {
      this.#idle = null;
      if (this.#queue.length === 0) return;
      const waited = performance.now() - this.#queue[0].at;
      if (waited < this.#settleDelay) this.#arm(this.#settleDelay - waited);
      else void this.#sendQueued();
    }, delay);
  }

  /** Settled spend of the day `d` and month `m` in PostgreSQL, plus what this replica has not flushed. */
  async #settled(names: readonly string[], d: number, m: number): Promise<(key: string, period: Period) => number> {
    let rows: Array<{ key: string; period: string; spent_usd: number }>;
    try {
      rows = await this.#fleet.sql`SELECT key, period, spent_usd FROM budget_spend
        WHERE key = ANY(${names as string[]}) AND ((period = 'daily' AND window_start = ${d}) OR (period = 'monthly' AND window_start = ${m}))`;
      this.#fleet.notePostgres(null);
    } catch (e) {
      this.#fleet.notePostgres(e);
      throw new StoreUnavailable('postgres', `settled budget spend could not be read: ${(e as Error).message}`);
    }
    this.#fold();
    return (key, period) => {
      const start = period === 'daily' ? d : m;
      return (rows.find((x) => x.key === key && x.period === period)?.spent_usd ?? 0) + (this.#pending.get(`${key}|${period}|${start}`) ?? 0);
    };
  }

  /** Seed budget totals of this window into Redis from PostgreSQL (plus what this replica has not flushed). */
  async #seed(req: AdmitRequest, indexes: number[], d: number, m: number): Promise<void> {
    const names = indexes.map((i) => req.budgets[i - 1].key);
    const spent = await this.#settled(names, d, m);
    const p = this.#fleet.prefix;
    const r = this.#fleet.admission;
    try {
      // The keys' expiry is renewed here (the script does not set it per request): a key in use is
      // seeded at least once a month, so it outlives the 35 days only when idle.
      await Promise.all(names.flatMap((key) => [
        r.send('HSETNX', [budgetHash(p, key), `d:${d}`, String(spent(key, 'daily'))]), r.send('HSETNX', [budgetHash(p, key), `m:${m}`, String(spent(key, 'monthly'))]),
        r.send('PEXPIRE', [budgetHash(p, key), BUDGET_KEY_TTL_MS]), r.send('PEXPIRE', [budgetZset(p, key), BUDGET_KEY_TTL_MS]),
      ]));
    } catch (e) {
      throw new StoreUnavailable('redis', (e as Error).message);
    }
  }

  /**
   * Fleet-wide spend of budget keys this day and month and what is reserved now: the live totals
   * the admission script checks, or, for a key no request loaded into Redis yet this window, the
   * settled spend in PostgreSQL (the console's spend per agent; the same on every replica).
   */
  async usage(keys: readonly string[], now = Date.now()): Promise<Map<string, { daily: number; monthly: number; reserved: number }>> {
    const w = this.#windowAt(now);
    const p = this.#fleet.prefix;
    let live: Array<Array<string | null>>;
    try {
      live = await Promise.all(keys.map((k) => this.#fleet.redis.hmget(budgetHash(p, k), w.dayField, w.monthField, 'r')));
    } catch (e) {
      throw new StoreUnavailable('redis', (e as Error).message);
    }
    const cold = keys.filter((_, i) => live[i][0] === null || live[i][1] === null);
    const settled = cold.length > 0 ? await this.#settled(cold, w.d, w.m) : () => 0;
    return new Map(keys.map((k, i) => {
      const [day, month, reserved] = live[i];
      return [k, {
        daily: day !== null ? Number(day) : settled(k, 'daily'),
        monthly: month !== null ? Number(month) : settled(k, 'monthly'),
        reserved: Math.max(0, Number(reserved ?? 0)),
      }];
    }));
  }

  settle(t: Ticket, costUsd: number | null, tokens: number | null): void {
    const ft = t as FleetTicket;
    if (ft.done) return;
    ft.done = true;
    const estimated = costUsd === null || !Number.isFinite(costUsd) || costUsd < 0;
    const charge = estimated ? ft.amount : (costUsd as number);
    const actual = tokens === null || !Number.isFinite(tokens) ? -1 : tokens;
    if (ft.plan.budgets.length > 0 || (actual >= 0 && ft.tpmKeys.length > 0)) this.#enqueue({ ft, charge, tokens: actual, at: performance.now() });
    if (charge > 0 && ft.plan.budgets.length > 0) {
      const w = this.#windowAt(Date.now());
      if (this.#recentWindow !== w) { this.#fold(); this.#recentWindow = w; }
      const plan = ft.plan;
      if (plan.recent === 0) this.#recent.push(plan);
      plan.recent += charge;
    }
  }

  release(t: Ticket): void {
    const ft = t as FleetTicket;
    if (ft.done) return;
    ft.done = true;
    if (ft.plan.budgets.length > 0) this.#enqueue({ ft, charge: 0, tokens: -1, at: performance.now() });
  }

  /**
   * Not awaited by the request: the settlement rides on this replica's next admission script, or
   * goes alone after settleDelayMs. Until then its reservation still holds the budget, so spend
   * never passes the budget by more than the reservations in flight.
   */
  #enqueue(s: Settlement): void {
    if (this.#queue.length >= MAX_QUEUED) this.#onError('settle', new Error(`${this.#queue.length} settlements queued while Redis is away: dropping the oldest (its reservation expires)`));
    if (this.#queue.length >= MAX_QUEUED) this.#queue.shift();
    this.#queue.push(s);
    this.#arm();
  }

  /**
   * Settlements whose call failed, first in line again: the call may or may not have run, so they
   * go as retries (charged only where their reservation is still there: never twice) and without
   * their tpm correction (not idempotent; a minute's window forgets it anyway).
   */
  #again(batch: Settlement[]): void {
    const back: Settlement[] = batch.filter((s) => s.ft.plan.budgets.length > 0).map((s) => ({ ...s, tokens: -1, retry: true }));
    if (back.length === 0) return;
    this.#queue = back.concat(this.#queue);
    if (this.#queue.length > MAX_QUEUED) this.#queue.length = MAX_QUEUED;
    this.#arm();
  }

  #add(k: string, usd: number): void { this.#pending.set(k, (this.#pending.get(k) ?? 0) + usd); }

  /** Move #recent into #pending (per flush, not per request: its keys are built here). */
  #fold(): void {
    const w = this.#recentWindow;
    if (!w) return;
    for (let i = 0; i < this.#recent.length; i++) {
      const plan = this.#recent[i];
      for (const { key } of plan.budgets) {
        this.#add(key + w.pendingDaily, plan.recent);
        this.#add(key + w.pendingMonthly, plan.recent);
      }
      plan.recent = 0;
    }
    this.#recent.length = 0;
  }

  /** Thresholds the charges crossed: the script returned the totals after each, atomically, so one replica sees each crossing. */
  #crossed(batch: Settlement[], totals: string[], d: number, m: number): void {
    let at = 0;
    for (const { ft, charge } of batch) {
      // Only a settlement that reports (its plan has alerts) has totals in the reply.
      if (!ft.plan.alerts) continue;
      for (let j = 0; j < ft.plan.budgets.length; j++) {
        const b = ft.plan.budgets[j];
        if (charge <= 0 || !b.limits.alert_at?.length) continue;
        for (const [period, total, limit, start] of [['daily', totals[at + 2 * j], b.limits.daily_usd, d], ['monthly', totals[at + 2 * j + 1], b.limits.monthly_usd, m]] as const) {
          if (!limit || total === '' || total === undefined) continue;
          const after = Number(total);
          for (const t of b.limits.alert_at ?? []) {
            const line = (limit * t) / 100;
            if (after - charge < line && after >= line) this.#alertOnce(b.key, period, t, after, limit, start);
          }
        }
      }
      at += 2 * ft.plan.budgets.length;
    }
  }

  /** Fire an alert once per key, period, window and threshold fleet-wide (a Redis flag decides who). */
  #alertOnce(key: string, period: Period, threshold: number, spent: number, limit: number, windowStart: number): void {
    this.#fleet.redis.set(`${this.#fleet.prefix}alert:${key}:${period}:${windowStart}:${threshold}`, '1', 'PX', 32 * 86_400_000, 'NX')
      .then((won) => { if (won === 'OK') this.onAlert({ key, period, threshold, spent, limit, windowStart: new Date(windowStart) }); })
      .catch((e: unknown) => this.#onError('budget alert', e));
  }

  /** Write settled spend to PostgreSQL (additive upserts); kept for the next try if it fails. */
  flush(): Promise<void> {
    this.#fold();
    if (this.#flushing || this.#pending.size === 0) return this.#flushing ?? Promise.resolve();
    const batch = this.#pending;
    this.#pending = new Map();
    const rows = [...batch].map(([k, usd]) => { const [key, period, start] = k.split('|'); return { key, period, window_start: Number(start), spent_usd: usd }; });
    this.#flushing = (async () => {
      try {
        await this.#fleet.sql`INSERT INTO budget_spend ${this.#fleet.sql(rows, 'key', 'period', 'window_start', 'spent_usd')}
          ON CONFLICT (key, period, window_start) DO UPDATE SET spent_usd = budget_spend.spent_usd + excluded.spent_usd`;
        this.#fleet.notePostgres(null);
      } catch (e) {
        this.#fleet.notePostgres(e);
        for (const [k, usd] of batch) this.#add(k, usd);
        this.#onError('budget flush', e);
      } finally {
        this.#flushing = null;
      }
    })();
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#idle) { clearTimeout(this.#idle); this.#idle = null; }
    await this.#sendQueued();
    if (this.#idle) { clearTimeout(this.#idle); this.#idle = null; }
    await this.#flushing;
    await this.flush();
  }
}
