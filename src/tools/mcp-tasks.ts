// The MCP Tasks extension (ext-tasks, SEP-2663) relayed through aam. An upstream answers a
// tools/call with `resultType: "task"` and a taskId; the client gets aam's own taskId instead: the
// upstream's, sealed with the caller's SPIFFE ID, the server, the tool, a digest of the call's
// arguments (so the id stays bounded) and the task's expiry. tasks/get, tasks/update and tasks/cancel open it: a task is the creating
// caller's alone (for anyone else it does not exist, like A2A tasks), and each request is decided
// by the same policy as the call that created it (that tool's resource and action; its arguments
// were decided when it was created, so args constraints are not checked again and a `when` reading
// args fails closed), then forwarded with the upstream's taskId (aam declares the extension on it);
// what comes back is held to the SEP's shapes: tasks/get a DetailedTask (a known status, its
// timestamps and the payload its status carries, else 502) with the caller's taskId and the ttlMs
// aam honours, guarded and scrubbed like a result; tasks/update and tasks/cancel the empty
// acknowledgement, nothing of the upstream's answer. Sealed rather than stored, so any replica of a
// fleet serves a task created through another.
import { randomUUID } from 'node:crypto';
import { context, enforceLimit, guardedResult, guardInbound, refuseWithheld, type Extra, type Runtime, type SessionCtx } from './mcp-call.ts';
import type { CompiledTool, ServerEntry } from './catalog.ts';
import { TASK_PREFIX, TASKS_EXT, taskFault, taskTtl, unseal, type TaskBinding } from './mcp-mrtr.ts';
import { CLIENT_CAPS } from './mcp-headers.ts';
import { decisionFields, denialMessage } from './util.ts';
import { identityFields, RPC, ToolError } from './types.ts';
import { errMsg } from '../lib/error-message.ts';

type Json = Record<string, unknown>;

/** A task aam sealed for this caller on this endpoint: its binding, server and creating tool; else "unknown" (404). */
export function openTask(rt: Runtime, s: SessionCtx, taskId: unknown): { b: TaskBinding; entry: ServerEntry; t: CompiledTool } {
  const b = unseal<TaskBinding>(rt.deps.stateKey, TASK_PREFIX, taskId);
  // Another caller's task, an expired one, or one of another endpoint's server: it does not exist here.
  if (!b || b.sub !== s.identity.agent.spiffeId || Date.now() > b.exp || (s.scope !== null && s.scope !== b.server)) {
    throw new ToolError('unknown_task', `unknown task "${String(taskId).slice(0, 48)}"; use a taskId one of your own tools/call requests returned on this endpoint (it expires with the task's ttlMs)`, { code: RPC.notFound, status: 404 });
  }
  const entry = rt.catalog.servers.get(b.server);
  const t = entry?.tools.get(b.tool);
  if (!entry || !t) throw new ToolError('unknown_tool', `the tool that created this task ("${b.tool}" on MCP server "${b.server}") is no longer available`, { code: RPC.notFound, status: 404 });
  return { b, entry, t };
}

/**
 * Decide `method` on a task by the policy of the call that created it (approval, if it needed
 * one, was given then), on record; a deny is thrown. Then, like a call to that tool, a task whose
 * tool definition changed since it was accepted is withheld (refuseWithheld: the same rule and
 * answer as a call or a held approval's retry) until an admin accepts it, except tasks/cancel:
 * stopping the work is never withheld. Returns the evidence fields of the request.
 */
export function decideTask(rt: Runtime, s: SessionCtx, task: { b: TaskBinding; t: CompiledTool }, method: string, requestId: string): Json {
  const { b, t } = task;
  const ev = { plane: 'mcp', request_id: requestId, trace_id: s.access.traceId(), ...identityFields(s.identity), server: b.server, tool: b.tool, resource: t.resource, action: t.action, method, args_digest: b.args };
  const d = s.access.authorize(t.resource, t.action, null, context(rt, s, requestId, { server: b.server, tool: b.tool, method, args_digest: b.args }));
  rt.deps.audit.record({ ...ev, type: 'tool.decision', decision: decisionFields(d) });
  if (d.effect === 'deny' || (!d.allowed && d.effect !== 'approval_required')) {
    throw new ToolError('policy_denied', denialMessage(d, `${method} for a task of tools/call "${b.tool}" (resource ${t.resource}, action ${t.action})`), { code: RPC.denied, status: 403, data: { policy: d.policy, rule: d.rule } });
  }
  if (method !== 'tasks/cancel') refuseWithheld(rt, t, ev);
  return ev;
}

