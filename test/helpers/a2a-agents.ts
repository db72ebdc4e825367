// Real A2A v1 agents built with the official @a2a-js/sdk server (its JSON-RPC transport handler
// on node:http, as its express adapter does), for end-to-end tests.
// Each agent echoes, streams (task -> working -> artifact -> completed), echoes a secret on
// request, makes a model call through aam first (`model:<rest>`), or calls another agent through aam (`call:<agent>:<text>`), forwarding the
// x-aam-delegation and traceparent headers it received, as a well-behaved callee does.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DefaultRequestHandler, InMemoryTaskStore, JsonRpcTransportHandler, UnauthenticatedUser, defaultServerCallContextBuilder,
  type AgentExecutor, type ExecutionEventBus, type RequestContext,
} from '@a2a-js/sdk/server';

export interface TestAgents {
  base: string;
  /** Headers each agent received on its last A2A call (by agent path name). */
  received: Map<string, Record<string, string | string[] | undefined>>;
  /** Tasks an agent goes on working on after its answer (`work:`), by task id. */
  working: Map<string, Work>;
  close(): Promise<void>;
}

export interface AgentDef {
  name: string; skills: string[]; aamUrl: () => string; key: () => string; secret?: string;
  /** A streamed task whose text includes "hold" waits here after its first two events (tests of chunk-by-chunk relay and idle streams). */
  hold?: () => Promise<void>;
  /** Advertise and serve push notifications (the SDK's own store and sender). */
  push?: boolean;
  /** A message whose text starts with "slow" is answered after this many ms (a request/response call in flight). */
  slowMs?: number;
}

/**
 * A task the agent answered as `working` (a send with `work:` and returnImmediately: the SDK
 * answers with the task at once) and goes on working on, as an async agent does.
 */
export interface Work {
  /** Its model call through aam now, with the delegation it got with the send: the HTTP status. */
  model(): Promise<number>;
  /** The x-aam-delegation header the agent got with the send. */
  delegation: string;
  /** The task completes (the agent publishes it; aam sees it when it is next asked or told). */
  complete(): void;
}

type Part = { content?: { $case: string; value: unknown } };
const textOf = (parts: readonly Part[]): string => parts.map((p) => (p.content?.$case === 'text' ? String(p.content.value) : '')).join('');
const textPart = (text: string) => ({ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: '' });
const agentMessage = (text: string, contextId: string, taskId = '') => ({ messageId: `m-${Math.random().toString(36).slice(2)}`, contextId, taskId, role: 2, parts: [textPart(text)], metadata: undefined, extensions: [], referenceTaskIds: [] });

function executor(def: AgentDef, received: TestAgents['received'], working: TestAgents['working']): AgentExecutor {
  /** How each working task ends (a state published on its bus), by task id. */
  const ends = new Map<string, (state: number) => void>();
  return {
    async execute(rc: RequestContext, bus: ExecutionEventBus): Promise<void> {
      const headers = (rc.context.state.get('headers') ?? {}) as Record<string, string | string[] | undefined>;
      received.set(def.name, headers);
      const text = textOf(rc.userMessage.parts as unknown as Part[]);
      if (text.startsWith('stream')) {
        const task = { id: rc.taskId, contextId: rc.contextId, status: { state: 1, message: undefined, timestamp: undefined }, artifacts: [], history: [rc.userMessage], metadata: undefined };
        bus.publish({ kind: 'task', data: task as never });
        bus.publish({ kind: 'statusUpdate', data: { taskId: rc.taskId, contextId: rc.contextId, status: { state: 2, message: undefined, timestamp: undefined }, metadata: undefined } as never });
        if (def.hold && text.includes('hold')) await def.hold();
        // "split": the secret cut in the middle across two chunks, the last ending with its first 4
        // characters (what could begin it again: held back to the end); "last": the third is the last chunk.
        const half = Math.floor((def.secret ?? '').length / 2);
        const chunks = def.secret && text.includes('split') ? ['alpha ', `key ${def.secret.slice(0, half)}`, `${def.secret.slice(half)} end ${def.secret.slice(0, 4)}`]
          : ['alpha ', 'beta ', def.secret && text.includes('secret') ? def.secret : 'gamma'];
        for (const [i, chunk] of chunks.entries()) {
          bus.publish({ kind: 'artifactUpdate', data: { taskId: rc.taskId, contextId: rc.contextId, artifact: { artifactId: 'a1', name: 'out', description: '', parts: [textPart(chunk)], metadata: undefined, extensions: [] }, append: true, lastChunk: i === chunks.length - 1 && text.includes('last'), metadata: undefined } as never });
        }
        bus.publish({ kind: 'statusUpdate', data: { taskId: rc.taskId, contextId: rc.contextId, status: { state: 3, message: undefined, timestamp: undefined }, metadata: undefined } as never });
        bus.finished();
        return;
      }
      if (text.startsWith('work:')) {
        const status = (state: number) => ({ kind: 'statusUpdate', data: { taskId: rc.taskId, contextId: rc.contextId, status: { state, message: undefined, timestamp: undefined }, metadata: undefined } as never });
        bus.publish({ kind: 'task', data: { id: rc.taskId, contextId: rc.contextId, status: { state: 2, message: undefined, timestamp: undefined }, artifacts: [], history: [rc.userMessage], metadata: undefined } as never });
        await new Promise<void>((resolve) => {
          ends.set(rc.taskId, (state) => { ends.delete(rc.taskId); working.delete(rc.taskId); bus.publish(status(state) as never); resolve(); });
          working.set(rc.taskId, { model: () => modelThroughAam(def, headers), delegation: String(headers['x-aam-delegation'] ?? ''), complete: () => ends.get(rc.taskId)?.(3) });
        });
        bus.finished();
        return;
      }
      if (def.slowMs && text.startsWith('slow')) await new Promise((r) => setTimeout(r, def.slowMs));
      // `model:<rest>`: a model call through aam while serving (its status goes in the answer), then <rest>.
      const model = text.startsWith('model:') ? await modelThroughAam(def, headers) : undefined;
      const rest = model === undefined ? text : text.slice('model:'.length);
      let answer = `${def.name} says: ${rest}`;
      if (rest === 'echo-secret' && def.secret) answer = `the key is ${def.secret}`;
      const call = /^call:([^:]+):?(.*)$/.exec(rest);
      if (call) answer = await callThroughAam(def, headers, call[1], call[2] || 'hello');
      if (model !== undefined) answer = `model ${model}; ${answer}`;
      bus.publish({ kind: 'message', data: agentMessage(answer, rc.contextId) as never });
      bus.finished();
    },
    // A working task is canceled (published on its bus); nothing else runs long.
    async cancelTask(taskId: string): Promise<void> { ends.get(taskId)?.(5); },
  };
}

