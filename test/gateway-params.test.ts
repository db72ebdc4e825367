// Request fields that change the answer are carried or refused, never dropped silently
// (providers/params.ts): a target whose wire has no form for one does not serve the request, and a
// route with none left answers 400 naming the field and the route. Real SDK against a local upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';
import { sentMaxTokens, uncarried } from '../src/providers/params.ts';
import { geminiAdapter } from '../src/providers/gemini.ts';
import { bedrockBody } from '../src/providers/bedrock.ts';
import type { ChatRequest } from '../src/providers/types.ts';

let up: LocalServer;
let gw: TestGateway;
let key: string;
let thinkerKey: string;
const seen: Array<{ url: string; body: Record<string, unknown> }> = [];
/** OpenAI's encrypted reasoning item, as its Responses API answers it when asked (include reasoning.encrypted_content). */
const REASONING = { id: 'rs_up', type: 'reasoning', summary: [], encrypted_content: 'gAAAAABoEncryptedByOpenAI==' };

before(async () => {
  up = await localServer((req, res, raw) => {
    const body = JSON.parse(raw) as Record<string, unknown>;
    seen.push({ url: req.url!, body });
    res.setHeader('content-type', 'application/json');
    if (req.url!.endsWith('/messages')) {
      res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model: 'c', content: [{ type: 'text', text: 'fine' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } }));
      return;
    }
    if (body.stream === true) {
      // Streams with logprobs when asked: the text in two pieces, each with its token.
      res.setHeader('content-type', 'text/event-stream');
      const tok = (t: string) => ({ token: t, logprob: -0.3, bytes: [...Buffer.from(t)], top_logprobs: [] });
      if (req.url!.endsWith('/responses')) {
        const asked = Array.isArray(body.include) && body.include.includes('message.output_text.logprobs');
        const ev = (o: Record<string, unknown>) => `event: ${String(o.type)}\ndata: ${JSON.stringify(o)}\n\n`;
        const r = { id: 'resp_up', object: 'response', created_at: 1, status: 'in_progress', model: 'o', output: [] };
        const reasoning = Array.isArray(body.include) && body.include.includes('reasoning.encrypted_content')
          ? ev({ type: 'response.output_item.added', output_index: 0, item: { id: 'rs_up', type: 'reasoning', summary: [] } })
            + ev({ type: 'response.output_item.done', output_index: 0, item: REASONING })
          : '';
        res.end(ev({ type: 'response.created', response: r }) + reasoning
          + ev({ type: 'response.output_text.delta', item_id: 'm', output_index: 0, content_index: 0, delta: 'fi', logprobs: asked ? [tok('fi')] : [] })
          + ev({ type: 'response.output_text.delta', item_id: 'm', output_index: 0, content_index: 0, delta: 'ne', logprobs: asked ? [tok('ne')] : [] })
          + ev({ type: 'response.completed', response: { ...r, status: 'completed', usage: { input_tokens: 3, output_tokens: 2, total_tokens: 5 } } }));
        return;
      }
      const chunk = (delta: Record<string, unknown>, lp: unknown, finish: string | null) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'g', choices: [{ index: 0, delta, logprobs: lp, finish_reason: finish }] })}\n\n`;
      const lp = (t: string) => (body.logprobs === true ? { content: [tok(t)], refusal: null } : null);
      res.end(chunk({ role: 'assistant', content: '' }, null, null) + chunk({ content: 'fi' }, lp('fi'), null) + chunk({ content: 'ne' }, lp('ne'), null) + chunk({}, null, 'stop')
        + `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'g', choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })}\n\ndata: [DONE]\n\n`);
      return;
    }
    if (req.url!.endsWith('/responses')) {
      // OpenAI's Responses API: logprobs when asked with include.
      const lp = Array.isArray(body.include) && body.include.includes('message.output_text.logprobs') ? [{ token: 'fine', logprob: -0.2, bytes: [102, 105, 110, 101], top_logprobs: [] }] : [];
      const reasoning = Array.isArray(body.include) && body.include.includes('reasoning.encrypted_content') ? [REASONING] : [];
      res.end(JSON.stringify({ id: 'resp_up', object: 'response', created_at: 1, status: 'completed', model: 'o', output: [...reasoning, { id: 'msg_up', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', annotations: [], logprobs: lp, text: 'fine' }] }], usage: { input_tokens: 3, output_tokens: 1, total_tokens: 4 } }));
      return;
    }
    const logprobs = body.logprobs === true ? { content: [{ token: 'fine', logprob: -0.1, bytes: [102, 105, 110, 101], top_logprobs: [] }] } : null;
    res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'g', choices: [{ index: 0, message: { role: 'assistant', content: 'fine' }, logprobs, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
  });
  const free = { pricing: { free: true } };
  gw = await startTestGateway(yaml(
    doc('Credential', 'aws', { env: 'AAM_TEST_AWS_SECRET', aws: { access_key_id: 'AKIAIOSFODNN7EXAMPLE' } }),
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${up.url}/v1` }),
    doc('Provider', 'br', { type: 'bedrock', baseUrl: up.url, credential: 'aws', bedrock: { region: 'us-east-1' } }),
    doc('Guardrail', 'mask', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'g' }], ...free }),
    doc('Model', 'claude', { targets: [{ provider: 'ant', model: 'c' }], ...free }),
    // A Claude that takes only a fixed thinking budget (before adaptive thinking).
    doc('Model', 'claude-45', { targets: [{ provider: 'ant', model: 'claude-sonnet-4-5-20250929' }], ...free }),
    doc('Model', 'nova', { targets: [{ provider: 'br', model: 'amazon.nova-pro-v1:0' }], ...free }),
    // Claude behind names aam cannot date: the target says how it thinks.
    doc('Model', 'old-claude-alias', { targets: [{ provider: 'ant', model: 'team-claude-stable', thinking: 'budget' }], ...free }),
    doc('Model', 'new-claude-deployment', { targets: [{ provider: 'ant', model: 'claude-sonnet-4-5-custom', thinking: 'adaptive' }], ...free }),
    doc('Model', 'claude-then-gpt', { targets: [{ provider: 'ant', model: 'c' }, { provider: 'oai', model: 'g' }], ...free }),
    doc('Provider', 'real-oai', { type: 'openai', baseUrl: `${up.url}/v1` }),
    doc('Model', 'o', { targets: [{ provider: 'real-oai', model: 'o' }], ...free }),
    doc('Model', 'gpt-cached', { targets: [{ provider: 'oai', model: 'g' }], cache: { mode: 'exact', ttl_seconds: 300 }, ...free }),
    doc('Model', 'masked', { targets: [{ provider: 'oai', model: 'g' }], guardrails: ['mask'], ...free }),
    ...agentDocs(['gpt', 'claude', 'claude-45', 'nova', 'claude-then-gpt', 'masked', 'o', 'gpt-cached', 'old-claude-alias', 'new-claude-deployment']),
    // $1 an output token, prompts free: a $5,000 budget takes 4,096 output tokens, not 4,096 + 2,048.
    doc('Model', 'claude-priced', { targets: [{ provider: 'ant', model: 'c' }], pricing: { input_per_1m: 0, output_per_1m: 1_000_000 } }),
    doc('Agent', 'thinker', { workload: 'spiffe://test/agent/thinker', team: 'qa' }),
    doc('Model', 'gpt-4o-priced', { targets: [{ provider: 'oai', model: 'gpt-4o' }], pricing: { input_per_1m: 0, output_per_1m: 1_000_000 } }),
    doc('AgentPolicy', 'thinker', { identity: { agent: 'thinker' }, models: { allow: ['claude-priced', 'gpt-4o-priced'], budget: { daily_usd: 5000 } } }),
  ), { AAM_TEST_AWS_SECRET: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' });
  key = gw.key('tester');
  thinkerKey = gw.key('thinker');
});
after(async () => { await gw?.close(); await up?.close(); });

