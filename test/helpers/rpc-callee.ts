// A plain A2A callee for gateway tests: a node:http server that reads each JSON-RPC request whole.
// Apart from helpers/gateway.ts, whose importers include test/memory-builtins.test.ts: an ES import
// of node:http loads Node's bundled undici (and http2, tls).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/** A JSON-RPC call as a callee reads it: its id and its message's first text part. */
export interface CalleeCall { id: unknown; text: string }

/**
 * A plain A2A callee (node:http) that reads each request's body whole and hands it to `answer`
 * (`call`: the JSON-RPC id and first text part when the body is a JSON-RPC message, else null).
 */
export function rpcCallee(answer: (call: CalleeCall | null, res: ServerResponse, req: IncomingMessage, body: string) => void): Server {
  return createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c; });
    req.on('end', () => {
      let call: CalleeCall | null = null;
      try {
        const rpc = JSON.parse(body) as { id: unknown; params?: { message?: { parts?: Array<{ text?: string }> } } };
        call = { id: rpc.id, text: rpc.params?.message?.parts?.[0]?.text ?? '' };
      } catch { /* not JSON: a GET, or a test's own body */ }
      answer(call, res, req, body);
    });
  });
}
