// What the lazy front (mcp-lazy.ts) and the loaded gateway (mcp-gateway.ts) both need: the
// gateway's options and shape, and the state created before the MCP SDK loads. A module of its
// own so the two import it and not each other.
import { createApprovals, type Approval, type Approvals } from '../store/approvals.ts';
import { createToolIntegrity, toolIntegrity, type ToolDiff, type ToolIntegrity } from './tool-integrity.ts';
import type { ConfigSet } from '../config/schema.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ToolPins } from '../store/tool-pins.ts';
import type { ToolAccess, ToolDeps } from './types.ts';
import type { UpstreamOptions, UpstreamState } from './upstream.ts';

export interface McpGatewayOptions extends UpstreamOptions {
  /** tools/list page size (default 200). */
  pageSize?: number;
  /** Open sessions, in all (default 10,000) and per identity (default 100), so one agent cannot lock the others out. */
  maxSessions?: number;
  maxSessionsPerIdentity?: number;
  /**
   * Open sessions of identities no Agent registers (external SPIFFE IDs), per trust domain
   * (default 1,000): a domain can mint any number of IDs, so per identity alone does not bound it.
   */
  maxSessionsPerTrustDomain?: number;
  /** Sessions idle longer than this are closed (default 30 min). */
  sessionIdleMs?: number;
  /**
   * How long after a session's last GET stream closed aam still listens for it and keeps the list
   * changes it misses, for its reconnect (default 10 s; AAM_MCP_STREAM_GRACE).
   */
  streamGraceMs?: number;
  approvalWindowMs?: number;
  /** A call was newly held for approval (notify people). */
  onApprovalPending?: (a: Approval) => void;
  /** The held-calls store chosen at start (fleet: PostgreSQL); default: the embedded one in deps.db. */
  approvals?: Approvals;
  /** The accepted-tool-definitions store chosen at start (fleet: PostgreSQL); default: embedded in deps.db. */
  pins?: ToolPins;
  maxResultBytes?: number;
  /** tools/list waits at most this long for servers still starting, then lists what is ready (default 5 s). */
  listWaitMs?: number;
  /** Largest request body read when the caller did not pass parsedBody (default 4 MiB). */
  maxBodyBytes?: number;
}

export interface McpGateway {
  /** One HTTP request of an MCP client, with the caller's access context for that request. */
  handle(req: IncomingMessage, res: ServerResponse, access: ToolAccess, serverName: string | null, parsedBody?: unknown): Promise<void>;
  reload(config: ConfigSet): Promise<void>;
  close(): Promise<void>;
  approvals: Approvals;
  toolDiff(server: string, tool: string): ToolDiff;
  acceptTool(server: string, tool: string, actor: string): Promise<ToolDiff>;
  flaggedTools(): ToolDiff[];
  status(): Record<string, { state: UpstreamState; restarts: number; lastError?: string; pid?: number | null; tools: number }>;
}

/** What outlives the loading of the gateway: created before the SDK is, handed to it once it is. */
export interface McpShared { approvals: Approvals; integrity: ToolIntegrity }

/** Open-session limits; a bad one refuses the start, whether or not the SDK loads then. */
export function sessionLimits(opts: McpGatewayOptions): { maxPerIdentity: number; maxPerDomain: number } {
  const maxPerIdentity = opts.maxSessionsPerIdentity ?? 100;
  if (!Number.isSafeInteger(maxPerIdentity) || maxPerIdentity < 1) throw new Error(`MCP sessions per identity (AAM_MCP_SESSIONS_PER_IDENTITY) must be a positive integer, not ${String(opts.maxSessionsPerIdentity)}`);
  const maxPerDomain = opts.maxSessionsPerTrustDomain ?? 1000;
  if (!Number.isSafeInteger(maxPerDomain) || maxPerDomain < 1) throw new Error(`MCP sessions per trust domain (AAM_MCP_SESSIONS_PER_TRUST_DOMAIN) must be a positive integer, not ${String(opts.maxSessionsPerTrustDomain)}`);
  return { maxPerIdentity, maxPerDomain };
}

export function createMcpShared(deps: ToolDeps, opts: McpGatewayOptions): McpShared {
  sessionLimits(opts);
  return {
    integrity: opts.pins ? toolIntegrity(opts.pins, deps.scrub) : createToolIntegrity(deps.db, deps.scrub),
    // The store the runtime chose (fleet: PostgreSQL), else the embedded one in the data dir.
    approvals: opts.approvals ?? createApprovals(deps.db, { windowMs: opts.approvalWindowMs, onPending: opts.onApprovalPending }),
  };
}