const openai = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
const hi = [{ role: 'user' as const, content: 'hi' }];
const schema = { type: 'json_schema' as const, json_schema: { name: 'p', schema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false } } };

async function refused(p: Promise<unknown>, param: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal((e.error as { param?: string }).param, param);
    assert.match(e.message, message);
    return true;
  });
}

test('response_format to a Bedrock route: 400 naming the field and the route, nothing sent upstream', async () => {
  seen.length = 0;
  await refused(openai().chat.completions.create({ model: 'nova', messages: hi, response_format: schema }), 'response_format', /response_format: json_schema has no Bedrock Converse form \(target br\/amazon\.nova-pro-v1:0\); model route "nova" has no target that takes it/);
  await refused(openai().chat.completions.create({ model: 'claude', messages: hi, response_format: { type: 'json_object' } }), 'response_format', /no Anthropic form/);
  assert.equal(seen.length, 0);
});

test('logprobs: relayed from an OpenAI-wire upstream, whole and streamed; refused to an Anthropic route (streamed too) and under output guardrails', async () => {
  const r = await openai().chat.completions.create({ model: 'gpt', messages: hi, logprobs: true });
  assert.equal(r.choices[0].logprobs?.content?.[0]?.token, 'fine');
  // Streamed: each chunk carries its text's tokens (chat), each output_text.delta its logprobs (Responses, chat or native upstream).
  const tokens: string[] = [];
  for await (const c of await openai().chat.completions.create({ model: 'gpt', messages: hi, logprobs: true, stream: true })) {
    for (const l of c.choices[0]?.logprobs?.content ?? []) tokens.push(l.token);
  }
  assert.deepEqual(tokens, ['fi', 'ne']);
  for (const model of ['gpt', 'o']) {
    const deltas: string[] = [];
    let done: unknown;
    let completed: OpenAI.Responses.Response | undefined;
    for await (const ev of await openai().responses.create({ model, input: 'hi', include: ['message.output_text.logprobs'], stream: true })) {
      if (ev.type === 'response.output_text.delta') for (const l of ev.logprobs) deltas.push(l.token);
      if (ev.type === 'response.output_text.done') done = ev.logprobs.map((l) => l.token);
      if (ev.type === 'response.completed') completed = ev.response;
    }
    assert.deepEqual(deltas, ['fi', 'ne'], model);
    assert.deepEqual(done, ['fi', 'ne'], model);
    const part = completed?.output[0]?.type === 'message' ? completed.output[0].content[0] : undefined;
    assert.deepEqual(part?.type === 'output_text' ? part.logprobs?.map((l) => l.token) : undefined, ['fi', 'ne'], model);
  }
  seen.length = 0;
  await refused(openai().chat.completions.create({ model: 'claude', messages: hi, logprobs: true, stream: true }), 'logprobs', /anthropic upstream returns no logprobs/);
  await refused(openai().chat.completions.create({ model: 'claude', messages: hi, top_logprobs: 2 }), 'top_logprobs', /anthropic upstream returns no logprobs/);
  await refused(openai().chat.completions.create({ model: 'masked', messages: hi, logprobs: true }), 'logprobs', /output guardrails/);
  assert.equal(seen.length, 0, 'no upstream saw a refused request');
});

