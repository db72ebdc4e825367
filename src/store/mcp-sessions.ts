// MCP session registry of one process (embedded mode): records in memory, expiring when idle.
// Counting walks the records; opening a session is rare next to using one, and there are at most
// the global cap of them (default 10,000).
import { LOG_LEVEL_HOLD, type McpSessionCaps, type McpSessionNote, type McpSessionOpened, type McpSessionRecord, type McpSessionRegistry } from './types.ts';

export function memoryMcpSessions(now: () => number = Date.now): McpSessionRegistry {
  const live = new Map<string, { rec: McpSessionRecord; expires: number; held?: Map<string, string> }>();
  const notes: Array<(id: string, message: McpSessionNote) => void> = [];
  return {
    open(rec: McpSessionRecord, caps: McpSessionCaps): McpSessionOpened {
      const t = now();
      let total = 0, mine = 0, domain = 0;
      for (const [id, s] of live) {
        if (s.expires <= t) { live.delete(id); continue; }
        total++;
        if (s.rec.owner === rec.owner) mine++;
        if (rec.domain !== null && s.rec.domain === rec.domain) domain++;
      }
      if (mine >= caps.perIdentity) return { ok: false, limit: 'identity', open: mine };
      if (rec.domain !== null && domain >= caps.perDomain) return { ok: false, limit: 'domain', open: domain };
      if (total >= caps.total) return { ok: false, limit: 'total', open: total };
      live.set(rec.id, { rec, expires: t + caps.idleMs });
      return { ok: true };
    },
    touch(id: string, idleMs: number): McpSessionRecord | null {
      const s = live.get(id);
      const t = now();
      if (!s || s.expires <= t) { live.delete(id); return null; }
      s.expires = t + idleMs;
      return s.rec;
    },
    close(id: string): void { live.delete(id); },
    notify(id, message) { for (const fn of notes) fn(id, message); },
    onNotify(fn) { notes.push(fn); },
    hold(id, uri, holder) {
      const s = live.get(id);
      if (!s) return;
      if (holder === null) s.held?.delete(uri);
      else (s.held ??= new Map()).set(uri, holder);
      if (uri === LOG_LEVEL_HOLD) s.rec = { ...s.rec, logLevel: holder ?? undefined };
    },
    holders(id, uris) {
      const s = live.get(id);
      return s && s.expires > now() ? uris.map((u) => s.held?.get(u) ?? null) : null;
    },
    onResync() { /* one process: a note is never lost */ },
  };
}
