// OpenID AuthZEN Access Evaluation API over decide(): POST /access/v1/evaluation and
// /access/v1/evaluations (batch). Pure: the HTTP layer passes the parsed body and gets
// {status, body} back. resource.type "model" asks a model decision, "agent" an A2A call (resource.id
// the callee, action.name the skill); any other type is a tool decision with resource.id as
// resource, action.name as action and context.args as args.
import type { AgentRecord } from '../identity/types.ts';
import type { AccessRequest, Decision } from './types.ts';
import type { CompiledPolicies } from './compile.ts';
import { trustDomainOfId, findAgent } from './compile.ts';
import { decide } from './decide.ts';
import { isObj } from '../lib/json.ts';

export interface AuthZenSubject { type: string; id: string; properties?: Record<string, unknown> }
export interface AuthZenResponse { status: number; body: unknown }
export type LookupAgent = (subject: AuthZenSubject) => AgentRecord | undefined;

type Obj = Record<string, unknown>;

/** Default subject lookup: subject.id is an Agent name or a configured SPIFFE ID. */
export const lookupInConfig = (compiled: CompiledPolicies): LookupAgent => (s) => findAgent(compiled, s.id);

class BadRequest extends Error {}

function str(o: Obj, key: string, where: string, hint: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') throw new BadRequest(`${where}.${key} must be a non-empty string (${hint})`);
  return v;
}

function obj(v: unknown, where: string, required: boolean): Obj | undefined {
  if (v === undefined && !required) return undefined;
  if (!isObj(v)) throw new BadRequest(`${where} must be a JSON object`);
  return v;
}

function parseSubject(v: unknown): AuthZenSubject {
  const s = obj(v, 'subject', true) as Obj;
  const properties = obj(s.properties, 'subject.properties', false);
  return { type: str(s, 'type', 'subject', 'e.g. "agent"'), id: str(s, 'id', 'subject', 'a SPIFFE ID or Agent name'), properties };
}

/** An identity that is not an Agent resource, described by subject.properties (what-if queries). */
function adHocAgent(s: AuthZenSubject): AgentRecord | undefined {
  if (!s.id.startsWith('spiffe://')) return undefined;
  const p = s.properties ?? {};
  const opt = (k: string) => (typeof p[k] === 'string' ? (p[k] as string) : undefined);
  const labels: Record<string, string> = {};
  if (isObj(p.labels)) for (const [k, v] of Object.entries(p.labels)) if (typeof v === 'string') labels[k] = v;
  return {
    name: '', spiffeId: s.id, trustDomain: trustDomainOfId(s.id),
    owner: opt('owner'), team: opt('team'), environment: opt('environment'), deployment: opt('deployment'), labels,
  };
}

function toRequest(item: Obj, agent: AgentRecord): AccessRequest {
  const resource = obj(item.resource, 'resource', true) as Obj;
  const action = obj(item.action, 'action', true) as Obj;
  const context = obj(item.context, 'context', false);
  const type = str(resource, 'type', 'resource', '"model" or a tool resource type such as "tool"');
  const id = str(resource, 'id', 'resource', 'the model route name or tool resource, e.g. salesforce.accounts');
  if (type === 'model') return { kind: 'model', agent, model: id };
  const name = str(action, 'name', 'action', 'e.g. "read"');
  // An A2A call: resource.id is the callee Agent, action.name the skill.
  if (type === 'agent') return { kind: 'agent', agent, callee: id, skill: name, context };
  const args = context?.args === undefined ? {} : obj(context.args, 'context.args', true) as Obj;
  return { kind: 'tool', agent, resource: id, action: name, args, context };
}

function result(d: Decision): Obj {
  return {
    decision: d.allowed,
    context: {
      effect: d.effect, reason: d.reason, reason_admin: { en: d.reason },
      policy: d.policy, rule: d.rule, rule_path: d.rulePath ?? '', config_version: d.configVersion,
    },
  };
}

function evaluateOne(item: Obj, lookupAgent: LookupAgent, compiled: CompiledPolicies): Obj {
  const subject = parseSubject(item.subject);
  const agent = lookupAgent(subject) ?? adHocAgent(subject);
  if (!agent) {
    // Still validate the rest so a malformed request is a 400, not a silent deny.
    toRequest(item, { name: '', spiffeId: '', trustDomain: '', labels: {} });
    const reason = `unknown subject "${subject.id}": not an Agent name or SPIFFE ID known to aam; denied`;
    return { decision: false, context: { effect: 'deny', reason, reason_admin: { en: reason }, policy: '', rule: -1, rule_path: '', config_version: compiled.configVersion } };
  }
  return result(decide(toRequest(item, agent), compiled));
}

function bad(e: unknown): AuthZenResponse {
  if (e instanceof BadRequest) return { status: 400, body: { error: { message: e.message, type: 'invalid_request_error', code: 'invalid_request' } } };
  throw e;
}

/** POST /access/v1/evaluation */
export function evaluateAuthZen(body: unknown, lookupAgent: LookupAgent, compiled: CompiledPolicies): AuthZenResponse {
  try {
    const item = obj(body, 'request body', true) as Obj;
    return { status: 200, body: evaluateOne(item, lookupAgent, compiled) };
  } catch (e) {
    return bad(e);
  }
}

/**
 * POST /access/v1/evaluations: top-level subject/action/resource/context are defaults that each
 * entry of `evaluations` may override. options.evaluations_semantic: execute_all (default),
 * deny_on_first_deny, permit_on_first_permit.
 */
export function evaluateAuthZenBatch(body: unknown, lookupAgent: LookupAgent, compiled: CompiledPolicies): AuthZenResponse {
  try {
    const b = obj(body, 'request body', true) as Obj;
    const options = obj(b.options, 'options', false);
    const semantic = options?.evaluations_semantic ?? 'execute_all';
    if (semantic !== 'execute_all' && semantic !== 'deny_on_first_deny' && semantic !== 'permit_on_first_permit') {
      throw new BadRequest('options.evaluations_semantic must be execute_all, deny_on_first_deny or permit_on_first_permit');
    }
    if (b.evaluations === undefined) return { status: 200, body: evaluateOne(b, lookupAgent, compiled) };
    if (!Array.isArray(b.evaluations)) throw new BadRequest('evaluations must be an array');
    if (b.evaluations.length > 1000) throw new BadRequest('evaluations: at most 1000 entries per request');
    const out: Obj[] = [];
    for (let i = 0; i < b.evaluations.length; i++) {
      const e = obj(b.evaluations[i], `evaluations[${i}]`, true) as Obj;
      const item = { subject: e.subject ?? b.subject, resource: e.resource ?? b.resource, action: e.action ?? b.action, context: e.context ?? b.context };
      let r: Obj;
      try { r = evaluateOne(item, lookupAgent, compiled); } catch (err) {
        if (err instanceof BadRequest) throw new BadRequest(`evaluations[${i}]: ${err.message}`);
        throw err;
      }
      out.push(r);
      if ((semantic === 'deny_on_first_deny' && r.decision === false) || (semantic === 'permit_on_first_permit' && r.decision === true)) break;
    }
    return { status: 200, body: { evaluations: out } };
  } catch (e) {
    return bad(e);
  }
}
