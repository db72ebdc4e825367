// Rug-pull defence: the first definition aam sees of each upstream tool is trusted and its digest
// stored; a later change withholds the tool until an admin accepts the new definition.
// A digest pinned in config (McpServer spec.tools.<name>.digest) overrides trust-on-first-use.
// The digest covers every field that reaches the model or decides how aam treats the tool: name,
// description, inputSchema, title, outputSchema and annotations (readOnlyHint/destructiveHint decide
// whether a call is mutating). Digests from before title/outputSchema/annotations were covered
// ("legacy") are upgraded, not treated as changes: see check().
import { createHash } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import { sqlitePins, type PinRow, type ToolPins } from '../store/tool-pins.ts';
import type { UpstreamTool } from './types.ts';

export type ToolStatus =
  | { ok: true; digest: string; /** Something an operator should act on (logged), e.g. a legacy pin. */ notice?: string }
  | { ok: false; digest: string; reason: string };

export interface ToolDiff {
  server: string;
  tool: string;
  status: 'accepted' | 'changed' | 'unknown';
  acceptedDigest?: string;
  currentDigest?: string;
  accepted?: CanonicalTool;
  current?: CanonicalTool;
  /** Top-level fields that differ (name, description, inputSchema, title, outputSchema, annotations). */
  changed: string[];
  acceptedBy?: string;
  acceptedAt?: string;
}

export interface CanonicalTool { name: string; description: string; inputSchema: unknown; title?: string; outputSchema?: unknown; annotations?: unknown }

const FIELDS = ['name', 'description', 'inputSchema', 'title', 'outputSchema', 'annotations'] as const;

export interface ToolIntegrity {
  /** Compare a freshly listed set of tools with what was accepted; records first sightings and changes. */
  check(server: string, tools: UpstreamTool[], pins: Record<string, string | undefined>): Map<string, ToolStatus>;
  diff(server: string, tool: string): ToolDiff;
  /** Accept the current (changed) definition; resolves once it counts (fleet: on every replica within 1 s). */
  accept(server: string, tool: string, actor: string): Promise<ToolDiff>;
  /** Tools whose current definition differs from the accepted one. */
  flagged(): ToolDiff[];
  /** Called with a server whose accepted definitions changed elsewhere (another replica): recompile it. */
  onAccepted(fn: (server: string) => void): void;
}

/** Stable JSON: object keys sorted, so equal definitions give equal digests. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** Absent optional fields are left out, so a tool without them keeps the digest it had before they were covered. */
export function canonicalTool(t: UpstreamTool): CanonicalTool {
  return { name: t.name, description: t.description ?? '', inputSchema: t.inputSchema ?? {}, title: t.title, outputSchema: t.outputSchema, annotations: t.annotations };
}

const sha256 = (v: unknown): string => 'sha256:' + createHash('sha256').update(canonicalJson(v)).digest('hex');

export function toolDigest(t: UpstreamTool): string {
  return sha256(canonicalTool(t));
}

/** The digest of name, description and inputSchema only: what aam accepted and pinned before annotations were covered. */
export function legacyToolDigest(t: UpstreamTool): string {
  return sha256({ name: t.name, description: t.description ?? '', inputSchema: t.inputSchema ?? {} });
}

const normalizePin = (p: string) => (p.startsWith('sha256:') ? p : `sha256:${p}`).toLowerCase();

/** `scrub`: stored definitions pass the credential scrubber (a server may echo its credential in a description); digests cover the real definition. */
export function createToolIntegrity(db: DatabaseSync, scrub: (text: string) => string = (t) => t): ToolIntegrity {
  return toolIntegrity(sqlitePins(db), scrub);
}

/** The rug-pull rules over a pins store (embedded or fleet: see store/tool-pins.ts). */
export function toolIntegrity(store: ToolPins, scrub: (text: string) => string = (t) => t): ToolIntegrity {
  const rowOf = (server: string, tool: string) => store.get(server, tool);

  function toDiff(server: string, tool: string, r: PinRow | undefined): ToolDiff {
    if (!r) return { server, tool, status: 'unknown', changed: [] };
    const accepted = JSON.parse(r.accepted_def) as CanonicalTool;
    const current = JSON.parse(r.current_def) as CanonicalTool;
    const changed = FIELDS.filter((k) => canonicalJson(accepted[k]) !== canonicalJson(current[k]));
    return {
      server, tool, status: r.accepted_digest === r.current_digest ? 'accepted' : 'changed',
      acceptedDigest: r.accepted_digest, currentDigest: r.current_digest, accepted, current, changed,
      acceptedBy: r.accepted_by ?? undefined, acceptedAt: r.accepted_at,
    };
  }

  return {
    check(server, tools, pins) {
      const out = new Map<string, ToolStatus>();
      const now = new Date().toISOString();
      for (const t of tools) {
        const digest = toolDigest(t);
        const legacy = legacyToolDigest(t);
        const def = scrub(JSON.stringify(canonicalTool(t)));
        let row = rowOf(server, t.name);
        let notice: string | undefined;
        if (!row) store.add({ server, tool: t.name, accepted_digest: digest, accepted_def: def, current_digest: digest, current_def: def, accepted_by: null, accepted_at: now });
        else if (row.accepted_digest !== digest && row.accepted_digest === legacy) {
          // Accepted before the digest covered annotations, and unchanged in everything it covered
          // then: today's annotations become part of the accepted definition (trust on first use,
          // once), so an upgrade does not withhold every annotated tool.
          store.upgrade(server, t.name, digest, def);
          row = { ...row, accepted_digest: digest, current_digest: digest };
          notice = `accepted digest upgraded to cover title, outputSchema and annotations (now ${digest}); later changes to them are withheld until accepted`;
        } else if (row.current_digest !== digest) store.setCurrent(server, t.name, digest, def);
        const pin = pins[t.name];
        if (pin !== undefined) {
          const p = normalizePin(pin);
          if (p === digest) out.set(t.name, { ok: true, digest });
          // A pin taken before annotations were covered still holds for what it covered; say how to cover the rest.
          else if (p === legacy) out.set(t.name, { ok: true, digest, notice: `spec.tools.${t.name}.digest is a pre-annotation digest: it does not cover title, outputSchema or annotations; pin ${digest} after reviewing them` });
          else out.set(t.name, { ok: false, digest, reason: `tool definition does not match the digest pinned in config (pinned ${p}, now ${digest}); update spec.tools.${t.name}.digest after reviewing it` });
          continue;
        }
        const accepted = row ? row.accepted_digest : digest;
        out.set(t.name, accepted === digest ? { ok: true, digest, notice }
          : { ok: false, digest, reason: `tool definition changed; an admin must accept it (aam tools diff ${server} ${t.name}, then aam tools accept ${server} ${t.name})` });
      }
      return out;
    },
    diff: (server, tool) => toDiff(server, tool, rowOf(server, tool)),
    async accept(server, tool, actor) {
      if (!rowOf(server, tool)) throw new Error(`no definition of tool "${tool}" on MCP server "${server}" has been seen yet`);
      return toDiff(server, tool, await store.accept(server, tool, actor, new Date().toISOString()));
    },
    flagged: () => store.changed().map((r) => toDiff(r.server, r.tool, r)),
    onAccepted: (fn) => store.onAccepted(fn),
  };
}