/** Delegation and trace context a callee forwards on the calls it makes while serving. */
function forwarded(def: AgentDef, headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const h: Record<string, string> = { authorization: `Bearer ${def.key()}`, 'content-type': 'application/json' };
  for (const k of ['x-aam-delegation', 'traceparent']) if (typeof headers[k] === 'string') h[k] = headers[k] as string;
  return h;
}

/** The callee's model call through aam (model `small`) while serving: its HTTP status. */
async function modelThroughAam(def: AgentDef, headers: Record<string, string | string[] | undefined>): Promise<number> {
  const r = await fetch(`${def.aamUrl()}/v1/chat/completions`, { method: 'POST', headers: forwarded(def, headers), body: JSON.stringify({ model: 'small', messages: [{ role: 'user', content: 'score this' }] }) });
  await r.arrayBuffer();
  return r.status;
}

/** The callee's own call through aam, with its own key, forwarding delegation and trace context. */
async function callThroughAam(def: AgentDef, headers: Record<string, string | string[] | undefined>, agent: string, text: string): Promise<string> {
  const r = await fetch(`${def.aamUrl()}/a2a/${agent}`, {
    method: 'POST', headers: { ...forwarded(def, headers), 'a2a-version': '1.0' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'n1', role: 'ROLE_USER', parts: [{ text }], metadata: { skill: 'any' } } } }),
  });
  const j = await r.json() as { result?: { message?: { parts?: Array<{ text?: string }> } }; error?: { message: string } };
  return j.error ? `refused(${r.status}): ${j.error.message}` : `relayed: ${j.result?.message?.parts?.map((p) => p.text).join('') ?? ''}`;
}

export async function startTestAgents(defs: AgentDef[]): Promise<TestAgents> {
  const received: TestAgents['received'] = new Map();
  const working: TestAgents['working'] = new Map();
  let base = '';
  const byName = new Map<string, { card: () => unknown; rpc: JsonRpcTransportHandler }>();
  for (const def of defs) {
    const card = () => ({
      name: def.name, description: `test agent ${def.name}`, version: '1.0.0',
      supportedInterfaces: [{ url: `${base}/${def.name}`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
      capabilities: { streaming: true, pushNotifications: def.push === true, extensions: [] },
      securitySchemes: { direct: { httpAuthSecurityScheme: { scheme: 'Bearer' } } },
      defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'],
      skills: def.skills.map((s) => ({ id: s, name: s, description: `skill ${s}`, tags: [s] })),
    });
    const handler = new DefaultRequestHandler(card() as never, new InMemoryTaskStore(), executor(def, received, working));
    byName.set(def.name, { card, rpc: new JsonRpcTransportHandler(handler) });
  }
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const [, name, rest] = /^\/([^/]+)(.*)$/.exec(req.url ?? '') ?? [];
    const agent = byName.get(name ?? '');
    if (!agent) { res.writeHead(404).end(); return; }
    if (req.method === 'GET' && rest === '/.well-known/agent-card.json') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(agent.card()));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    const context = defaultServerCallContextBuilder({ extensions: undefined, user: new UnauthenticatedUser(), headers: req.headers as never, requestedVersion: String(req.headers['a2a-version'] ?? '1.0') });
    const out = await agent.rpc.handle(body as never, context) as unknown;
    if (out && typeof out === 'object' && Symbol.asyncIterator in out) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      try {
        for await (const ev of out as AsyncIterable<unknown>) res.write(`data: ${JSON.stringify(ev)}\n\n`);
      } catch (e) {
        // The SDK refuses some streams only once iterated (SubscribeToTask on a finished task): the
        // 200 is out, so the refusal is the stream's last event, as a JSON-RPC error.
        const id = (body as { id?: unknown }).id ?? null;
        const err = e as { code?: number; message?: string };
        res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id, error: { code: typeof err.code === 'number' ? err.code : -32603, message: String(err.message ?? e) } })}\n\n`);
      }
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
  };
  const server: Server = createServer((req, res) => { serve(req, res).catch((e: unknown) => { if (res.headersSent) res.end(); else res.writeHead(500).end(String(e)); }); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base, received, working,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
