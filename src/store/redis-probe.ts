// Why a Redis that did not get ready at start never will, when its errors do not say (redisRefusal
// reads those): probed once, only then, with a connection of its own. Two misfits look like a
// Redis that is away and would be waited for forever:
// - rediss:// to a Redis without TLS: the server reads the ClientHello as the start of a command
//   and waits for its end; aam waits for the ServerHello; the connect times out. A plain `PING`
//   gets a plain Redis answer.
// - TLS 1.3 to a Redis that asks for a client certificate aam lacks (or one it does not accept):
//   the client's handshake completes, then the server closes, and the close often arrives as a
//   reset before its alert is read. A `PING` after the handshake gets no answer but that close.
// A Redis that is really down (refused, unreachable, silent) gives neither sign: null, waited for.
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Redis } from 'ioredis';
import type { TlsFiles } from './fleet-tls.ts';

const PING = 'PING\r\n';
/** The first byte of a RESP reply (simple string, error, bulk string, integer, array; RESP3's map, attribute). */
const RESP_REPLY = /^[-+$:*%|]/;

/** `ended`: the other side closed or reset it (not our timeout). */
interface Heard { connected: boolean; data: Buffer | null; ended: boolean; error?: Error }

/** Sends PING once `connected` fires and reports what came back: the first bytes, or nothing before close, error or timeout. */
function listen(socket: Socket, connectedEvent: 'connect' | 'secureConnect', timeoutMs: number): Promise<Heard> {
  return new Promise((resolve) => {
    const heard: Heard = { connected: false, data: null, ended: false };
    const done = () => { clearTimeout(timer); socket.destroy(); resolve(heard); };
    const timer = setTimeout(done, timeoutMs);
    const ended = () => { heard.ended = true; done(); };
    socket.once(connectedEvent, () => { heard.connected = true; socket.write(PING); });
    socket.once('data', (d: Buffer) => { heard.data = d; done(); });
    socket.once('error', (e: Error) => { heard.error = e; ended(); });
    socket.once('close', ended);
  });
}

/**
 * What is wrong with the TLS setting of AAM_REDIS_URL (and AAM_REDIS_CERT_FILE / _KEY_FILE), said
 * so that an operator can fix it, or null when the probe sees nothing wrong (Redis away, or fine).
 */
export async function redisTlsMisfit(url: string, tls: TlsFiles | undefined, timeoutMs = 1500): Promise<string | null> {
  const o = new Redis(url, { lazyConnect: true }).options;
  if (o.path) return null;
  const host = o.host ?? 'localhost';
  const port = o.port ?? 6379;
  const where = `${host}:${port}`;
  const wantsTls = /^rediss:\/\//i.test(url);
  const plain = await listen(tcpConnect({ host, port }), 'connect', timeoutMs);
  const spoke = plain.data?.toString('latin1') ?? '';
  if (RESP_REPLY.test(spoke)) {
    return wantsTls ? `AAM_REDIS_URL is rediss:// (TLS), but ${where} answers plain Redis without TLS: use redis://, or turn TLS on in Redis (tls-port)` : null;
  }
  if (!wantsTls || !plain.connected) return null;
  const secure = await listen(tlsConnect({ host, port, ...(/^[\d.:]+$/.test(host) ? {} : { servername: host }), ...(tls as ConnectionOptions) }), 'secureConnect', timeoutMs);
  // A server slow to answer is not refused: only one that ended the connection after the handshake.
  if (!secure.connected || secure.data !== null || !secure.ended) return null;
  const how = secure.error ? `reset it (${secure.error.message})` : 'closed it';
  return tls?.cert
    ? `Redis at ${where} ${how} right after the TLS handshake, before answering: it does not accept the client certificate aam presents (AAM_REDIS_CERT_FILE, AAM_REDIS_KEY_FILE); present one its tls-ca-cert-file signed`
    : `Redis at ${where} ${how} right after the TLS handshake, before answering: it asks for a client certificate (tls-auth-clients) and aam presents none; set AAM_REDIS_CERT_FILE and AAM_REDIS_KEY_FILE`;
}