test('a mixed route serves a field only from the targets that carry it (seed: not the Anthropic target)', async () => {
  seen.length = 0;
  const r = await openai().chat.completions.create({ model: 'claude-then-gpt', messages: hi, seed: 7 }).withResponse();
  assert.equal(r.response.headers.get('x-aam-target'), 'oai/g');
  assert.deepEqual(seen.map((s) => [s.url, s.body.seed]), [['/v1/chat/completions', 7]]);
  // Without the field, the route's first target serves as before.
  const plain = await openai().chat.completions.create({ model: 'claude-then-gpt', messages: hi }).withResponse();
  assert.equal(plain.response.headers.get('x-aam-target'), 'ant/c');
});

test('reasoning_effort (chat) and reasoning.effort (Responses) reach Claude as thinking: adaptive with output_config.effort (4.6 and later), a fixed budget below max_tokens (3.7 to 4.5); a max_tokens too small for it and a model without it (Nova) are 400s naming reasoning_effort', async () => {
  seen.length = 0;
  await openai().chat.completions.create({ model: 'claude', messages: hi, reasoning_effort: 'medium' });
  await openai().chat.completions.create({ model: 'claude-45', messages: hi, reasoning_effort: 'high', max_tokens: 10_000 });
  await openai().responses.create({ model: 'claude-45', input: 'hi', reasoning: { effort: 'low' } });
  await openai().chat.completions.create({ model: 'claude-45', messages: hi, reasoning_effort: 'high', max_tokens: 3000 });
  await openai().chat.completions.create({ model: 'claude', messages: hi, reasoning_effort: 'none' });
  await openai().chat.completions.create({ model: 'claude', messages: hi, reasoning_effort: 'low', response_format: schema });
  const sent = seen.map((x) => [x.body.thinking, x.body.output_config, x.body.max_tokens]);
  assert.deepEqual(sent.slice(0, 5), [
    [{ type: 'adaptive' }, { effort: 'medium' }, 4096 + 2048],
    [{ type: 'enabled', budget_tokens: 4096 }, undefined, 10_000],
    [{ type: 'enabled', budget_tokens: 1024 }, undefined, 4096 + 1024],
    [{ type: 'enabled', budget_tokens: 2999 }, undefined, 3000],
    [undefined, undefined, 4096],
  ]);
  assert.deepEqual((sent[5][1] as { effort?: string }).effort, 'low', 'beside the structured output\'s format');
  assert.ok((sent[5][1] as { format?: unknown }).format !== undefined);
  seen.length = 0;
  await refused(openai().chat.completions.create({ model: 'claude-45', messages: hi, reasoning_effort: 'medium', max_tokens: 1024 }), 'reasoning_effort', /reasoning_effort: claude-sonnet-4-5-20250929 thinks with a budget of at least 1024 tokens, below max_tokens \(1024\); raise max_tokens above 1024/);
  await refused(openai().chat.completions.create({ model: 'nova', messages: hi, reasoning_effort: 'low' }), 'reasoning_effort', /amazon\.nova-pro-v1:0 model on Bedrock has no such parameter/);
  await refused(openai().chat.completions.create({ model: 'claude', messages: hi, reasoning_effort: 'extreme' as 'high' }), 'reasoning_effort', /"extreme" is not an effort aam maps/);
  assert.equal(seen.length, 0, 'nothing reached an upstream');
});

