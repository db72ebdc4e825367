// OCSF mapping: every audit event as an API Activity (class_uid 6003, category 6 Application
// Activity, schema 1.3.0: actor, api and src_endpoint required). The event's own fields go to
// `unmapped` whole (less what metadata carries), so nothing is lost. Events of both shapes (nested
// identity/policy/tool, and the tool planes' flat ones) are read through event.ts's views.
import { identityOf, policyOf, toolOf, type AuditEvent, type AuditPolicy } from './event.ts';

export interface OcsfApiActivity {
  class_uid: 6003;
  class_name: 'API Activity';
  category_uid: 6;
  category_name: 'Application Activity';
  activity_id: number;
  activity_name: string;
  type_uid: number;
  time: number;
  severity_id: number;
  status_id: number;
  status?: string;
  status_code?: string;
  status_detail?: string;
  message: string;
  metadata: { version: string; product: { name: string; vendor_name: string }; uid: string; correlation_uid: string; sequence: number; log_name: string };
  actor: { user?: { name: string; uid: string; email_addr?: string; groups?: { name: string }[] }; app_name?: string };
  /** Who the call came from: the workload's SPIFFE ID, the person, or aam itself (aam keeps no client address). */
  src_endpoint: { uid?: string; name?: string; svc_name?: string };
  api: { operation: string; service: { name: string }; request: { uid: string } };
  resources?: { name: string; type: string; data?: unknown }[];
  unmapped: Record<string, unknown>;
}

const ACTIVITY: Record<string, [number, string]> = { create: [1, 'Create'], read: [2, 'Read'], search: [2, 'Read'], list: [2, 'Read'], update: [3, 'Update'], delete: [4, 'Delete'] };

export function toOcsf(e: AuditEvent): OcsfApiActivity {
  const who = identityOf(e);
  const policy = policyOf(e);
  const tool = toolOf(e);
  const [activityId, activityName] = activityOf(e, tool?.action);
  const failed = isFailure(e, policy);
  const { seq: _seq, hash: _hash, time: _time, request_id: _request, type, ...rest } = e;
  const out: OcsfApiActivity = {
    class_uid: 6003,
    class_name: 'API Activity',
    category_uid: 6,
    category_name: 'Application Activity',
    activity_id: activityId,
    activity_name: activityName,
    type_uid: 6003 * 100 + activityId,
    time: Date.parse(e.time),
    severity_id: e.type === 'credential_leak' ? 4 : policy?.decision === 'deny' || failed ? 3 : 1,
    status_id: failed === undefined ? 0 : failed ? 2 : 1,
    message: messageOf(e, who?.agent, tool, policy),
    metadata: { version: '1.3.0', product: { name: 'aam', vendor_name: 'aam' }, uid: e.hash, correlation_uid: e.request_id, sequence: e.seq, log_name: 'aam.audit' },
    actor: { app_name: 'aam' },
    src_endpoint: { svc_name: 'aam' },
    api: { operation: operationOf(e, tool), service: { name: e.model?.provider ?? tool?.server ?? tool?.tool ?? 'aam' }, request: { uid: e.request_id } },
    unmapped: { aam_type: type, ...rest },
  };
  if (e.outcome) {
    out.status = failed ? 'Failure' : 'Success';
    out.status_code = String(e.outcome.status);
    if (e.outcome.error_class || e.outcome.error) out.status_detail = [e.outcome.error_class, e.outcome.error].filter(Boolean).join(': ');
  }
  if (who) {
    out.actor = { user: { name: who.agent, uid: who.spiffe_id, email_addr: who.owner, groups: who.team ? [{ name: who.team }] : undefined }, app_name: who.deployment };
    out.src_endpoint = { uid: who.spiffe_id, name: who.agent || who.spiffe_id };
  } else if (e.admin) {
    const a = e.admin.actor;
    out.actor = { user: typeof a === 'string' ? { name: a, uid: a } : { name: a.email ?? a.sub, uid: a.sub, email_addr: a.email } };
    out.src_endpoint = { name: out.actor.user!.name };
  }
  if (tool) out.resources = [{ name: tool.resource ?? `${tool.server}/${tool.tool}`, type: 'tool', data: { server: tool.server, tool: tool.tool, action: tool.action, args_digest: tool.args_digest } }];
  else if (e.model) out.resources = [{ name: e.model.route, type: 'model', data: { provider: e.model.provider, model: e.model.model } }];
  else if (e.admin?.target) out.resources = [{ name: e.admin.target, type: 'admin_target' }];
  return out;
}

function activityOf(e: AuditEvent, toolAction: string | undefined): [number, string] {
  const action = (toolAction ?? e.admin?.action ?? '').toLowerCase();
  for (const [k, v] of Object.entries(ACTIVITY)) if (action.startsWith(k)) return v;
  return [99, 'Other'];
}

function isFailure(e: AuditEvent, policy: AuditPolicy | undefined): boolean | undefined {
  if (policy?.decision === 'deny') return true;
  if (!e.outcome) return undefined;
  const s = e.outcome.status;
  if (typeof s === 'number') return s >= 400;
  return e.outcome.error_class !== undefined || /^(error|fail|denied|refused|blocked)/i.test(s);
}

function operationOf(e: AuditEvent, tool: ReturnType<typeof toolOf>): string {
  if (e.model) return `model:${e.model.route}`;
  if (tool) return `tool:${[tool.server, tool.tool].filter(Boolean).join('.')}${tool.action ? `:${tool.action}` : ''}`;
  if (e.admin) return `admin:${e.admin.action}`;
  return e.type;
}

function messageOf(e: AuditEvent, agent: string | undefined, tool: ReturnType<typeof toolOf>, policy: AuditPolicy | undefined): string {
  const a = e.admin?.actor;
  const who = agent ?? (typeof a === 'object' ? a.email ?? a.sub : a) ?? 'unknown';
  const decision = policy ? ` ${policy.decision} by ${policy.name || 'default'}` : '';
  return `${e.type} ${who} ${operationOf(e, tool)}${decision}`;
}
