// What a caught value says, for a log line, an audit field or a message: an Error's message, or
// the value as a string (a thrown string, a rejected non-Error).

export function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** How much of a caller's own text (an id, a name, a path) a message or an audit field quotes. */
export const QUOTED_MAX = 64;

/**
 * Caller-chosen text quoted in a refusal or its evidence: its first QUOTED_MAX characters and "…"
 * when there is more. A 100 KB task id named in "task ... not found" was sent back whole and
 * recorded whole; the head is enough to tell which one it was. Never cut between a surrogate pair.
 */
export function clip(text: string, max = QUOTED_MAX): string {
  if (text.length <= max) return text;
  const c = text.charCodeAt(max - 1);
  return `${text.slice(0, c >= 0xd800 && c <= 0xdbff ? max - 1 : max)}…`;
}