test('a target\'s thinking setting decides how Claude thinks where its name cannot tell (an alias of an older Claude: a fixed budget, not adaptive, which it would refuse); budgets reserve what is sent; a bad value fails the config naming the field', async () => {
  seen.length = 0;
  await openai().chat.completions.create({ model: 'old-claude-alias', messages: hi, reasoning_effort: 'high' });
  await openai().chat.completions.create({ model: 'new-claude-deployment', messages: hi, reasoning_effort: 'high' });
  const sent = seen.map((x) => [x.body.thinking, x.body.max_tokens]);
  assert.deepEqual(sent, [[{ type: 'enabled', budget_tokens: 4096 }, 4096 + 4096], [{ type: 'adaptive' }, 4096 + 4096]]);
  // Claude on Bedrock behind an application inference profile (its ARN names no version).
  const { bedrockBody } = await import('../src/providers/bedrock.ts');
  const arn = 'arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/claude-prod';
  const br = bedrockBody({ model: 'x', messages: hi, max_tokens: 5000, extra: { reasoning_effort: 'medium' } }, arn, { thinking: 'budget' });
  assert.deepEqual(br.additionalModelRequestFields, { thinking: { type: 'enabled', budget_tokens: 2048 } });
  await refused(openai().chat.completions.create({ model: 'old-claude-alias', messages: hi, reasoning_effort: 'low', max_tokens: 1000 }), 'reasoning_effort', /team-claude-stable thinks with a budget of at least 1024 tokens/);
  const { sentMaxTokens } = await import('../src/providers/params.ts');
  assert.equal(sentMaxTokens({ model: 'x', messages: hi, extra: { reasoning_effort: 'xhigh' } }, 'anthropic', 'team-claude-stable', { thinking: 'budget' }), 4096 + 8192);
  const { parseConfigTexts } = await import('../src/config/load.ts');
  assert.throws(() => parseConfigTexts([{ file: 'aam.yaml', text: yaml(doc('Provider', 'ant', { type: 'anthropic', baseUrl: 'http://127.0.0.1:9' }), doc('Model', 'm', { targets: [{ provider: 'ant', model: 'x', thinking: 'fixed' }] })) }]), /thinking/);
});

