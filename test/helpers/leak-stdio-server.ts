// A stdio MCP server for the leak hunt: it prints the credential aam gave it (env LEAK_ENV names
// the variable) to stderr in every text form, which aam logs, then answers initialize, tools/list
// and ping over stdin/stdout (newline-delimited JSON-RPC, as the MCP stdio transport does).
import { createInterface } from 'node:readline';
import { payload, TEXT_FORMS } from './leak-forms.ts';

const secret = process.env[process.env.LEAK_ENV ?? ''] ?? '';
for (const form of Object.keys(TEXT_FORMS)) process.stderr.write(`stdio ${form}: ${payload(form, secret, 'text')}\n`);
process.stderr.write(`stdio done\n`);

const reply = (id: unknown, result: unknown) => process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id, result }) + '\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  let msg: { id?: unknown; method?: string; params?: { protocolVersion?: string } };
  try { msg = JSON.parse(line) as typeof msg; } catch { return; }
  if (msg.id === undefined) return;
  if (msg.method === 'initialize') reply(msg.id, { protocolVersion: msg.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'leaky-stdio', version: '1.0.0' } });
  else if (msg.method === 'tools/list') reply(msg.id, { tools: [] });
  else reply(msg.id, {});
});
