// A client that posts one hostile chat body to aam back to back for a while, as its own process so
// its CPU does not disturb the prober. Prints one JSON line: requests, statuses, median ms.
// Run: node bench/lib/hostile-client.ts URL KEY BODY_FILE SECONDS
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';

const [url, key, bodyFile, seconds] = process.argv.slice(2);
const body = readFileSync(bodyFile);
const pool = new Pool(url, { connections: 1 });
const until = Date.now() + Number(seconds) * 1000;
const statuses = new Map<number, number>();
const times: number[] = [];
while (Date.now() < until) {
  const t = performance.now();
  // A refused body may be answered and its connection closed while it is still being sent: the
  // client then sees the connection reset (counted as status 0) rather than the answer.
  const status = await pool.request({
    path: '/v1/chat/completions', method: 'POST', body,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': String(body.length) },
  }).then(async (res) => { await res.body.arrayBuffer(); return res.statusCode; }, () => 0);
  times.push(performance.now() - t);
  statuses.set(status, (statuses.get(status) ?? 0) + 1);
}
await pool.close();
times.sort((a, b) => a - b);
console.log(JSON.stringify({ requests: times.length, statuses: Object.fromEntries(statuses), medianMs: times[times.length >> 1] ?? 0 }));
