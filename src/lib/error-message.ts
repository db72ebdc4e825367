// What a caught value says, for a log line, an audit field or a message: an Error's message, or
// the value as a string (a thrown string, a rejected non-Error).

export function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
