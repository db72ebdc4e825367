// The agent frameworks' other everyday paths against aam: structured output by each SDK's own
// mechanism (a zod schema), an Agents SDK handoff, and a client aborting a stream mid-answer (aam
// cuts the upstream call too), over chat-completions, Anthropic and OpenAI Responses upstreams.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { z } from 'zod';
import { zodTextFormat } from 'openai/helpers/zod';
import { Agent, run, tool, setTracingDisabled, OpenAIResponsesModel, OpenAIChatCompletionsModel, type Model } from '@openai/agents';
import { generateObject, streamText, type LanguageModel } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { ChatOpenAI } from '@langchain/openai';
import { startFrameworkRig, weatherOf, WEATHER_JSON, type FrameworkRig } from './helpers/frameworks.ts';

// The Anthropic provider warns that it does not know aam's route names (a client-side notice).
(globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;

let rig: FrameworkRig;
before(async () => {
  setTracingDisabled(true); // no export to OpenAI's trace endpoint from a test
  rig = await startFrameworkRig();
});
after(async () => { await rig?.close(); });

const Weather = z.object({ city: z.string(), temp_c: z.number() });
// The Agents SDK pins its own openai release; the client object is the same at run time.
type AgentsClient = ConstructorParameters<typeof OpenAIResponsesModel>[0];
const openai = () => new OpenAI({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1`, maxRetries: 0 });
const aiOpenAI = () => createOpenAI({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1` });

/**
 * The JSON schema the last upstream request carried, in its wire's place (chat, Anthropic, Responses;
 * or as the one tool it must call: the AI SDK's Anthropic provider asks that way for a model it does not know).
 */
function schemaSent(): unknown {
  type Tool = { function?: { parameters?: unknown }; input_schema?: unknown; parameters?: unknown };
  const b = rig.fake.requests.at(-1)?.body as { response_format?: { json_schema?: { schema?: unknown } }; output_config?: { format?: { schema?: unknown } }; text?: { format?: { schema?: unknown } }; tools?: Tool[] };
  const t = b.tools?.[0];
  return b.response_format?.json_schema?.schema ?? b.output_config?.format?.schema ?? b.text?.format?.schema ?? t?.function?.parameters ?? t?.input_schema ?? t?.parameters;
}

for (const route of ['json-oai', 'json-ant', 'json-native']) {
  test(`structured output on ${route}: responses.parse, the Agents SDK's outputType, AI SDK generateObject (OpenAI and Anthropic providers), LangChain withStructuredOutput`, async () => {
    const results: unknown[] = [];
    const parsed = await openai().responses.parse({ model: route, input: 'Weather in Paris?', text: { format: zodTextFormat(Weather, 'weather') } });
    results.push(parsed.output_parsed);
    const agent = new Agent({ name: 'weather', instructions: 'Answer as JSON.', outputType: Weather, model: new OpenAIResponsesModel(openai() as unknown as AgentsClient, route) });
    results.push((await run(agent, 'Weather in Paris?')).finalOutput);
    for (const model of [aiOpenAI().responses(route), createAnthropic({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1` })(route)] as LanguageModel[]) {
      results.push((await generateObject({ model, schema: Weather, prompt: 'Weather in Paris?', maxRetries: 0 })).object);
      // The schema reached the upstream (the answer is JSON whatever it asked: the fake says so).
      assert.deepEqual(Object.keys((schemaSent() as { properties?: object })?.properties ?? {}), ['city', 'temp_c']);
    }
    const lc = new ChatOpenAI({ model: route, apiKey: rig.key, configuration: { baseURL: `${rig.gw.url}/v1` }, useResponsesApi: true, maxRetries: 0 });
    results.push(await lc.withStructuredOutput(Weather).invoke('Weather in Paris?'));
    assert.deepEqual(results, Array(5).fill(WEATHER_JSON));
  });
}

for (const [label, make] of [
  ['Responses model', (m: string) => new OpenAIResponsesModel(openai() as unknown as AgentsClient, m)],
  ['chat-completions model', (m: string) => new OpenAIChatCompletionsModel(openai() as unknown as AgentsClient, m)],
] as Array<[string, (m: string) => Model]>) {
  test(`Agents SDK handoff, ${label}, streamed: triage on an Anthropic upstream hands off, the other agent answers with its tools`, async () => {
    rig.fake.reset();
    const getWeather = tool({ name: 'get_weather', description: 'Current weather for a city', parameters: z.object({ location: z.string() }), execute: async ({ location }) => weatherOf(location) });
    const weather = new Agent({ name: 'Weather', instructions: 'Use the tool.', handoffDescription: 'Weather questions', tools: [getWeather], model: make('loop-oai') });
    const triage = new Agent({ name: 'Triage', instructions: 'Hand weather questions off.', handoffs: [weather], model: make('handoff-ant') });
    const stream = await run(triage, 'What is the weather in Paris?', { stream: true });
    const handoffs: string[] = [];
    for await (const ev of stream) if (ev.type === 'agent_updated_stream_event') handoffs.push(ev.agent.name);
    await stream.completed;
    assert.deepEqual(handoffs, ['Triage', 'Weather'].slice(handoffs.length === 1 ? 1 : 0));
    assert.equal(stream.lastAgent?.name, 'Weather');
    // The fake's tool loop ends on the last tool result: here the handoff's own output.
    assert.equal(stream.finalOutput, 'final: the tool said {"assistant":"Weather"}');
    const [first, second] = rig.fake.requests;
    assert.deepEqual([first.path, second.path], ['/v1/messages', '/v1/chat/completions']);
    assert.deepEqual((second.body as { tools: Array<{ function: { name: string } }> }).tools.map((t) => t.function.name), ['get_weather']);
  });
}

for (const route of ['pause-oai', 'pause-ant']) {
  test(`AI SDK streamText aborted mid-answer on ${route}: the client stops at once, and aam cuts the upstream call`, async () => {
    rig.fake.reset();
    const ac = new AbortController();
    const t0 = Date.now();
    const r = streamText({ model: aiOpenAI().responses(route), prompt: 'one two three', abortSignal: ac.signal, maxRetries: 0, onError: () => {} });
    let text = '';
    try {
      for await (const t of r.textStream) { text += t; ac.abort(); }
    } catch { /* the abort, as the SDK reports it */ }
    assert.ok(text.length > 0 && 'echo: one two three'.startsWith(text), text);
    while (rig.fake.requests[0]?.aborted !== true && Date.now() - t0 < 4000) await sleep(10);
    assert.equal(rig.fake.requests[0].aborted, true, 'the upstream request was cut, not left to run 5 s');
    assert.ok(Date.now() - t0 < 4000);
  });
}