test('a budget reserves the max_tokens sent: the thinking a reasoning effort adds on Claude (4,096 + 2,048 for medium, no client max_tokens) is refused 429 where the client\'s 4,096 would fit', async () => {
  const thinker = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: thinkerKey, maxRetries: 0 });
  seen.length = 0;
  await assert.rejects(thinker.chat.completions.create({ model: 'claude-priced', messages: hi, reasoning_effort: 'medium' }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal(e.code, 'budget_exceeded');
    assert.match(e.message, /has \$5000\.0000 left .*less than this request may cost \(\$6144\.0000: .*plus the budget of the thinking a reasoning effort adds on Claude/);
    return true;
  });
  assert.equal(seen.length, 0, 'nothing reached an upstream');
  // Without the effort, or with a client max_tokens the thinking stays within, the same budget admits it.
  await thinker.chat.completions.create({ model: 'claude-priced', messages: hi });
  await thinker.chat.completions.create({ model: 'claude-priced', messages: hi, reasoning_effort: 'medium', max_tokens: 4000 });
  assert.deepEqual(seen.map((x) => [x.body.thinking, x.body.max_tokens]), [[undefined, 4096], [{ type: 'adaptive' }, 4000]]);
});

test('a budget reserves what an OpenAI or Gemini model may answer when max_tokens is unset (its own output limit: gpt-4o 16,384), not 4,096; a client max_tokens bounds it', async () => {
  const thinker = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: thinkerKey, maxRetries: 0 });
  seen.length = 0;
  await assert.rejects(thinker.chat.completions.create({ model: 'gpt-4o-priced', messages: hi }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal(e.code, 'budget_exceeded');
    assert.match(e.message, /less than this request may cost \(\$16384\.0000: .*when unset: the model's own output limit/);
    return true;
  });
  assert.equal(seen.length, 0, 'nothing reached an upstream');
  await thinker.chat.completions.create({ model: 'gpt-4o-priced', messages: hi, max_tokens: 4000 });
  assert.equal(seen.length, 1);
  const { unsetMaxTokens } = await import('../src/providers/params.ts');
  const table: Array<[Parameters<typeof unsetMaxTokens>[0], string, number]> = [
    ['openai', 'gpt-4o-mini', 16_384], ['openai', 'gpt-4.1-nano', 32_768], ['openai-responses', 'gpt-5-mini', 128_000], ['openai', 'o4-mini', 100_000],
    ['openai', 'openai/gpt-4o', 16_384], ['gemini', 'gemini-2.5-flash', 65_536], ['gemini', 'gemini-2.0-flash', 8_192],
    ['openai', 'llama-3-70b', 4096], ['anthropic', 'claude-sonnet-4-5', 4096], ['bedrock', 'amazon.nova-pro-v1:0', 4096], ['anthropic', 'gpt-4o', 4096],
  ];
  for (const [wire, model, n] of table) assert.equal(unsetMaxTokens(wire, model), n, `${wire} ${model}`);
});

test('sentMaxTokens: the output limit each wire is sent, raised only where aam adds Claude thinking', () => {
  const req = (extra: Partial<ChatRequest>): ChatRequest => ({ model: 'm', messages: [{ role: 'user', content: 'x' }], ...extra });
  const effort = { extra: { reasoning_effort: 'xhigh' } };
  assert.equal(sentMaxTokens(req({}), 'anthropic', 'c'), 4096);
  assert.equal(sentMaxTokens(req({ max_tokens: 300 }), 'openai', 'g'), 300);
  assert.equal(sentMaxTokens(req(effort), 'anthropic', 'claude-sonnet-4-5-20250929'), 4096 + 8192);
  assert.equal(sentMaxTokens(req(effort), 'bedrock', 'us.anthropic.claude-3-7-sonnet-20250219-v1:0'), 4096 + 8192);
  assert.equal(sentMaxTokens(req({ ...effort, max_completion_tokens: 9000 }), 'anthropic', 'claude-sonnet-4-5-20250929'), 9000);
  // The client's own thinking wins (aam adds none); other wires and models take no effort as thinking.
  assert.equal(sentMaxTokens(req({ ...effort, anthropicExtra: { thinking: { type: 'enabled', budget_tokens: 2000 } }, max_tokens: 3000 }), 'anthropic', 'c'), 3000);
  assert.equal(sentMaxTokens(req(effort), 'openai', 'o3'), 100_000); // not raised: o3's own output limit (no max_tokens set)
  assert.equal(sentMaxTokens(req(effort), 'bedrock', 'amazon.nova-pro-v1:0'), 4096);
  assert.equal(sentMaxTokens(req(effort), 'gemini', 'gemini-2.5-pro'), 65_536);
});

