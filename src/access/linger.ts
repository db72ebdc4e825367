// Closing a connection whose request body was answered before it was all read (a 413, a refusal
// while reading, a 401): the rest is never parsed or kept, and is read at most LINGER_BYTES and
// LINGER_MS long, so a client still sending can read the answer instead of a reset (closing with
// unread bytes makes the kernel reset the connection), while an agent sending gigabytes costs at
// most that much. Node's own behaviour reads and discards all of it to keep the connection.
import type { IncomingMessage } from 'node:http';

export const LINGER_BYTES = 1024 * 1024;
export const LINGER_MS = 1000;

/**
 * Whether part of the request's body may still be unread when it is answered. A request without a
 * body (no content-length or 0, no transfer-encoding: a GET) has none, though node:http marks it
 * complete only after its handler ran: answered at once (/healthz, a 401), it closed its connection.
 */
export function bodyUnread(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const h = req.headers;
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0');
}

/** Call before the answer's head is written; the answer must then say `connection: close`. */
export function closeAfterAnswer(req: IncomingMessage): void {
  const socket = req.socket;
  let left = LINGER_BYTES;
  req.removeAllListeners('data');
  req.on('data', (c: Buffer) => { if ((left -= c.length) < 0) socket.destroy(); });
  req.resume();
  // node:http ends and destroys a `connection: close` socket once the answer is out: end only the
  // writing side, destroy when the client is done or the allowance is spent.
  socket.destroySoon = function lingerThenDestroy(this: typeof socket) {
    this.end();
    setTimeout(() => this.destroy(), LINGER_MS).unref();
  };
}
