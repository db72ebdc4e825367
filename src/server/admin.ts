// Admin API (/admin/v1/...) and the AuthZEN decision endpoint. Opened by AAM_ADMIN_TOKEN
// (break-glass admin), a console session or an OIDC ID token (console/auth.ts), with the person's
// role checked per route: viewer reads, approver decides held calls, operator changes keys, tool
// pins and reloads, admin sets credentials. An agent's virtual key or JWT never gets in.
import { AamError, pathSegment, toAamError } from '../access/errors.ts';
import { StoreUnavailable, postgresUnreachable } from '../store/types.ts';
import { APPROVAL_STATUSES, type ApprovalStatus } from '../store/approvals.ts';
import { readJson, sendJson } from '../access/request.ts';
import type { Ctx, Handler, Routes } from './http.ts';
import type { Runtime } from '../runtime.ts';
import { decisionArg, limitArg, MAX_LIMIT, planeArg, queryEvents, showRequest } from '../audit/query.ts';
import { sinceTime, USAGE_GROUPINGS, type UsageGrouping } from '../gateway/usage.ts';
import { evaluateAuthZen, evaluateAuthZenBatch, lookupInConfig } from '../policy/authzen.ts';
import { AdminTokenRefused, createHumanAuth, mustHave, RoleRefused, type HumanAuth, type Principal } from '../console/auth.ts';
import { consoleStores } from '../console/sessions.ts';
import type { FleetCursor } from '../audit/fleet-log.ts';
import { MAX_TAILS, tailAudit, tailFleetAudit, type StillAllowed, type TailCounter } from '../console/tail.ts';
import { agentsOverview, capabilities, latestCheckpoint, simulate } from '../console/views.ts';
import { isObj } from '../lib/json.ts';
import { graceProblem, keyNameProblem } from '../store/key-secrets.ts';

const isGrouping = (by: string): by is UsageGrouping => (USAGE_GROUPINGS as readonly string[]).includes(by);

export const MIN_ADMIN_TOKEN_LENGTH = 32;

/**
 * Why an AAM_ADMIN_TOKEN is too weak to guard the admin API, or undefined when it is fine. The
 * token is a bearer secret compared as is, so only length and obvious patterns can be judged:
 * short, few distinct characters, a repeated chunk ("abcabc...") or a straight run ("0123...").
 * The reason never quotes the token (it ends up in logs).
 */
export function adminTokenWeakness(token: string): string | undefined {
  if (/\s/.test(token)) return 'it contains whitespace, which an "Authorization: Bearer" header cannot carry';
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) return `it is ${token.length} characters long; at least ${MIN_ADMIN_TOKEN_LENGTH} are needed`;
  if (token.length > 1024) return 'it is longer than 1024 characters';
  if (new Set(token).size < 8) return 'it uses fewer than 8 distinct characters';
  for (let period = 1; period <= token.length / 2; period++) {
    if (token.slice(period) === token.slice(0, -period)) return 'it is one short chunk repeated';
  }
  const step = token.charCodeAt(1) - token.charCodeAt(0);
  if (Math.abs(step) <= 1 && [...token].every((c, i) => i === 0 || c.charCodeAt(0) - token.charCodeAt(i - 1) === step)) return 'it is a run of consecutive characters';
  return undefined;
}

/** Startup check: a weak admin token is refused with how to make a good one. */
export function checkAdminToken(token: string | undefined): void {
  if (!token) return; // unset: the admin API is off
  const weak = adminTokenWeakness(token);
  if (weak) throw new Error(`AAM_ADMIN_TOKEN is too weak to guard the admin API (${weak}). Use a random token of at least ${MIN_ADMIN_TOKEN_LENGTH} characters, e.g. AAM_ADMIN_TOKEN=$(openssl rand -hex 32)`);
}

/** Token-only authentication when no console is wired (tests and tools that build their own routes). */
function tokenOnlyAuth(rt: Runtime): HumanAuth {
  return createHumanAuth({ ...consoleStores(rt), config: () => rt.compiled.set, adminToken: rt.options.adminToken, oidc: null, publicUrl: rt.options.publicUrl, tls: false });
}

function audit(ctx: Ctx, who: Principal, action: string, target: string, extra: Record<string, unknown> = {}): void {
  ctx.rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action, target, actor: who.actor, ...extra }, outcome: { status: 200 } });
}