test('the table: each wire carries what it has a form for', () => {
  const req = (extra: Partial<ChatRequest>): ChatRequest => ({ model: 'm', messages: [{ role: 'user', content: 'x' }], ...extra });
  assert.equal(uncarried(req({ extra: { seed: 1, logprobs: true } }), 'openai'), null);
  assert.equal(uncarried(req({ extra: { seed: 1 } }), 'gemini'), null);
  assert.match(uncarried(req({ extra: { seed: 1 } }), 'bedrock')!, /^seed: /);
  assert.match(uncarried(req({ extra: { logit_bias: {} } }), 'gemini')!, /^logit_bias: /);
  assert.equal(uncarried(req({ extra: { logprobs: false, user: 'u', metadata: {} } }), 'anthropic'), null, 'logprobs: false and bookkeeping fields change nothing');
  assert.equal(uncarried(req({ response_format: schema }), 'anthropic'), null, 'a schema Anthropic takes');
  assert.equal(uncarried(req({ response_format: { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'object', properties: { n: { type: 'integer', minimum: 1 } } } } } }), 'anthropic'), null, 'bounds and open objects are rewritten');
  assert.match(uncarried(req({ response_format: { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'object', additionalProperties: { type: 'string' } } } } }), 'anthropic')!, /^response_format: Anthropic has no form for this json_schema \(an object whose additionalProperties is a schema/);
  assert.equal(uncarried(req({ response_format: { type: 'json_object' } }), 'gemini'), null);
  assert.match(uncarried(req({ anthropicExtra: { top_k: 5 } }), 'openai')!, /^top_k: /);
  assert.equal(uncarried(req({ anthropicExtra: { top_k: 5 } }), 'bedrock'), null);
  // Bedrock takes inline documents (Converse document blocks) in user turns, not a URL, an OpenAI file id, a tool result's file.
  const file = (f: Record<string, string>, role: ChatRequest['messages'][number]['role'] = 'user'): ChatRequest =>
    req({ otherParts: true, messages: [{ role, content: [{ type: 'file', file: f }], ...(role === 'tool' ? { tool_call_id: 'c' } : {}) }] });
  assert.equal(uncarried(file({ file_data: 'data:text/csv;base64,YSxi' }), 'bedrock'), null);
  assert.equal(uncarried(file({ file_data: 'YSxi', filename: 'sheet.xlsx' }), 'bedrock'), null);
  assert.match(uncarried(file({ file_data: 'YSxi', filename: 'x.exe' }), 'bedrock')!, /^messages\[0\]\.content\[0\]: a file part: bedrock upstreams take file_data/);
  assert.match(uncarried(file({ file_id: 'file-1' }), 'bedrock')!, /not a file_url or an OpenAI file_id/);
  assert.match(uncarried(file({ file_data: 'data:application/pdf;base64,JVBE' }, 'tool'), 'bedrock')!, /a file part in a tool message: bedrock upstreams take documents in user messages only/);
  // Claude on Bedrock: the effort as thinking in additionalModelRequestFields, maxTokens room for it; other Bedrock models refuse it.
  assert.equal(uncarried(req({ extra: { reasoning_effort: 'low' } }), 'bedrock', 'us.anthropic.claude-3-7-sonnet-20250219-v1:0'), null);
  assert.match(uncarried(req({ extra: { reasoning_effort: 'low' } }), 'bedrock', 'meta.llama3-70b-instruct-v1:0')!, /^reasoning_effort: /);
  assert.match(uncarried(req({ extra: { reasoning_effort: 'low' } }), 'gemini')!, /^reasoning_effort: /);
  const br = (model: string, extra: Partial<ChatRequest>) => bedrockBody(req({ extra: { reasoning_effort: 'medium' }, ...extra }), model) as { additionalModelRequestFields?: Record<string, unknown>; inferenceConfig?: Record<string, unknown> };
  assert.deepEqual(br('us.anthropic.claude-3-7-sonnet-20250219-v1:0', {}), { ...br('us.anthropic.claude-3-7-sonnet-20250219-v1:0', {}), additionalModelRequestFields: { thinking: { type: 'enabled', budget_tokens: 2048 } }, inferenceConfig: { maxTokens: 4096 + 2048 } });
  assert.deepEqual(br('anthropic.claude-opus-4-6-v1', { max_tokens: 8000, anthropicExtra: { top_k: 5 } }).additionalModelRequestFields, { top_k: 5, thinking: { type: 'adaptive' }, output_config: { effort: 'medium' } });
  assert.deepEqual(br('anthropic.claude-opus-4-6-v1', { max_tokens: 8000 }).inferenceConfig, { maxTokens: 8000 });
  assert.deepEqual(br('anthropic.claude-opus-4-1-20250805-v1:0', { anthropicExtra: { thinking: { type: 'enabled', budget_tokens: 3000 } } }).additionalModelRequestFields, { thinking: { type: 'enabled', budget_tokens: 3000 } }, 'an Anthropic client\'s own thinking wins');
  // Gemini gets the sampling fields it has.
  const body = JSON.parse(geminiAdapter.chatRequest(req({ extra: { seed: 3, presence_penalty: 0.5, frequency_penalty: 0.25 } }), { model: 'gemini-2.5-flash', stream: false, options: {} }).body) as { generationConfig: Record<string, unknown> };
  assert.deepEqual(body.generationConfig, { seed: 3, presencePenalty: 0.5, frequencyPenalty: 0.25 });
});

