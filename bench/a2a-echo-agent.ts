// A local A2A v1 echo agent for bench/a2a-hop.ts: JSON-RPC by hand (no SDK work on the far side,
// so what is measured is the hop). SendMessage answers a message echoing the text; SendStreamingMessage
// answers three SSE events (task, artifact echoing the text, completed).
//   PORT=0 node bench/a2a-echo-agent.ts   (prints "listening <port>")
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const server = http.createServer({ keepAlive: true, noDelay: true }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'GET') { res.writeHead(200, { 'content-type': 'application/json' }).end('{"name":"echo","supportedInterfaces":[{"url":"http://x","protocolBinding":"JSONRPC","protocolVersion":"1.0"}],"skills":[{"id":"echo","name":"echo"}]}'); return; }
    const rpc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown; method: string; params: { message: { parts: Array<{ text?: string }> } } };
    const text = JSON.stringify(rpc.params.message.parts.map((p) => p.text ?? '').join(''));
    const id = JSON.stringify(rpc.id);
    if (rpc.method === 'SendStreamingMessage') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(`data: {"jsonrpc":"2.0","id":${id},"result":{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}}\n\n`);
      res.write(`data: {"jsonrpc":"2.0","id":${id},"result":{"artifactUpdate":{"taskId":"t1","contextId":"c1","artifact":{"artifactId":"a1","parts":[{"text":${text}}]}}}}\n\n`);
      res.end(`data: {"jsonrpc":"2.0","id":${id},"result":{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED"}}}}\n\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(`{"jsonrpc":"2.0","id":${id},"result":{"message":{"messageId":"m1","role":"ROLE_AGENT","parts":[{"text":${text}}]}}}`);
  });
});
server.keepAliveTimeout = 120_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(`listening ${(server.address() as AddressInfo).port}`));
