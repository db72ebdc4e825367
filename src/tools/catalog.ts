// The compiled tool table: for every upstream MCP server, its tools with their (resource, action)
// mapping, integrity status and a compiled argument validator. Rebuilt when a server's tools list
// changes or the config is reloaded; the request path only looks things up.
import { schemaValidator } from './json-schema.ts';
import type { ConfigSet, McpServerSpec } from '../config/schema.ts';
import { createUpstream, type WatchList, type Upstream, type UpstreamOptions } from './upstream.ts';
import { NAME_SEP } from './util.ts';
import type { ToolIntegrity, ToolStatus } from './tool-integrity.ts';
import type { ToolDeps, UpstreamTool } from './types.ts';
import { errMsg } from '../lib/error-message.ts';

export interface CompiledTool {
  server: string;
  def: UpstreamTool;
  resource: string;
  action: string;
  mutating: boolean;
  integrity: ToolStatus;
  /** Returns an error message, or undefined when the arguments match the input schema. */
  validate(args: unknown): string | undefined;
}

export interface ServerEntry {
  name: string;
  spec: McpServerSpec;
  upstream: Upstream;
  /** Resource used for this server's resources/* and prompts/* (and tools without a mapping). */
  resource: string;
  tools: Map<string, CompiledTool>;
  /** The definitions last listed by the upstream (recompiled when an admin accepts a change). */
  defs: UpstreamTool[];
}

export interface ToolTarget { entry: ServerEntry | undefined; tool: string; resource: string; action: string }

export interface Catalog {
  servers: Map<string, ServerEntry>;
  /** Wait (at most waitMs) until each server in scope has listed its tools once; a slow server is skipped. */
  ready(scope: string | null, waitMs: number): Promise<void>;
  /** Servers in scope: all for the aggregated endpoint, one otherwise. */
  inScope(scope: string | null): ServerEntry[];
  /** Find a tool by the name the client uses (prefixed when aggregated); waits only for its own server. */
  resolve(scope: string | null, exposedName: string): Promise<CompiledTool | undefined>;
  /**
   * Where a tool name points before any upstream is asked: its server (when one of that name is
   * in scope) and the resource and action a tool of that name has or would have (the server's
   * mapping, else the server's resource and the name; an unknown server's name as the resource).
   */
  locate(scope: string | null, exposedName: string): ToolTarget;
  exposedName(scope: string | null, t: CompiledTool): string;
  reload(config: ConfigSet): Promise<void>;
  onToolsChanged(listener: (server: string) => void): void;
  /** notifications/resources/updated from any server (including ones added by a reload); `who`: for that caller only (Upstream.onResourceUpdated). */
  onResourceUpdated(listener: (server: string, uri: string, who?: string) => void): void;
  /** A server's prompts or resources list (or a private tools list) changed (it said so); `who` as above. */
  onListChanged(listener: (server: string, list: WatchList, who?: string) => void): void;
  /** A server's own list_changed on this process's session with it (Upstream.onAnnounced). */
  onAnnounced(listener: (server: string, list: WatchList) => void): void;
  /** notifications/tasks from a 2026-07-28 server: its own task id and the whole task. */
  onTaskStatus(listener: (server: string, taskId: string, task: Record<string, unknown>) => void): void;
  /** Re-run integrity and mapping on the last listed definitions (after an admin accepted a change). */
  recompile(server: string): void;
  close(): Promise<void>;
}

export function compileValidator(schema: Record<string, unknown> | undefined): (args: unknown) => string | undefined {
  if (!schema || typeof schema !== 'object') return () => undefined;
  // Drop $id: Ajv caches by $id, and two upstreams may reuse one for different schemas.
  const { $id: _ignored, ...rest } = schema;
  try {
    const v = schemaValidator(rest);
    return (args) => v(args ?? {});
  } catch (e) {
    const msg = `the tool's inputSchema cannot be compiled (${errMsg(e)})`;
    return () => msg;
  }
}

function compileServer(entry: ServerEntry, defs: UpstreamTool[], integrity: ToolIntegrity, log: ToolDeps['log']): void {
  const mapping = entry.spec.tools ?? {};
  const pins: Record<string, string | undefined> = {};
  for (const [tool, m] of Object.entries(mapping)) pins[tool] = m.digest;
  const status = integrity.check(entry.name, defs, pins);
  for (const [tool, st] of status) if (st.ok && st.notice) log.warn({ mcp_server: entry.name, tool, digest: st.digest }, st.notice);
  const tools = new Map<string, CompiledTool>();
  for (const def of defs) {
    const m = mapping[def.name];
    tools.set(def.name, {
      server: entry.name, def,
      resource: m?.resource ?? entry.resource,
      action: m?.action ?? def.name,
      mutating: m?.mutating ?? (def.annotations?.readOnlyHint === true ? false : def.annotations?.destructiveHint === true),
      integrity: status.get(def.name) as ToolStatus,
      validate: compileValidator(def.inputSchema),
    });
  }
  entry.tools = tools;
  entry.defs = defs;
}