test('logprobs and the cache: a hit replays the logprobs the answer was stored with (the request asked for them: they are part of its key)', async () => {
  seen.length = 0;
  const first = await openai().chat.completions.create({ model: 'gpt-cached', messages: [{ role: 'user', content: 'cache me' }], logprobs: true, top_logprobs: 1 }).withResponse();
  assert.equal(first.response.headers.get('x-aam-cache'), 'miss');
  const hit = await openai().chat.completions.create({ model: 'gpt-cached', messages: [{ role: 'user', content: 'cache me' }], logprobs: true, top_logprobs: 1 }).withResponse();
  assert.equal(hit.response.headers.get('x-aam-cache'), 'hit');
  assert.equal(seen.length, 1, 'the hit reached no upstream');
  assert.deepEqual(hit.data.choices[0].logprobs?.content, first.data.choices[0].logprobs?.content);
  assert.equal(hit.data.choices[0].logprobs?.content?.[0]?.token, 'fine');
  // A streamed answer is stored with its tokens, and a streamed hit replays them.
  const streamTokens = async (): Promise<string[]> => {
    const t: string[] = [];
    for await (const c of await openai().chat.completions.create({ model: 'gpt-cached', messages: [{ role: 'user', content: 'stream me' }], logprobs: true, stream: true })) {
      for (const l of c.choices[0]?.logprobs?.content ?? []) t.push(l.token);
    }
    return t;
  };
  const n = seen.length;
  assert.deepEqual(await streamTokens(), ['fi', 'ne']);
  assert.deepEqual(await streamTokens(), ['fi', 'ne']);
  assert.equal(seen.length, n + 1, 'the second stream was a hit');
  // Without logprobs asked, another key: the stored logprobs are not this request's answer.
  const plain = await openai().chat.completions.create({ model: 'gpt-cached', messages: [{ role: 'user', content: 'cache me' }] }).withResponse();
  assert.equal(plain.response.headers.get('x-aam-cache'), 'miss');
  assert.equal(plain.data.choices[0].logprobs, null);
});