/**
 * A DetailedTask as the caller gets it (tasks/get result, notifications/tasks params): checked
 * against the SEP (a fault is a 502, naming the field, never the upstream's value), with the
 * caller's own taskId and the ttlMs aam honours it for.
 */
function detailedTask(task: { b: TaskBinding }, what: string, r: Json): Json {
  const fault = taskFault(r, true);
  if (fault) throw new ToolError('invalid_task', `MCP server "${task.b.server}" answered ${what} for a task of tools/call "${task.b.tool}" with a task that is not one per the Tasks extension: ${fault}`, { code: RPC.upstream, status: 502 });
  return { ...r, ttlMs: taskTtl(task.b, r.ttlMs) };
}

/** What aam's tasks/* requests upstream declare: the extension they belong to (SEP-2663, per-request capabilities). */
const TASKS_META = { [CLIENT_CAPS]: { extensions: { [TASKS_EXT]: {} } } };

/** tasks/get, tasks/update or tasks/cancel of a 2026-07-28 client. */
export async function taskRequest(rt: Runtime, s: SessionCtx, method: string, params: Json, extra: Extra): Promise<Json> {
  const { deps } = rt;
  const task = openTask(rt, s, params.taskId);
  const { b, entry } = task;
  const requestId = extra.requestId ?? `req_${randomUUID()}`;
  const ev = decideTask(rt, s, task, method, requestId);
  // Whatever else the client sends (tasks/update's inputResponses, any field) goes upstream only through the input guardrails.
  const { _meta: _ignored, taskId: _own, ...rest } = params;
  const inbound = await guardInbound(rt, s, rest, method, requestId, entry.spec.guardrails, ev);
  const r = await entry.upstream.task(method, { ...inbound, taskId: b.up, _meta: TASKS_META }, s.identity, { signal: extra.signal });
  const bytes = enforceLimit(rt, entry, method, r);
  if (method !== 'tasks/get') {
    // An acknowledgement only (SEP-2663): the state is read with tasks/get, so nothing of the upstream's answer is relayed.
    deps.audit.record({ ...ev, type: 'tool.outcome', outcome: { status: 'ok', bytes } });
    return {};
  }
  let detailed: Json;
  try { detailed = detailedTask(task, method, r); } catch (e) {
    deps.audit.record({ ...ev, type: 'tool.outcome', outcome: { status: 'error', error: errMsg(e), bytes } });
    throw e;
  }
  deps.audit.record({ ...ev, type: 'tool.outcome', outcome: { status: `task_${String(r.status)}`, bytes } });
  const out = await guardedResult(rt, s, detailed, `${method} ${b.tool}`, requestId, entry.spec.guardrails);
  return { ...out, taskId: params.taskId };
}

/**
 * An upstream's notifications/tasks as one listen stream's caller gets it: decided like a tasks/get
 * (a deny is thrown), held to the SEP's DetailedTask (else thrown: ToolError 'invalid_task'),
 * size-limited, guarded and scrubbed like a result, with the caller's task id.
 */
export async function taskNotification(rt: Runtime, s: SessionCtx, task: { b: TaskBinding; entry: ServerEntry; t: CompiledTool }, taskId: string, params: Json, listenRequestId?: string): Promise<Json> {
  // Filed under the listen stream's request (aam's x-request-id of the subscriptions/listen that asked for it).
  const requestId = listenRequestId ?? `req_${randomUUID()}`;
  const ev = decideTask(rt, s, task, 'notifications/tasks', requestId);
  const { _meta: _ignored, ...rest } = params;
  const bytes = enforceLimit(rt, task.entry, 'notifications/tasks', rest);
  let detailed: Json;
  try { detailed = detailedTask(task, 'notifications/tasks', rest); } catch (e) {
    rt.deps.audit.record({ ...ev, type: 'tool.outcome', outcome: { status: 'error', error: errMsg(e), bytes } });
    throw e;
  }
  rt.deps.audit.record({ ...ev, type: 'tool.outcome', outcome: { status: `task_${String(rest.status)}`, bytes } });
  const out = await guardedResult(rt, s, detailed, `notifications/tasks ${task.b.tool}`, requestId, task.entry.spec.guardrails);
  return { ...out, taskId };
}