const sinceParam = (ctx: Ctx): number => {
  try { return sinceTime(new URLSearchParams(ctx.query).get('since') ?? undefined); } catch (e) {
    throw new AamError(400, 'invalid_request', `since: ${(e as Error).message}`, { param: 'since' });
  }
};

/** The members of `team` in the running config: the audit filter `team` is "events of these agents". */
function teamAgents(rt: Runtime, team: string): string[] {
  return [...rt.compiled.policies.agents.values()].filter((a) => a.team === team).map((a) => a.name);
}

/** What the audit live tail filters on (query parameters agent, team, decision, type, plane). */
function tailFilters(rt: Runtime, q: URLSearchParams) {
  const team = q.get('team');
  return {
    agent: q.get('agent') ?? undefined, agents: team ? teamAgents(rt, team) : undefined, decision: q.get('decision') ? decisionParam(q.get('decision') as string) : undefined,
    type: q.get('type') ?? undefined, plane: q.get('plane') ? planeParam(q.get('plane') as string) : undefined,
  };
}

/** The audit query's filters: the tail's, plus one request or one trace, and how many events at most. */
function auditFilters(rt: Runtime, q: URLSearchParams) {
  return { ...tailFilters(rt, q), requestId: q.get('request_id') ?? undefined, traceId: q.get('trace_id') ?? undefined, limit: limitParam(q.get('limit') ?? undefined) };
}

/**
 * Paging the audit list (newest first): a full page's answer names where it ended (`next_before`,
 * opaque: base64url JSON of the last event's seq, or in a fleet its time, replica and seq, the
 * order PostgreSQL lists them in), and `before=` that value asks for the page after it. Keyset, not
 * offset: events committed meanwhile neither repeat nor skip a row.
 */
function nextBefore(data: ReadonlyArray<{ seq?: unknown; time?: unknown; replica?: unknown }>, limit: number | undefined): string | null {
  const last = data.at(-1);
  if (!last || data.length < (limit ?? 100)) return null;
  const at = last.replica === undefined ? [last.seq] : [last.time, last.replica, last.seq];
  return Buffer.from(JSON.stringify(at)).toString('base64url');
}

function beforeParam(q: URLSearchParams, fleet: boolean): { beforeSeq?: number; after?: FleetCursor } {
  const v = q.get('before');
  if (v === null) return {};
  let at: unknown;
  try { at = JSON.parse(Buffer.from(v, 'base64url').toString('utf8')); } catch { at = null; }
  const ok = Array.isArray(at) && Number.isSafeInteger(at.at(-1)) && (fleet ? at.length === 3 && typeof at[0] === 'string' && typeof at[1] === 'string' : at.length === 1);
  if (!ok) throw new AamError(400, 'invalid_request', 'before: pass the next_before value of the previous page as it came', { param: 'before' });
  const a = at as unknown[];
  return fleet ? { after: { ts: a[0] as string, replica: a[1] as string, seq: a[2] as number } } : { beforeSeq: a[0] as number };
}

// A store that cannot answer is not a bad query: passed on, as storeRefusal's 503.
const badQuery = (e: unknown): unknown => (e instanceof AamError || postgresUnreachable(e) ? e : new AamError(400, 'invalid_request', (e as Error).message));
/** A query parameter's check (audit/query.ts) whose refusal is the API's 400 with the check's message. */
const asParam = <A, T>(check: (v: A) => T) => (v: A): T => { try { return check(v); } catch (e) { throw badQuery(e); } };
const planeParam = asParam(planeArg);
const decisionParam = asParam(decisionArg);
const limitParam = asParam(limitArg);


/**
 * A person refused for want of a role is evidence too (who tried what): one admin event naming
 * them, the route, the role it needs and the one they have. A wrong AAM_ADMIN_TOKEN is recorded
 * (rate-limited, by the auth module); other unauthenticated refusals (401) name nobody and are
 * not; a CSRF refusal is the browser's, not the person's.
 */
function recordRefusal(ctx: Ctx, auth: HumanAuth, e: unknown): void {
  if (e instanceof AdminTokenRefused) { auth.recordTokenRefused(ctx, e); return; }
  if (!(e instanceof RoleRefused)) return;
  ctx.rt.audit?.record({
    type: 'admin', request_id: ctx.requestId, admin: { action: 'admin_denied', target: `${ctx.req.method} ${ctx.path}`, actor: e.actor },
    detail: { need: e.need, role: e.have ?? 'none' }, outcome: { status: 403, error: e.message },
  });
}

