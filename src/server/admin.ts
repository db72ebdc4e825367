// Admin API (/admin/v1/...) and the AuthZEN decision endpoint. Authenticated only by
// AAM_ADMIN_TOKEN: an agent's virtual key or JWT can never reach these routes.
import { timingSafeEqual, createHash } from 'node:crypto';
import { AamError } from './errors.ts';
import { readJson, sendJson, type Ctx } from './context.ts';
import type { Handler, Routes } from './http.ts';
import { queryEvents, showRequest } from '../audit/query.ts';
import { sinceTime } from '../gateway/usage.ts';
import { evaluateAuthZen, evaluateAuthZenBatch, lookupInConfig } from '../policy/authzen.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

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

export function requireAdmin(ctx: Ctx): string {
  const token = ctx.rt.options.adminToken;
  if (!token) throw new AamError(401, 'admin_unauthorized', 'the admin API is disabled: start aam with AAM_ADMIN_TOKEN set');
  const auth = ctx.req.headers.authorization;
  const m = typeof auth === 'string' ? /^Bearer\s+(\S+)$/i.exec(auth) : null;
  // Compare digests so the comparison is constant-time whatever the lengths.
  if (!m || !timingSafeEqual(digest(m[1]), digest(token))) {
    throw new AamError(401, 'admin_unauthorized', 'admin API needs "Authorization: Bearer $AAM_ADMIN_TOKEN"; agent keys are not accepted here', { headers: { 'www-authenticate': 'Bearer realm="aam-admin"' } });
  }
  return 'admin';
}

function audit(ctx: Ctx, action: string, target: string, extra: Record<string, unknown> = {}): void {
  ctx.rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action, target, actor: 'admin-token', ...extra }, outcome: { status: 200 } });
}

const sinceParam = (ctx: Ctx): number => {
  try { return sinceTime(new URLSearchParams(ctx.query).get('since') ?? undefined); } catch (e) {
    throw new AamError(400, 'invalid_request', `since: ${(e as Error).message}`, { param: 'since' });
  }
};