export function createCatalog(config: ConfigSet, deps: ToolDeps, integrity: ToolIntegrity, opts: UpstreamOptions = {}): Catalog {
  const servers = new Map<string, ServerEntry>();
  const listeners: Array<(server: string) => void> = [];
  const updateListeners: Array<(server: string, uri: string, who?: string) => void> = [];
  const listListeners: Array<(server: string, list: WatchList, who?: string) => void> = [];
  const taskListeners: Array<(server: string, taskId: string, task: Record<string, unknown>) => void> = [];
  const announceListeners: Array<(server: string, list: WatchList) => void> = [];

  function add(name: string, spec: McpServerSpec): void {
    const upstream = createUpstream(name, spec, deps, opts);
    const entry: ServerEntry = { name, spec, upstream, resource: spec.resource ?? name, tools: new Map(), defs: [] };
    upstream.onToolsChanged((defs) => {
      if (servers.get(name) !== entry) return;
      try { compileServer(entry, defs, integrity, deps.log); } catch (e) { deps.log.error({ mcp_server: name, err: errMsg(e) }, 'compiling tools failed'); }
      for (const l of listeners) l(name);
    });
    upstream.onResourceUpdated((uri, who) => {
      if (servers.get(name) === entry) for (const l of updateListeners) l(name, uri, who);
    });
    upstream.onListChanged((list, who) => {
      if (servers.get(name) === entry) for (const l of listListeners) l(name, list, who);
    });
    upstream.onAnnounced((list) => {
      if (servers.get(name) === entry) for (const l of announceListeners) l(name, list);
    });
    upstream.onTaskStatus((taskId, task) => {
      if (servers.get(name) === entry) for (const l of taskListeners) l(name, taskId, task);
    });
    servers.set(name, entry);
  }

  for (const [name, r] of config.mcpServers) add(name, r.spec);

  const inScope = (scope: string | null): ServerEntry[] => {
    if (scope === null) return [...servers.values()];
    const e = servers.get(scope);
    return e ? [e] : [];
  };

  return {
    servers,
    inScope,
    async ready(scope, waitMs) {
      let timer: NodeJS.Timeout | undefined;
      const budget = new Promise<void>((r) => { timer = setTimeout(r, waitMs); });
      const all = Promise.all(inScope(scope).map((e) => e.upstream.tools().catch((err: unknown) => {
        deps.log.warn({ mcp_server: e.name, err: errMsg(err) }, 'mcp server unavailable for listing');
      })));
      await Promise.race([all, budget]);
      clearTimeout(timer);
    },
    locate(scope, exposed) {
      let server = scope;
      let tool = exposed;
      if (scope === null) {
        // Server names cannot contain "__" (the loader refuses them), so the first "__" splits.
        const i = exposed.indexOf(NAME_SEP);
        if (i > 0) { server = exposed.slice(0, i); tool = exposed.slice(i + NAME_SEP.length); }
      }
      const entry = server === null ? undefined : servers.get(server);
      const m = entry?.spec.tools?.[tool];
      return { entry, tool, resource: m?.resource ?? entry?.resource ?? server ?? exposed, action: m?.action ?? tool };
    },
    async resolve(scope, exposed) {
      const { entry, tool } = this.locate(scope, exposed);
      if (!entry) return undefined;
      // Not listed yet: wait for this server only; a down server says so instead of "unknown tool".
      if (!entry.tools.has(tool)) await entry.upstream.tools();
      return entry.tools.get(tool);
    },
    exposedName: (scope, t) => (scope === null ? `${t.server}${NAME_SEP}${t.def.name}` : t.def.name),
    async reload(next) {
      const closing: Promise<void>[] = [];
      for (const [name, e] of servers) {
        const r = next.mcpServers.get(name);
        if (!r || JSON.stringify(r.spec) !== JSON.stringify(e.spec)) {
          servers.delete(name);
          closing.push(e.upstream.close());
        }
      }
      for (const [name, r] of next.mcpServers) if (!servers.has(name)) add(name, r.spec);
      await Promise.all(closing);
      // Kept servers: re-read accepted digests (an admin may have accepted a tool from the CLI).
      for (const e of servers.values()) if (e.defs.length) compileServer(e, e.defs, integrity, deps.log);
      for (const l of listeners) for (const name of next.mcpServers.keys()) l(name);
    },
    onToolsChanged(l) { listeners.push(l); },
    onResourceUpdated(l) { updateListeners.push(l); },
    onListChanged(l) { listListeners.push(l); },
    onAnnounced(l) { announceListeners.push(l); },
    onTaskStatus(l) { taskListeners.push(l); },
    recompile(name) {
      const e = servers.get(name);
      if (!e) return;
      compileServer(e, e.defs, integrity, deps.log);
      for (const l of listeners) l(name);
    },
    async close() {
      const all = [...servers.values()];
      servers.clear();
      await Promise.all(all.map((e) => e.upstream.close()));
    },
  };
}

/**
 * The optional capabilities aam declares to a client of these servers: completions and logging,
 * each when at least one of them (connected) declares it; aam routes and relays, it has none of its own.
 */
export function optionalCapabilities(entries: readonly ServerEntry[]): { completions?: object; logging?: object } {
  const caps = entries.map((e) => e.upstream.capabilities());
  return { ...(caps.some((c) => c?.completions) ? { completions: {} } : {}), ...(caps.some((c) => c?.logging) ? { logging: {} } : {}) };
}
