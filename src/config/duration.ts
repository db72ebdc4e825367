// Durations as people write them in flags and environment variables: 90s, 15m, 1h30m, 90d, or
// plain seconds. One parser for every such value (token TTLs, retention periods).
import { UsageError } from '../lib/usage-error.ts';

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds in `text`; throws naming `what` with examples when it is not a positive duration. */
export function parseDurationSeconds(text: string, what: string): number {
  const t = text.trim();
  let seconds = 0;
  if (/^\d+$/.test(t)) seconds = Number(t);
  else {
    const re = /(\d+)([smhd])/gy;
    let m: RegExpExecArray | null;
    let consumed = 0;
    while ((m = re.exec(t)) !== null) {
      seconds += Number(m[1]) * UNITS[m[2]];
      consumed = re.lastIndex;
    }
    if (consumed === 0 || consumed !== t.length) throw new Error(`invalid ${what} "${text}": use e.g. 90s, 15m, 1h30m or 90d`);
  }
  if (seconds <= 0) throw new Error(`invalid ${what} "${text}": must be more than 0 seconds`);
  return seconds;
}

/**
 * A point in time as people give it: an ISO-8601 time, or a duration ago like 30m, 24h or 7d.
 * Throws an Error whose message says what is accepted.
 */
export function timeOrAgo(text: string, now = Date.now()): number {
  if (/^\d+[smhd]/.test(text.trim())) return now - parseDurationSeconds(text, 'duration') * 1000;
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new Error(`"${text}" is neither an ISO time (like 2026-01-31T00:00:00Z) nor a duration ago (like 30m, 24h, 7d)`);
  return t;
}

/** A CLI flag's time (timeOrAgo), undefined when the flag is not given; errors name the flag. */
export function flagTime(flag: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  try { return timeOrAgo(String(value)); } catch (e) { throw new UsageError(`${flag}: ${(e as Error).message}`); }
}