/** An optional JSON body ({} when empty); a body that is there must be valid. */
async function optionalJson(ctx: Ctx): Promise<Record<string, unknown>> {
  if (!Number(ctx.req.headers['content-length'] ?? 0) && !ctx.req.headers['transfer-encoding']) return {};
  const b = await readJson(ctx, 64 * 1024);
  if (!isObj(b)) throw new AamError(400, 'invalid_request', 'body must be a JSON object');
  return b;
}

/** Identity methods seen per agent; null (shown as unavailable, not as none seen) when its store does not answer. */
const seenTable = (rt: Runtime) => rt.identitySeen.table().catch(() => null);

/** A live tail's reader asked again, as at its first request: the same session or token, still valid, still holding a role. */
// Passive: an open tail alone does not keep a session from idling out (only the person's requests do).
// Passive too for renewal: the tail never renews a session at the IdP; past its ID token it ends
// (code renewal_due) and the person's next request renews it.
const stillReader = (ctx: Ctx, auth: HumanAuth): StillAllowed => () => auth.require(ctx.req, 'viewer', true).then(() => null, (e: unknown) => {
  const { status, message, code } = toAamError(e);
  return { status, message, code };
});

/** Admin handlers by "METHOD /path" below /admin/v1; ids are taken from the path. */
async function adminDispatch(ctx: Ctx, auth: HumanAuth, tails: TailCounter): Promise<void> {
  // Every route needs at least viewer; changes check their own role below.
  const who = await auth.require(ctx.req, 'viewer');
  const rest = ctx.path.slice('/admin/v1'.length);
  const method = ctx.req.method;
  const rt = ctx.rt;
  let m: RegExpExecArray | null;
  if (method === 'GET' && rest === '/me') {
    return sendJson(ctx, 200, { actor: who.actor, role: who.role, csrf_token: who.session?.csrf ?? null, session_expires_at: who.session ? new Date(who.session.expiresAt).toISOString() : null, session_renews: who.session?.renews ?? null });
  }
  if (method === 'GET' && rest === '/keys') return sendJson(ctx, 200, { data: await rt.keyBook.list() });
  if (method === 'GET' && rest === '/agents') return sendJson(ctx, 200, { data: await agentsOverview(rt, ctx.cfg, await rt.keyBook.list(), await seenTable(rt)) });
  if (method === 'GET' && (m = /^\/agents\/([^/]+)$/.exec(rest))) {
    const name = pathSegment(m[1], 'agent name');
    const a = ctx.cfg.policies.agents.get(name);
    if (!a) throw new AamError(404, 'not_found', `no Agent "${name}" in the config`);
    return sendJson(ctx, 200, { agent: a, ...capabilities(a, ctx.cfg) });
  }
  if (method === 'POST' && rest === '/policy/explain') {
    const body = await optionalJson(ctx);
    return sendJson(ctx, 200, simulate(body, ctx.cfg.policies));
  }
  if (method === 'POST' && rest === '/keys') {
    mustHave(who, 'operator');
    const body = (await readJson(ctx)) as { agent?: unknown; name?: unknown };
    if (typeof body.agent !== 'string' || !ctx.cfg.policies.agents.has(body.agent)) {
      throw new AamError(400, 'invalid_request', `agent: must name an Agent in the config (${[...ctx.cfg.policies.agents.keys()].join(', ')})`, { param: 'agent' });
    }
    const badName = body.name === undefined ? undefined : keyNameProblem(body.name);
    if (badName) throw new AamError(400, 'invalid_request', `name ${badName}`, { param: 'name' });
    const { key, secret } = await rt.keyBook.create(body.agent, { name: body.name as string | undefined });
    audit(ctx, who, 'key_created', key.id, { agent: key.agent });
    return sendJson(ctx, 201, { ...key, key: secret });
  }
  if (method === 'POST' && (m = /^\/keys\/([\w-]+)\/revoke$/.exec(rest))) {
    mustHave(who, 'operator');
    const key = await wrapAsync(() => rt.keyBook.revoke(m![1]));
    audit(ctx, who, 'key_revoked', key.id, { agent: key.agent });
    return sendJson(ctx, 200, key);
  }
  if (method === 'POST' && (m = /^\/keys\/([\w-]+)\/rotate$/.exec(rest))) {
    mustHave(who, 'operator');
    const body = await optionalJson(ctx);
    const grace = 'grace_seconds' in body ? body.grace_seconds : 3600;
    const bad = graceProblem(grace);
    if (bad) throw new AamError(400, 'invalid_request', `grace_seconds ${bad}`, { param: 'grace_seconds' });
    const { key, secret } = await wrapAsync(() => rt.keyBook.rotate(m![1], grace as number));
    audit(ctx, who, 'key_rotated', key.id, { agent: key.agent, grace_seconds: grace });
    return sendJson(ctx, 200, { ...key, key: secret, previous_valid_for_seconds: grace });
  }
  if (method === 'GET' && rest === '/usage/daily') {
    const by = new URLSearchParams(ctx.query).get('by') ?? 'agent';
    if (!isGrouping(by)) throw new AamError(400, 'invalid_request', `by: one of ${USAGE_GROUPINGS.join(', ')}`, { param: 'by' });
    rt.usage.flush();
    if (rt.fleet) return sendJson(ctx, 200, { by, data: await rt.fleet.usage.settled().then(() => rt.fleet!.usage.daily(by, sinceParam(ctx))) });
    return sendJson(ctx, 200, { by, data: rt.usage.daily(by, sinceParam(ctx)) });
  }
  if (method === 'GET' && rest === '/usage') {
    const by = new URLSearchParams(ctx.query).get('by') ?? 'agent';
    if (!isGrouping(by)) throw new AamError(400, 'invalid_request', `by: one of ${USAGE_GROUPINGS.join(', ')}`, { param: 'by' });
    rt.usage.flush();
    // Fleet: every replica's rollups (this one's last second first written).
    if (rt.fleet) return sendJson(ctx, 200, { by, data: await rt.fleet.usage.settled().then(() => rt.fleet!.usage.summary(by, sinceParam(ctx))) });
    return sendJson(ctx, 200, { by, data: rt.usage.summary(by, sinceParam(ctx)) });
  }
  if (method === 'POST' && rest === '/reload') {
    mustHave(who, 'operator');
    const error = await rt.reloadInBackground(who.actor);
    return error ? sendJson(ctx, 422, { ok: false, error, version: rt.compiled.version }) : sendJson(ctx, 200, { ok: true, version: rt.compiled.version });
  }
  if (method === 'GET' && rest === '/credentials') return sendJson(ctx, 200, { data: rt.vault.list() });
  if (method === 'POST' && (m = /^\/credentials\/([\w.-]+)$/.exec(rest))) {
    mustHave(who, 'admin');
    const body = await optionalJson(ctx);
    if (typeof body.secret !== 'string' || !body.secret) throw new AamError(400, 'invalid_request', 'secret: the new value of this stored credential, as a string', { param: 'secret' });
    let r: { name: string; version: number };
    try { r = await rt.vault.set(m[1], body.secret); } catch (e) { throw new AamError(400, 'invalid_request', (e as Error).message); }
    audit(ctx, who, 'credential_set', r.name, { version: r.version });
    return sendJson(ctx, 200, { name: r.name, version: r.version });
  }
  if (method === 'GET' && rest === '/config') {
    const c = rt.compiled;
    return sendJson(ctx, 200, {
      version: c.version, files: c.set.files,
      providers: [...c.providers.values()].map((p) => ({ name: p.name, type: p.type, enabled: p.enabled, reason: p.disabledReason })),
      models: [...c.routes.values()].map((r) => ({ name: r.name, kind: r.kind, strategy: r.strategy, targets: r.targets.map((t) => ({ target: t.label, enabled: t.provider.enabled, breaker: t.breaker.state })) })),
      agents: [...c.policies.agents.values()], policies: c.policies.policies.map((p) => p.name),
    });
  }
  // Fleet mode: the trail is in PostgreSQL; answer fleet-wide from it (this replica's own events first committed).
  if (method === 'GET' && rt.fleet && !rt.auditLog && rt.audit && (rest === '/audit' || /^\/audit\/requests\/[\w.:-]+$/.test(rest))) {
    await rt.audit.journaled?.().catch(() => {});
    const q = new URLSearchParams(ctx.query);
    const one = /^\/audit\/requests\/([\w.:-]+)$/.exec(rest)?.[1];
    let data;
    try {
      data = await (await import('../audit/fleet-log.ts')).queryFleetEvents(rt.fleet.fleet.sql, one ? { requestId: one, limit: MAX_LIMIT } : {
        ...auditFilters(rt, q), since: q.get('since') ? new Date(sinceParam(ctx)).toISOString() : undefined, ...beforeParam(q, true),
      });
    } catch (e) { throw badQuery(e); }
    return sendJson(ctx, 200, one ? { request_id: one, data: data.reverse() } : { data, next_before: nextBefore(data, auditFilters(rt, q).limit) });
  }
  if (method === 'GET' && rest === '/audit' && rt.auditLog) {
    await rt.auditLog.flush();
    const q = new URLSearchParams(ctx.query);
    try {
      const f = { ...auditFilters(rt, q), since: q.get('since') ? new Date(sinceParam(ctx)) : undefined, ...beforeParam(q, false) };
      const data = queryEvents(rt.auditLog.db, f);
      return sendJson(ctx, 200, { data, next_before: nextBefore(data, f.limit) });
    } catch (e) { throw badQuery(e); }
  }
  if (method === 'GET' && rest === '/audit/stream' && rt.fleet && !rt.auditLog && rt.audit) {
    if (tails.open >= MAX_TAILS) throw new AamError(503, 'unavailable', `${MAX_TAILS} audit tails are open on this gateway already; close one or query /admin/v1/audit`, { headers: { 'retry-after': '10' } });
    const q = new URLSearchParams(ctx.query);
    const audit = rt.audit;
    return tailFleetAudit(ctx.res, rt.fleet.fleet.sql, async () => { await audit.journaled?.(); }, tailFilters(rt, q), tails, { 'x-request-id': ctx.requestId }, stillReader(ctx, auth));
  }
  if (method === 'GET' && rest === '/audit/stream' && rt.auditLog) {
    if (tails.open >= MAX_TAILS) throw new AamError(503, 'unavailable', `${MAX_TAILS} audit tails are open on this gateway already; close one or query /admin/v1/audit`, { headers: { 'retry-after': '10' } });
    const q = new URLSearchParams(ctx.query);
    return tailAudit(ctx.res, rt.auditLog, tailFilters(rt, q), tails, { 'x-request-id': ctx.requestId }, stillReader(ctx, auth));
  }
  if (method === 'GET' && (m = /^\/audit\/requests\/([\w.:-]+)$/.exec(rest)) && rt.auditLog) {
    await rt.auditLog.flush();
    return sendJson(ctx, 200, { request_id: m[1], data: showRequest(rt.auditLog.db, m[1]), checkpoint: latestCheckpoint(rt.auditLog.db) });
  }
  const tools = rt.tools;
  if (tools) {
    if (method === 'GET' && rest === '/approvals') {
      const status = new URLSearchParams(ctx.query).get('status') ?? undefined;
      // A misspelt status would list nothing, as if no call were held.
      if (status && !APPROVAL_STATUSES.includes(status as ApprovalStatus)) throw new AamError(400, 'invalid_request', `status must be one of ${APPROVAL_STATUSES.join(', ')}, not "${status}"`);
      return sendJson(ctx, 200, { data: await tools.mcp.approvals.list(status ? { status: status as ApprovalStatus } : undefined) });
    }
    if (method === 'POST' && (m = /^\/approvals\/([\w-]+)\/(approve|reject)$/.exec(rest))) {
      mustHave(who, 'approver');
      const body = await optionalJson(ctx);
      const reason = typeof body.reason === 'string' ? body.reason.slice(0, 1000) : undefined;
      const a = await wrapAsync(() => (m![2] === 'approve' ? tools.mcp.approvals.approve(m![1], who.label) : tools.mcp.approvals.reject(m![1], who.label)));
      audit(ctx, who, m[2] === 'approve' ? 'approval_granted' : 'approval_rejected', m[1], { ...(reason ? { reason } : {}), agent: a.agent, tool: a.target });
      return sendJson(ctx, 200, { ...a, decisionReason: reason ?? null });
    }
    if (method === 'GET' && rest === '/tools/flagged') return sendJson(ctx, 200, { data: tools.mcp.flaggedTools() });
    if (method === 'GET' && rest === '/mcp/status') return sendJson(ctx, 200, tools.mcp.status());
    if ((m = /^\/tools\/([^/]+)\/([^/]+)\/(diff|accept)$/.exec(rest))) {
      const [server, tool] = [pathSegment(m[1], 'MCP server name'), pathSegment(m[2], 'tool name')];
      // A misspelt server would read as a tool "unknown" so far (200), not as a name that is not there.
      const servers = [...rt.compiled.set.mcpServers.keys()];
      if (!servers.includes(server)) throw new AamError(404, 'not_found', `no McpServer "${server}" in the config (defined: ${servers.join(', ') || 'none'})`);
      if (method === 'GET' && m[3] === 'diff') return sendJson(ctx, 200, wrap(() => tools.mcp.toolDiff(server, tool)));
      if (method === 'POST' && m[3] === 'accept') {
        mustHave(who, 'operator');
        const d = await wrapAsync(() => tools.mcp.acceptTool(server, tool, who.label));
        audit(ctx, who, 'tool_definition_accepted', `${server}/${tool}`, { digest: d.currentDigest });
        return sendJson(ctx, 200, d);
      }
    }
  }
  throw new AamError(404, 'not_found', `no admin route ${method} ${ctx.path}`);
}

