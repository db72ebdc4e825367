// Held tool calls tell people: a Slack-compatible JSON message (text + the approval's fields,
// never its arguments) POSTed to a webhook, signed like the audit webhook (x-aam-signature:
// sha256=HMAC of the raw body), with a link to the console's approvals inbox. Best effort: a
// failed delivery is logged, the call stays held either way.
import { signWebhookBody } from '../audit/sink-http.ts';
import type { Approval } from '../store/approvals.ts';
import type { Logger } from '../observability/log.ts';

export interface ApprovalWebhook { url: string; secret: string }

/** AAM_APPROVAL_WEBHOOK_URL/_SECRET, or null; a URL without a secret refuses to start. */
export function approvalWebhookFrom(env: NodeJS.ProcessEnv): ApprovalWebhook | null {
  const url = env.AAM_APPROVAL_WEBHOOK_URL;
  if (!url) return null;
  if (!/^https?:\/\//.test(url)) throw new Error(`AAM_APPROVAL_WEBHOOK_URL must be an http(s) URL (got "${url}")`);
  if (!env.AAM_APPROVAL_WEBHOOK_SECRET) throw new Error('AAM_APPROVAL_WEBHOOK_URL needs AAM_APPROVAL_WEBHOOK_SECRET (HMAC key for x-aam-signature)');
  return { url, secret: env.AAM_APPROVAL_WEBHOOK_SECRET };
}

export function approvalMessage(a: Approval, consoleUrl: string | null): Record<string, unknown> {
  const link = consoleUrl ? `${consoleUrl}/console#/approvals` : null;
  const text = `Agent ${a.agent} is waiting for approval to ${a.action} on ${a.resource} (${a.plane} ${a.target}), held by policy ${a.policy} tools[${a.rule}]; decide before ${a.expiresAt}.${link ? ` ${link}` : ''}`;
  return {
    text,
    approval: { id: a.id, agent: a.agent, spiffe_id: a.spiffeId, plane: a.plane, target: a.target, resource: a.resource, action: a.action, policy: a.policy, rule: a.rule, reason: a.reason, args_digest: a.argsDigest, created_at: a.createdAt, expires_at: a.expiresAt },
    console_url: link,
  };
}

export function approvalNotifier(hook: ApprovalWebhook, consoleUrl: string | null, log: Logger, timeoutMs = 5000): (a: Approval) => void {
  return (a) => {
    const body = JSON.stringify(approvalMessage(a, consoleUrl));
    fetch(hook.url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-aam-signature': signWebhookBody(hook.secret, body) }, body, signal: AbortSignal.timeout(timeoutMs) })
      .then(async (r) => { await r.arrayBuffer().catch(() => {}); if (!r.ok) throw new Error(`HTTP ${r.status}`); })
      .catch((e: unknown) => log.warn({ event: 'approval_webhook_failed', approval: a.id, err: (e as Error).message }, 'approval webhook not delivered'));
  };
}
