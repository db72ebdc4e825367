// The MCP SDK's session client, for HTTP upstreams that speak MCP 2025-11-25 or earlier (SSE,
// Streamable HTTP with initialize and a session). Imported only when such an upstream is
// configured: stdio upstreams use aam's own client (mcp-stdio-client.ts), 2026-07-28 ones
// mcp-modern-client.ts; neither loads the SDK (its Client, transports and zod schemas).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  LoggingMessageNotificationSchema, PromptListChangedNotificationSchema, ResourceListChangedNotificationSchema, ResourceUpdatedNotificationSchema, ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { SessionClient } from './mcp-modern-client.ts';

type Fetch = (url: string | URL, init?: RequestInit) => Promise<Response>;

/** The notifications aam listens to, with the SDK schema that checks each. */
const SCHEMAS = {
  'notifications/tools/list_changed': ToolListChangedNotificationSchema,
  'notifications/resources/updated': ResourceUpdatedNotificationSchema,
  'notifications/prompts/list_changed': PromptListChangedNotificationSchema,
  'notifications/resources/list_changed': ResourceListChangedNotificationSchema,
  'notifications/message': LoggingMessageNotificationSchema,
} as const;

export async function createSdkSessionClient(kind: 'sse' | 'streamable-http', url: URL, fetchFn: Fetch): Promise<SessionClient> {
  // The HTTP transports bring the SDK's OAuth client, pkce-challenge and eventsource (+1.9 MB RSS).
  let t: Transport;
  if (kind === 'sse') {
    const { SSEClientTransport } = await import('@modelcontextprotocol/sdk/client/sse.js');
    t = new SSEClientTransport(url, { fetch: fetchFn, eventSourceInit: { fetch: fetchFn } });
  } else {
    const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
    t = new StreamableHTTPClientTransport(url, { fetch: fetchFn });
  }
  const c = new Client({ name: 'aam-gateway', version: '0.1.0' }, { capabilities: {} });
  const session: SessionClient = {
    pid: undefined,
    onNotification(method, handler) {
      const schema = SCHEMAS[method as keyof typeof SCHEMAS];
      if (!schema) throw new Error(`no schema for ${method}`);
      c.setNotificationHandler(schema, async (n: { params?: unknown }) => handler((n.params ?? {}) as Record<string, unknown>));
    },
    async start(timeoutMs) {
      c.onclose = () => session.onclose?.();
      try { await c.connect(t, { timeout: timeoutMs }); } catch (e) {
        await t.close().catch(() => {});
        throw e;
      }
    },
    getServerCapabilities: () => c.getServerCapabilities(),
    listTools: (params, o) => c.listTools(params, o),
    callTool: (params, _schema, o) => c.callTool(params, undefined, o),
    listResources: (params, o) => c.listResources(params, o),
    readResource: (params, o) => c.readResource(params, o),
    listResourceTemplates: (params, o) => c.listResourceTemplates(params, o),
    listPrompts: (params, o) => c.listPrompts(params, o),
    getPrompt: (params, o) => c.getPrompt(params, o),
    complete: (params, o) => c.complete(params, o),
    setLoggingLevel: (level, o) => c.setLoggingLevel(level, o),
    subscribeResource: (params, o) => c.subscribeResource(params, o),
    unsubscribeResource: (params, o) => c.unsubscribeResource(params, o),
    close: () => c.close(),
  };
  return session;
}