function wrap<T>(fn: () => T): T {
  try { return fn(); } catch (e) { throw new AamError(404, 'not_found', (e as Error).message); }
}

async function wrapAsync<T>(fn: () => Promise<T>): Promise<T> {
  try { return await fn(); } catch (e) {
    // A fleet store that cannot answer is 503 (retry, storeRefusal), not "not found".
    if (e instanceof StoreUnavailable || postgresUnreachable(e)) throw e;
    throw new AamError(404, 'not_found', (e as Error).message);
  }
}

/**
 * A fleet store that cannot answer (keys, usage, the audit trail, approvals: PostgreSQL) is 503
 * store_unavailable on the admin API too, as on every plane: retry, never a 500 or a 400 blaming the request.
 */
function storeRefusal(e: unknown): unknown {
  const down = e instanceof StoreUnavailable ? e : postgresUnreachable(e) ? new StoreUnavailable('postgres', (e as Error).message) : null;
  if (!down) return e;
  return new AamError(503, 'store_unavailable', `${down.storeName} (the fleet store) is unavailable: ${down.message}; retry shortly`, { headers: { 'retry-after': '1' } });
}

/**
 * Every admin answer (data, a new key's secret, the CSRF token, errors) is for the person who asked
 * only: no cache keeps it (browser disk cache, a proxy), and no browser reads it as anything but JSON.
 */