test('Responses API include "message.output_text.logprobs" and top_logprobs: carried to an OpenAI-wire chat upstream and to OpenAI\'s Responses API, refused elsewhere; an include aam cannot honour is a 400 naming it (reasoning.encrypted_content: none to include: aam answers carry no reasoning items)', async () => {
  seen.length = 0;
  const viaChat = await openai().responses.create({ model: 'gpt', input: 'hi', include: ['message.output_text.logprobs'], top_logprobs: 2 });
  const part = viaChat.output[0].type === 'message' ? viaChat.output[0].content[0] : undefined;
  assert.equal(part?.type === 'output_text' ? part.logprobs?.[0]?.token : undefined, 'fine');
  assert.equal(seen.at(-1)!.body.logprobs, true);
  assert.equal(seen.at(-1)!.body.top_logprobs, 2);
  const native = await openai().responses.create({ model: 'o', input: 'hi', include: ['message.output_text.logprobs'], top_logprobs: 3 });
  assert.ok(seen.at(-1)!.url.endsWith('/responses'));
  assert.deepEqual(seen.at(-1)!.body.include, ['message.output_text.logprobs']);
  assert.equal(seen.at(-1)!.body.top_logprobs, 3);
  const nativePart = native.output[0].type === 'message' ? native.output[0].content[0] : undefined;
  assert.equal(nativePart?.type === 'output_text' ? nativePart.logprobs?.[0]?.logprob : undefined, -0.2);
  // Not asked: none (top_logprobs alone asks for nothing, as on OpenAI).
  const none = await openai().responses.create({ model: 'gpt', input: 'hi', top_logprobs: 2 });
  const nonePart = none.output[0].type === 'message' ? none.output[0].content[0] : undefined;
  assert.deepEqual(nonePart?.type === 'output_text' ? nonePart.logprobs : undefined, []);
  assert.equal(seen.at(-1)!.body.logprobs, undefined);
  const codex = await openai().responses.create({ model: 'gpt', input: 'hi', include: ['reasoning.encrypted_content'] });
  assert.ok(!codex.output.some((i) => i.type === 'reasoning'));
  seen.length = 0;
  await refused(openai().responses.create({ model: 'claude', input: 'hi', include: ['message.output_text.logprobs'] }), 'logprobs', /anthropic upstream returns no logprobs/);
  await refused(openai().responses.create({ model: 'gpt', input: 'hi', include: ['message.output_text.logprobs', 'code_interpreter_call.logs' as never] }), 'include[1]', /not an include aam can honour/);
  await refused(openai().responses.create({ model: 'gpt', input: 'hi', include: ['message.output_text.logprobs'], top_logprobs: 30 }), 'top_logprobs', /0 to 20/);
  assert.equal(seen.length, 0, 'nothing refused reached an upstream');
});

test('Responses include "reasoning.encrypted_content": OpenAI\'s reasoning items relayed whole (stream and not), sent back in input for a stateless turn (store: false) to OpenAI\'s Responses API; another target is a 400 naming it', async () => {
  seen.length = 0;
  const first = await openai().responses.create({ model: 'o', input: 'hi', store: false, include: ['reasoning.encrypted_content'] });
  assert.deepEqual(seen[0].body.include, ['reasoning.encrypted_content']);
  assert.deepEqual(first.output.map((i) => i.type), ['reasoning', 'message']);
  assert.deepEqual(first.output[0], REASONING);
  assert.equal(first.output_text, 'fine');
  // Streamed: the reasoning item is added and done whole, before the message.
  const order: string[] = [];
  let completed: OpenAI.Responses.Response | undefined;
  for await (const ev of await openai().responses.create({ model: 'o', input: 'hi', store: false, include: ['reasoning.encrypted_content'], stream: true })) {
    if (ev.type === 'response.output_item.added' || ev.type === 'response.output_item.done') order.push(`${ev.type.slice(21)} ${ev.item.type} ${ev.output_index}`);
    if (ev.type === 'response.output_item.done' && ev.item.type === 'reasoning') assert.deepEqual(ev.item, REASONING);
    if (ev.type === 'response.completed') completed = ev.response;
  }
  assert.deepEqual(order, ['added reasoning 0', 'done reasoning 0', 'added message 1', 'done message 1']);
  assert.deepEqual(completed?.output[0], REASONING);
  // The next turn, stateless (as the Agents SDK does with store: false): the items sent back, reasoning first.
  seen.length = 0;
  const input = [{ role: 'user' as const, content: 'hi' }, ...first.output, { role: 'user' as const, content: 'and then?' }] as OpenAI.Responses.ResponseInput;
  await openai().responses.create({ model: 'o', input, store: false, include: ['reasoning.encrypted_content'] });
  assert.deepEqual((seen[0].body.input as Array<{ type?: string }>).map((i) => i.type), ['message', 'reasoning', 'message', 'message']);
  assert.deepEqual((seen[0].body.input as unknown[])[1], REASONING, 'sent back as OpenAI answered it');
  // A target that cannot read it: 400 naming it, nothing sent.
  seen.length = 0;
  await refused(openai().responses.create({ model: 'gpt', input, store: false }), 'messages[1].reasoning', /goes to OpenAI's Responses API only; a openai upstream cannot read it/);
  await refused(openai().responses.create({ model: 'claude', input, store: false }), 'messages[1].reasoning', /anthropic upstream cannot read it/);
  assert.equal(seen.length, 0);
});
