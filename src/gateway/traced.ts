// One upstream attempt of a model call, for chat and embeddings alike: the provider's credential
// is injected (its name and version kept for the evidence) and the attempt runs inside a client
// span whose traceparent goes upstream with the request.
import type { Ctx } from './plane.ts';
import type { Identity } from '../identity/types.ts';
import type { Injection } from './upstream.ts';
import type { Route, Target } from './routes.ts';
import { endHttpSpan, traceHeaders, type Span } from '../observability/tracing.ts';
import { modelSpanAttributes, modelSpanName, type ModelOperation } from '../observability/otlp-genai.ts';

export function traced<R extends { status: number }>(ctx: Ctx, operation: ModelOperation, route: Route, target: Target, identity: Identity, send: (inj: Injection) => Promise<R>): Promise<R> {
  // Not async: a provider without a credential injects at once, and an untraced call is just send().
  let inj: Injection | Promise<Injection>;
  try { inj = ctx.rt.injectProvider(target.provider, identity); } catch (e) { return Promise.reject(e); }
  return inj instanceof Promise ? inj.then((i) => sendIn(ctx, operation, route, target, identity, i, send)) : sendIn(ctx, operation, route, target, identity, inj, send);
}

function sendIn<R extends { status: number }>(ctx: Ctx, operation: ModelOperation, route: Route, target: Target, identity: Identity, inj: Injection, send: (inj: Injection) => Promise<R>): Promise<R> {
  ctx.credentialUsed = inj.credential;
  const span = clientSpan(ctx, operation, route, target, identity);
  if (!span) return send(inj);
  return send({ ...inj, headers: { ...inj.headers, ...traceHeaders(span) } }).then((res) => { endHttpSpan(span, res.status, 'client'); return res; });
}

function clientSpan(ctx: Ctx, operation: ModelOperation, route: Route, target: Target, identity: Identity): Span | undefined {
  if (!ctx.span || !ctx.rt.tracer) return undefined;
  return ctx.rt.tracer.startSpan(modelSpanName(operation, target.model), {
    kind: 'client', parent: ctx.span.context,
    attributes: modelSpanAttributes({ operation, provider: target.provider.type, route: route.name, requestModel: target.model, agentId: identity.agent.spiffeId, agentName: identity.agent.name }),
  });
}
