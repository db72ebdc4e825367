// The README's 5-minute quickstart, run as written against the repository's aam.yaml (no provider
// keys: the demo provider answers): the answers it shows are the answers a new user gets, its SDK
// and framework snippet runs, and the demo's answers parse where frameworks parse them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { Agent, run, tool, setTracingDisabled, OpenAIResponsesModel } from '@openai/agents';
import { ROOT } from './helpers/e2e.ts';
import { startTestGateway } from './helpers/gateway.ts';
import { tempDir } from './helpers/temp.ts';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const quickstart = readme.slice(readme.indexOf('## 5-minute quickstart'), readme.indexOf('\n## ', readme.indexOf('## 5-minute quickstart') + 5));
/** The request body and the answer shown for one step ("3. **Allowed:**"). */
function step(n: number): { body: Record<string, unknown>; answer: string } {
  const text = quickstart.slice(quickstart.indexOf(`${n}. **`), quickstart.indexOf(`${n + 1}. **`));
  const body = /-d '(\{.*\})'/.exec(text)?.[1];
  const answer = /```json\n([\s\S]*?)\n\s*```/.exec(text)?.[1];
  assert.ok(body && answer, `README quickstart step ${n}: a curl -d body and a json answer`);
  return { body: JSON.parse(body) as Record<string, unknown>, answer: answer.replace(/\n\s*/g, '').trim() };
}

const noKeys = { OPENAI_API_KEY: '', ANTHROPIC_API_KEY: '', GEMINI_API_KEY: '' };
const saved = Object.fromEntries(Object.keys(noKeys).map((k) => [k, process.env[k]]));
for (const k of Object.keys(noKeys)) delete process.env[k];
const gw = await startTestGateway(readFileSync(join(ROOT, 'aam.yaml'), 'utf8'));
after(async () => { await gw.close(); for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v; });
const key = gw.key('finance-analyst');
const post = (body: unknown) => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('step 3 (allowed): the answer has the fields, model and text the README shows', async () => {
  const { body, answer } = step(3);
  const res = await post(body);
  assert.equal(res.status, 200);
  const got = await res.json() as { object: string; model: string; choices: Array<{ message: { content: string }; finish_reason: string }> };
  // The README elides with "…": its fixed parts are the object, the model that served it and the text's start.
  const shown = /"object":"([^"]+)","model":"([^"]+)"/.exec(answer);
  assert.ok(shown, answer);
  assert.equal(got.object, shown[1]);
  assert.equal(got.model, shown[2], 'README shows the model that served the answer'); // before: README said "reasoning-high", aam answers "demo-reasoning"
  const text = /"content":"((?:[^"\\]|\\.)*?) …"/.exec(answer)?.[1];
  assert.ok(text && got.choices[0].message.content.startsWith(text.replaceAll('\\"', '"')), got.choices[0].message.content);
  assert.equal(got.choices[0].finish_reason, /"finish_reason":"(\w+)"/.exec(answer)?.[1]);
});

test('step 4 (denied): the 403 body is the README\'s, byte for byte, and /v1/models lists what it says', async () => {
  const { body, answer } = step(4);
  const res = await post(body);
  assert.equal(res.status, 403);
  assert.equal(await res.text(), answer);
  const listed = /lists only (`[^`]+`(?:,? and `[^`]+`)*)/.exec(quickstart)?.[1].match(/`([^`]+)`/g)?.map((s) => s.slice(1, -1));
  const models = await (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).json() as { data: Array<{ id: string }> };
  assert.deepEqual(models.data.map((m) => m.id), listed);
});

test('step 5 runs as written: the SDKs and agent frameworks answer, with the key step 2 gives the shell', async () => {
  const text = quickstart.slice(quickstart.indexOf('5. **'), quickstart.indexOf('6. **'));
  const code = /```ts\n([\s\S]*?)\n\s*```/.exec(text)?.[1];
  assert.ok(code, 'README quickstart step 5: a ts block');
  // Step 2's line as a shell runs it: without `export`, KEY never reaches `node agent.mjs`.
  const exported = /^\s*export KEY=\$\(npx aam keys create/m.test(quickstart.slice(quickstart.indexOf('2. **'), quickstart.indexOf('3. **')));
  const dir = tempDir('aam-readme-step5-');
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'agent.mjs'), code.replace(/^ {3}/gm, '').replaceAll('http://localhost:8080', gw.url));
  const env: Record<string, string | undefined> = { ...process.env, OPENAI_API_KEY: undefined, KEY: exported ? key : undefined };
  // Before: KEY=$(…) without export, and the OpenAI client threw "Missing credentials".
  const { stdout } = await promisify(execFile)(process.execPath, ['agent.mjs'], { cwd: dir, env: env as NodeJS.ProcessEnv, encoding: 'utf8', timeout: 60_000 });
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 3, stdout); // the Agents SDK, the AI SDK and LangChain each print the answer
  for (const line of lines) assert.match(line, /^Hello from aam's built-in demo provider .* You said: "hi"$/);
});

test('demo provider: structured output and a tool loop parse in the real SDKs (no provider keys)', async () => {
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
  const Report = z.object({ summary: z.string().min(3), score: z.number().int().min(1).max(5), tags: z.array(z.string()).min(2), owner: z.string().email(), status: z.enum(['draft', 'final']), note: z.string().nullable() });
  const parsed = await openai.chat.completions.parse({ model: 'reasoning-high', messages: [{ role: 'user', content: 'Summarise Q3' }], response_format: zodResponseFormat(Report, 'report') });
  assert.ok(Report.safeParse(parsed.choices[0].message.parsed).success, JSON.stringify(parsed.choices[0].message.parsed)); // before: prose, a SyntaxError
  const responses = await openai.responses.parse({ model: 'summarization', input: 'Summarise Q3', text: { format: zodTextFormat(Report, 'report') } });
  assert.ok(Report.safeParse(responses.output_parsed).success, responses.output_text);
  const json = await openai.chat.completions.create({ model: 'reasoning-high', messages: [{ role: 'user', content: 'JSON please' }], response_format: { type: 'json_object' } });
  assert.equal(typeof JSON.parse(json.choices[0].message.content ?? ''), 'object');

  // The Agents SDK checks a tool's arguments against its schema and a final output against outputType.
  setTracingDisabled(true);
  const calls: string[] = [];
  const weather = tool({ name: 'get_weather', description: 'weather', parameters: z.object({ location: z.string(), days: z.number().int().min(1) }), execute: async ({ location }) => { calls.push(location); return 'sunny'; } });
  const agent = new Agent({ name: 'w', instructions: 'Use the tool.', tools: [weather], outputType: Report, model: new OpenAIResponsesModel(openai as unknown as ConstructorParameters<typeof OpenAIResponsesModel>[0], 'reasoning-high') });
  const result = await run(agent, 'Weather in Paris?');
  assert.deepEqual(calls, ['Weather in Paris?']); // before: {query}, which the SDK refused as the tool's input
  assert.ok(Report.safeParse(result.finalOutput).success, JSON.stringify(result.finalOutput));
});