function privateAnswer(ctx: Ctx): void {
  ctx.res.setHeader('cache-control', 'no-store');
  ctx.res.setHeader('x-content-type-options', 'nosniff');
}

const authzen = (batch: boolean, auth: (ctx: Ctx) => HumanAuth): Handler => async (ctx) => {
  privateAnswer(ctx);
  const a = auth(ctx);
  await a.require(ctx.req, 'viewer').catch((e: unknown) => { recordRefusal(ctx, a, e); throw e; });
  const body = await readJson(ctx);
  const compiled = ctx.cfg.policies;
  const r = batch ? evaluateAuthZenBatch(body, lookupInConfig(compiled), compiled) : evaluateAuthZen(body, lookupInConfig(compiled), compiled);
  sendJson(ctx, r.status, r.body);
};

/** `auth`: the console's authentication (sessions, OIDC); without it only AAM_ADMIN_TOKEN opens the admin API. */
export function addAdminRoutes(routes: Routes, auth?: HumanAuth): void {
  let fallback: HumanAuth | null = null;
  const authOf = (ctx: Ctx) => auth ?? (fallback ??= tokenOnlyAuth(ctx.rt));
  routes.exact.set('POST /access/v1/evaluation', authzen(false, authOf));
  routes.exact.set('POST /access/v1/evaluations', authzen(true, authOf));
  const tails: TailCounter = { open: 0 };
  routes.prefixes.push(['/admin/v1/', (ctx) => {
    privateAnswer(ctx);
    const a = authOf(ctx);
    return adminDispatch(ctx, a, tails).catch((e: unknown) => { recordRefusal(ctx, a, e); throw storeRefusal(e); });
  }]);
}