/** Admin handlers by "METHOD /path" below /admin/v1; ids are taken from the path. */
async function adminDispatch(ctx: Ctx): Promise<void> {
  requireAdmin(ctx);
  const rest = ctx.path.slice('/admin/v1'.length);
  const method = ctx.req.method;
  const rt = ctx.rt;
  let m: RegExpExecArray | null;
  if (method === 'GET' && rest === '/keys') return sendJson(ctx, 200, { data: rt.keys.list() });
  if (method === 'POST' && rest === '/keys') {
    const body = (await readJson(ctx)) as { agent?: unknown; name?: unknown };
    if (typeof body.agent !== 'string' || !ctx.cfg.policies.agents.has(body.agent)) {
      throw new AamError(400, 'invalid_request', `agent: must name an Agent in the config (${[...ctx.cfg.policies.agents.keys()].join(', ')})`, { param: 'agent' });
    }
    const { key, secret } = rt.keys.create(body.agent, { name: typeof body.name === 'string' ? body.name : undefined });
    audit(ctx, 'key_created', key.id, { agent: key.agent });
    return sendJson(ctx, 201, { ...key, key: secret });
  }
  if (method === 'POST' && (m = /^\/keys\/([\w-]+)\/revoke$/.exec(rest))) {
    const key = wrap(() => rt.keys.revoke(m![1]));
    audit(ctx, 'key_revoked', key.id, { agent: key.agent });
    return sendJson(ctx, 200, key);
  }
  if (method === 'POST' && (m = /^\/keys\/([\w-]+)\/rotate$/.exec(rest))) {
    const body = (await readJson(ctx).catch(() => ({}))) as { grace_seconds?: unknown };
    const grace = typeof body.grace_seconds === 'number' ? body.grace_seconds : 3600;
    const { key, secret } = wrap(() => rt.keys.rotate(m![1], grace));
    audit(ctx, 'key_rotated', key.id, { agent: key.agent, grace_seconds: grace });
    return sendJson(ctx, 200, { ...key, key: secret, previous_valid_for_seconds: grace });
  }
  if (method === 'GET' && rest === '/usage') {
    const by = new URLSearchParams(ctx.query).get('by') ?? 'agent';
    if (!['agent', 'team', 'model', 'route'].includes(by)) throw new AamError(400, 'invalid_request', 'by: one of agent, team, model, route', { param: 'by' });
    rt.usage.flush();
    return sendJson(ctx, 200, { by, data: rt.usage.summary(by as 'agent', sinceParam(ctx)) });
  }
  if (method === 'POST' && rest === '/reload') {
    const error = rt.reload('admin-token');
    return error ? sendJson(ctx, 422, { ok: false, error, version: rt.compiled.version }) : sendJson(ctx, 200, { ok: true, version: rt.compiled.version });
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
  if (method === 'GET' && rest === '/audit' && rt.auditLog) {
    await rt.auditLog.flush();
    const q = new URLSearchParams(ctx.query);
    const limit = Math.min(10_000, Number(q.get('limit') ?? 100) || 100);
    try {
      return sendJson(ctx, 200, { data: queryEvents(rt.auditLog.db, {
        agent: q.get('agent') ?? undefined, since: q.get('since') ? new Date(sinceParam(ctx)) : undefined, decision: q.get('decision') ?? undefined,
        requestId: q.get('request_id') ?? undefined, type: q.get('type') ?? undefined, limit,
      }) });
    } catch (e) { throw new AamError(400, 'invalid_request', (e as Error).message); }
  }
  if (method === 'GET' && (m = /^\/audit\/requests\/([\w.:-]+)$/.exec(rest)) && rt.auditLog) {
    await rt.auditLog.flush();
    return sendJson(ctx, 200, { request_id: m[1], data: showRequest(rt.auditLog.db, m[1]) });
  }
  const tools = rt.tools;
  if (tools) {
    if (method === 'GET' && rest === '/approvals') {
      const status = new URLSearchParams(ctx.query).get('status') ?? undefined;
      return sendJson(ctx, 200, { data: tools.mcp.approvals.list(status ? { status: status as 'pending' } : undefined) });
    }
    if (method === 'POST' && (m = /^\/approvals\/([\w-]+)\/(approve|reject)$/.exec(rest))) {
      const a = wrap(() => (m![2] === 'approve' ? tools.mcp.approvals.approve(m![1], 'admin-token') : tools.mcp.approvals.reject(m![1], 'admin-token')));
      audit(ctx, m[2] === 'approve' ? 'approval_granted' : 'approval_rejected', m[1]);
      return sendJson(ctx, 200, a);
    }
    if (method === 'GET' && rest === '/tools/flagged') return sendJson(ctx, 200, { data: tools.mcp.flaggedTools() });
    if (method === 'GET' && rest === '/mcp/status') return sendJson(ctx, 200, tools.mcp.status());
    if ((m = /^\/tools\/([^/]+)\/([^/]+)\/(diff|accept)$/.exec(rest))) {
      const [server, tool] = [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
      if (method === 'GET' && m[3] === 'diff') return sendJson(ctx, 200, wrap(() => tools.mcp.toolDiff(server, tool)));
      if (method === 'POST' && m[3] === 'accept') {
        const d = wrap(() => tools.mcp.acceptTool(server, tool, 'admin-token'));
        audit(ctx, 'tool_definition_accepted', `${server}/${tool}`, { digest: d.currentDigest });
        return sendJson(ctx, 200, d);
      }
    }
  }
  throw new AamError(404, 'not_found', `no admin route ${method} ${ctx.path}`);
}

function wrap<T>(fn: () => T): T {
  try { return fn(); } catch (e) { throw new AamError(404, 'not_found', (e as Error).message); }
}

const authzen = (batch: boolean): Handler => async (ctx) => {
  requireAdmin(ctx);
  const body = await readJson(ctx);
  const compiled = ctx.cfg.policies;
  const r = batch ? evaluateAuthZenBatch(body, lookupInConfig(compiled), compiled) : evaluateAuthZen(body, lookupInConfig(compiled), compiled);
  sendJson(ctx, r.status, r.body);
};

export function addAdminRoutes(routes: Routes): void {
  routes.exact.set('POST /access/v1/evaluation', authzen(false));
  routes.exact.set('POST /access/v1/evaluations', authzen(true));
  routes.prefixes.push(['/admin/v1/', adminDispatch]);
}
