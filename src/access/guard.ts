// The guardrail step of the shared access path: the guardrails an identity's policies attach,
// applied to model prompts/completions (also streamed) and to tool arguments/results. Every
// verdict other than allow is evidence (guardrail, category, where; never the value).
import type { GuardrailLists, Runtime } from '../runtime.ts';
import type { Identity } from '../identity/types.ts';
import type { ChatMessage, ChatResult, StreamEvent } from '../providers/types.ts';
import { guardrailsFor } from '../policy/decide.ts';
import {
  applyToChatMessages, applyToJson, applyGuardrails, blockedMessage, createEventGuard, runWebhookGuardrails,
  type CompiledGuardrail, type Direction, type FindingSummary, type EventGuard,
} from '../guardrails/engine.ts';
import { AamError } from '../server/errors.ts';
import { identityEvidence } from './evidence.ts';

const NONE: readonly CompiledGuardrail[] = Object.freeze([]);
const NONE_NAMES: readonly string[] = Object.freeze([]);

/** The union of an identity's policy guardrails and a route's, memoized per config (see Compiled.guardrailLists). */
function mergedNames(memo: GuardrailLists, a: readonly string[], b: readonly string[]): readonly string[] {
  let inner = memo.merged.get(a);
  if (!inner) { inner = new WeakMap(); memo.merged.set(a, inner); }
  let u = inner.get(b);
  if (!u) { u = [...new Set([...a, ...b])]; inner.set(b, u); }
  return u;
}

export function guardrailsOf(rt: Runtime, identity: Identity, routeGuardrails: readonly string[] = NONE_NAMES): readonly CompiledGuardrail[] {
  const compiled = rt.compiled;
  const memo = compiled.guardrailLists;
  const own = guardrailsFor(identity.agent, compiled.policies);
  const names = routeGuardrails.length === 0 ? own : mergedNames(memo, own, routeGuardrails);
  if (names.length === 0) return NONE;
  let list = memo.byNames.get(names);
  if (!list) {
    list = names.map((n) => compiled.guardrails.get(n)).filter((g): g is CompiledGuardrail => g !== undefined);
    memo.byNames.set(names, list);
  }
  return list;
}

function record(rt: Runtime, requestId: string, identity: Identity, direction: Direction, where: string, verdict: string, findings: readonly FindingSummary[], extra: Record<string, unknown> = {}): void {
  rt.audit?.record({
    type: 'guardrail', request_id: requestId, identity: identityEvidence(identity),
    guardrail: { direction, where, verdict, findings: findings.map((f) => ({ guardrail: f.guardrail, category: f.category, count: f.count })), ...extra },
  });
}

function blocked(guardrail: string, message: string): AamError {
  return new AamError(400, 'guardrail_blocked', message, { param: guardrail });
}

/** Input guardrails on a chat request; returns the (possibly redacted) messages or throws 400. */
export async function guardChatInput(rt: Runtime, requestId: string, identity: Identity, gs: readonly CompiledGuardrail[], messages: ChatMessage[]): Promise<ChatMessage[]> {
  const v = applyToChatMessages(messages, gs, 'input');
  if (v.verdict !== 'allow') record(rt, requestId, identity, 'input', 'prompt', v.verdict, v.findings);
  if (v.verdict === 'block') throw blocked(v.blockedBy ?? '', blockedMessage(v.blockedBy ?? 'guardrail', v.blockedCategory, 'input'));
  let out: ChatMessage[] = v.value as ChatMessage[];
  if (gs.some((g) => g.webhook !== undefined)) {
    const text = out.map((m) => (typeof m.content === 'string' ? m.content : '')).join('\n');
    const w = await runWebhookGuardrails(text, gs, 'input', identity.agent.spiffeId);
    if (w.verdict !== 'allow') record(rt, requestId, identity, 'input', 'prompt', w.verdict, [], { webhook: w.results });
    if (w.verdict === 'block') throw blocked(w.blockedBy ?? '', blockedMessage(w.blockedBy ?? 'webhook', undefined, 'input'));
    if (w.verdict === 'redact') out = [...out.filter((m) => m.role === 'system'), { role: 'user', content: w.text }];
  }
  return out;
}

/** Output guardrails on a complete answer; returns the result to send (same object when clean). */
export function guardChatOutput(rt: Runtime, requestId: string, identity: Identity, gs: readonly CompiledGuardrail[], result: ChatResult): ChatResult {
  const text = result.text === null ? null : applyGuardrails(result.text, gs, 'output');
  const args = result.toolCalls.map((tc) => applyGuardrails(tc.function.arguments, gs, 'output'));
  const all = [...(text ? [text] : []), ...args];
  const block = all.find((v) => v.verdict === 'block');
  const findings = all.flatMap((v) => v.findings);
  const worst = block ? 'block' : all.some((v) => v.verdict === 'redact') ? 'redact' : all.some((v) => v.verdict === 'flag') ? 'flag' : 'allow';
  if (worst !== 'allow') record(rt, requestId, identity, 'output', 'completion', worst, findings);
  if (block) throw blocked(block.blockedBy ?? '', blockedMessage(block.blockedBy ?? 'guardrail', block.blockedCategory, 'output'));
  if (worst !== 'redact') return result;
  return {
    ...result, text: text ? text.text : null,
    toolCalls: result.toolCalls.map((tc, i) => (args[i].text === tc.function.arguments ? tc : { ...tc, function: { ...tc.function, arguments: args[i].text } })),
  };
}

/** Windowed output guard for streams, or null when no guardrail watches output. */
export function chatStreamGuard(gs: readonly CompiledGuardrail[]): EventGuard | null {
  return gs.some((g) => g.on.has('output')) ? createEventGuard(gs) : null;
}

export function recordStreamFindings(rt: Runtime, requestId: string, identity: Identity, guard: EventGuard, blockedBy?: string): void {
  const f = guard.findings();
  if (f.length || blockedBy) record(rt, requestId, identity, 'output', 'stream', blockedBy ? 'block' : 'redact_or_flag', f);
}

export type GuardedEvents = { events: StreamEvent[]; blocked?: string };

/** Tool arguments (input) or results (output): redacted value, or a block with a message. */
export function guardJson(rt: Runtime, identity: Identity, direction: Direction, value: unknown, where: string, requestId: string, attached?: readonly string[]): { ok: true; value: unknown } | { ok: false; guardrail: string; message: string } {
  const gs = guardrailsOf(rt, identity, attached);
  if (gs.length === 0) return { ok: true, value };
  const v = applyToJson(value, gs, direction);
  if (v.verdict !== 'allow') record(rt, requestId, identity, direction, where, v.verdict, v.findings);
  if (v.verdict === 'block') return { ok: false, guardrail: v.blockedBy ?? '', message: blockedMessage(v.blockedBy ?? 'guardrail', v.blockedCategory, direction) };
  return { ok: true, value: v.value };
}
