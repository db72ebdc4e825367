// The README's 5-minute quickstart, run as written against the repository's aam.yaml (no provider
// keys: the demo provider answers): the answers it shows are the answers a new user gets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers/e2e.ts';
import { startTestGateway } from './helpers/gateway.ts';

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
