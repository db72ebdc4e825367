// Output guardrails on streams without buffering the whole response. Each push scans the
// held-back text plus a little already-emitted context, emits everything that can no longer
// become part of a match, and keeps the rest:
// - the last `window` characters (longer than any pattern that contains whitespace),
// - back to the start of an unfinished whitespace-free run (emails, keys, JWTs of any length),
// - back to the start of an unterminated PEM private-key block,
// - never in the middle of a finding.
// Findings are redacted in flight; a block-action finding tells the caller to cut the stream.
import { evaluateTextFindings, MARKERS, newTally, overScanLimit, record, redactSpans, summaries, toSpans, finding, type CompiledGuardrail, type Tally } from './engine-core.ts';
import type { Category, Direction, FindingSummary } from './types.ts';

export interface StreamGuardOptions {
  /** Characters always held back (default 128). Raise it for long keyword phrases or regexes with spaces. */
  window?: number;
  /** Hold at most this many characters waiting for a run or PEM block to end (default 16384). */
  maxHold?: number;
  /** Rescan only once this many new characters are pending beyond the window (default 32): bounds scans per KB. */
  step?: number;
  direction?: Direction;
}

export interface StreamPush { emit: string; blocked?: { guardrail: string; category: Category } }

export interface StreamGuard {
  push(textDelta: string): StreamPush;
  end(): StreamPush;
  /** Summaries so far (for the audit event at stream end). */
  findings(): FindingSummary[];
}

const CONTEXT = 64;
const PEM_BEGIN = /-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const SPACE = /\s/;

function runStart(buf: string, cut: number): number {
  while (cut > 0 && cut < buf.length && !SPACE.test(buf[cut - 1]) && !SPACE.test(buf[cut])) cut--;
  return cut;
}

function unterminatedPem(buf: string, cut: number): number {
  if (!buf.includes('-----BEGIN')) return cut;
  PEM_BEGIN.lastIndex = 0;
  for (let m = PEM_BEGIN.exec(buf); m !== null; m = PEM_BEGIN.exec(buf)) {
    if (m.index < cut && !buf.includes('-----END', m.index + m[0].length)) return m.index;
  }
  return cut;
}

export function createStreamGuard(guardrails: readonly CompiledGuardrail[], opts: StreamGuardOptions = {}): StreamGuard {
  const direction = opts.direction ?? 'output';
  const active = guardrails.filter((g) => g.on.has(direction));
  // Keyword phrases can match across extra whitespace, so leave them generous room.
  const window = Math.max(opts.window ?? 128, ...active.map((g) => g.keywordSpan * 2 + 16));
  const maxHold = opts.maxHold ?? 16384;
  const minStep = opts.step ?? 32;
  const tally: Tally = newTally();
  let tail = '';      // already emitted raw text, kept as context for the next scan
  let pending = '';   // received, not yet emitted
  let heldAt = 0;     // pending length at the last scan that could emit nothing (a long run is being held)
  let total = 0;
  let stopped: StreamPush['blocked'] | undefined;
  let truncated = false;
  const sizeFlagged = new Set<string>();
  let scanning = active; // guardrails whose scan budget (max_scan_chars) is not spent

  // Size limits count all characters seen: block cuts the stream, redact truncates, flag records once.
  function admit(delta: string): string {
    let keep = delta.length;
    if (scanning.some((g) => total + delta.length > g.maxScanChars)) {
      for (const g of scanning) if (total + delta.length > g.maxScanChars) {
        overScanLimit(tally, g);
        if (g.onScanLimit === 'block') stopped ??= { guardrail: g.name, category: 'scan_limit' };
      }
      scanning = scanning.filter((g) => total + delta.length <= g.maxScanChars);
    }
    for (const g of active) {
      if (g.maxChars === undefined || total + delta.length <= g.maxChars || sizeFlagged.has(g.name)) continue;
      sizeFlagged.add(g.name);
      record(tally, g, [finding('size', g.maxChars, total + delta.length)]);
      if (g.action === 'block') stopped ??= { guardrail: g.name, category: 'size' };
      if (g.action === 'redact') { keep = Math.min(keep, Math.max(0, g.maxChars - total)); truncated = true; }
    }
    total += delta.length;
    return delta.slice(0, keep);
  }

  function step(final: boolean): StreamPush {
    const buf = tail + pending;
    const offset = tail.length;
    const perGuardrail = evaluateTextFindings(buf, scanning);
    const all = perGuardrail.flatMap((p) => p.findings).sort((a, b) => a.start - b.start);
    let cut = final ? buf.length : buf.length - window;
    if (!final) {
      cut = unterminatedPem(buf, runStart(buf, cut));
      for (let changed = true; changed;) {
        changed = false;
        for (const f of all) if (f.start < cut && f.end > cut) { cut = f.start; changed = true; }
      }
      if (cut <= offset && buf.length - offset > maxHold) {
        // Held too long (a giant token or an endless PEM): commit, redacting crossing findings whole.
        cut = buf.length - window;
        for (const f of all) if (f.start < cut && f.end > cut) cut = f.end;
      }
    }
    heldAt = cut <= offset ? pending.length : 0;
    if (cut <= offset) return { emit: '' };
    const spans = [];
    for (const { g, findings } of perGuardrail) {
      const fresh = findings.filter((f) => f.end > offset && f.end <= cut);
      if (fresh.length === 0) continue;
      record(tally, g, fresh);
      if (g.action === 'block') {
        stopped = { guardrail: g.name, category: fresh[0].category };
        return { emit: '', blocked: stopped };
      }
      if (g.action === 'redact') {
        for (const s of toSpans(fresh)) spans.push({ start: Math.max(s.start, offset) - offset, end: s.end - offset, marker: s.marker });
      }
    }
    const emit = redactSpans(buf.slice(offset, cut), spans);
    tail = buf.slice(Math.max(0, cut - CONTEXT), cut);
    pending = buf.slice(cut);
    return { emit };
  }

  return {
    push(textDelta) {
      if (stopped) return { emit: '', blocked: stopped };
      if (truncated) return { emit: '' };
      pending += admit(textDelta);
      if (stopped) return { emit: '', blocked: stopped };
      // Tiny deltas (a token or two) accumulate until a scan can release a useful amount. While a
      // long run is held, rescan only once it has doubled: a held run then costs linear time, not
      // one rescan of everything held per delta (a 16 KB base64 run streamed 4 characters at a time
      // cost ~9 s of CPU).
      if (pending.length < Math.max(window + minStep, Math.min(heldAt * 2, maxHold + 1))) return { emit: '' };
      return step(false);
    },
    end() {
      if (stopped) return { emit: '', blocked: stopped };
      const out = step(true);
      if (out.blocked === undefined && truncated) out.emit += MARKERS.size;
      return out;
    },
    findings: () => summaries(tally),
  };
}
