// Bare pass-through proxy: node:http in, undici keep-alive pool out, bodies piped both ways, nothing
// parsed. The floor for any Node gateway on this machine (every extra hop costs scheduling time).
//   UPSTREAM_URL=http://127.0.0.1:18080 PORT=18081 node bench/bare-proxy.ts
import http from 'node:http';
import { Pool } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';

const pool = new Pool(process.env.UPSTREAM_URL ?? 'http://127.0.0.1:18080', { connections: 256, keepAliveTimeout: 60_000 });
const server = http.createServer({ keepAlive: true, noDelay: true }, (req, res) => {
  const headers: IncomingHttpHeaders = { ...req.headers, host: undefined, connection: undefined };
  pool.stream({ path: req.url ?? '/', method: req.method as 'POST', headers, body: req },
    ({ statusCode, headers: h }) => { res.writeHead(statusCode, h as http.OutgoingHttpHeaders); return res; },
    (err) => { if (err && !res.headersSent) { res.writeHead(502).end(); } else if (err) res.destroy(); });
});
server.keepAliveTimeout = 120_000;
server.listen(Number(process.env.PORT ?? 18081), '127.0.0.1', () => console.log(`bare-proxy on ${process.env.PORT ?? 18081}`));
// A clean exit on SIGTERM, so that --cpu-prof (cpu-per-request --prof) writes its profile.
process.once('SIGTERM', () => process.exit(0));
