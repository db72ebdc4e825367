// OCSF mapping: every audit event as an API Activity (class_uid 6003, category 6 Application
// Activity). Fields OCSF has no slot for go to `unmapped`, so nothing is lost.
import type { AuditEvent } from './event.ts';

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
  api: { operation: string; service: { name: string }; request: { uid: string } };
  resources?: { name: string; type: string; data?: unknown }[];
  unmapped: Record<string, unknown>;
}

const ACTIVITY: Record<string, [number, string]> = { create: [1, 'Create'], read: [2, 'Read'], search: [2, 'Read'], list: [2, 'Read'], update: [3, 'Update'], delete: [4, 'Delete'] };

export function toOcsf(e: AuditEvent): OcsfApiActivity {
  const [activityId, activityName] = activityOf(e);
  const failed = isFailure(e);
  const out: OcsfApiActivity = {
    class_uid: 6003,
    class_name: 'API Activity',
    category_uid: 6,
    category_name: 'Application Activity',
    activity_id: activityId,
    activity_name: activityName,
    type_uid: 6003 * 100 + activityId,
    time: Date.parse(e.time),
    severity_id: e.type === 'credential_leak' ? 4 : e.policy?.decision === 'deny' || failed ? 3 : 1,
    status_id: failed === undefined ? 0 : failed ? 2 : 1,
    message: messageOf(e),
    metadata: { version: '1.3.0', product: { name: 'aam', vendor_name: 'aam' }, uid: e.hash, correlation_uid: e.request_id, sequence: e.seq, log_name: 'aam.audit' },
    actor: {},
    api: { operation: operationOf(e), service: { name: e.model?.provider ?? e.tool?.server ?? 'aam' }, request: { uid: e.request_id } },
    unmapped: { aam_type: e.type, prev_hash: e.prev_hash, trace_id: e.trace_id, policy: e.policy, credential: e.credential, model: e.model, detail: e.detail, admin: e.admin },
  };
  if (e.outcome) {
    out.status = failed ? 'Failure' : 'Success';
    out.status_code = String(e.outcome.status);
    if (e.outcome.error_class || e.outcome.error) out.status_detail = [e.outcome.error_class, e.outcome.error].filter(Boolean).join(': ');
  }
  if (e.identity) {
    out.actor.user = { name: e.identity.agent, uid: e.identity.spiffe_id, email_addr: e.identity.owner, groups: e.identity.team ? [{ name: e.identity.team }] : undefined };
    out.actor.app_name = e.identity.deployment;
  } else if (e.admin) {
    const a = e.admin.actor;
    out.actor.user = typeof a === 'string' ? { name: a, uid: a } : { name: a.email ?? a.sub, uid: a.sub, email_addr: a.email };
  }
  if (e.tool) out.resources = [{ name: e.tool.resource ?? `${e.tool.server}/${e.tool.tool}`, type: 'tool', data: { server: e.tool.server, tool: e.tool.tool, action: e.tool.action, args_digest: e.tool.args_digest } }];
  else if (e.model) out.resources = [{ name: e.model.route, type: 'model', data: { provider: e.model.provider, model: e.model.model } }];
  else if (e.admin?.target) out.resources = [{ name: e.admin.target, type: 'admin_target' }];
  return out;
}

function activityOf(e: AuditEvent): [number, string] {
  const action = (e.tool?.action ?? e.admin?.action ?? '').toLowerCase();
  for (const [k, v] of Object.entries(ACTIVITY)) if (action.startsWith(k)) return v;
  return [99, 'Other'];
}

function isFailure(e: AuditEvent): boolean | undefined {
  if (e.policy?.decision === 'deny') return true;
  if (!e.outcome) return undefined;
  const s = e.outcome.status;
  if (typeof s === 'number') return s >= 400;
  return e.outcome.error_class !== undefined || /^(error|fail|denied|refused|blocked)/i.test(s);
}

function operationOf(e: AuditEvent): string {
  if (e.model) return `model:${e.model.route}`;
  if (e.tool) return `tool:${e.tool.server}.${e.tool.tool}`;
  if (e.admin) return `admin:${e.admin.action}`;
  return e.type;
}

function messageOf(e: AuditEvent): string {
  const a = e.admin?.actor;
  const who = e.identity?.agent ?? (typeof a === 'object' ? a.email ?? a.sub : a) ?? 'unknown';
  const what = operationOf(e);
  const decision = e.policy ? ` ${e.policy.decision} by ${e.policy.name || 'default'}` : '';
  return `${e.type} ${who} ${what}${decision}`;
}
