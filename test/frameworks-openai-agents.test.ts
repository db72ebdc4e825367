// The OpenAI Agents SDK against aam: a Responses model and a chat-completions model, a function
// tool, streaming and not; each runs its tool loop to the final answer (tracing export off).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { z } from 'zod';
import { Agent, run, tool, setTracingDisabled, OpenAIResponsesModel, OpenAIChatCompletionsModel, type Model } from '@openai/agents';
import { startFrameworkRig, weatherOf, FINAL, type FrameworkRig } from './helpers/frameworks.ts';
import { REASONING_ITEM, THINKING, THINKING2 } from './fake-upstream.ts';

let rig: FrameworkRig;
before(async () => {
  setTracingDisabled(true); // no export to OpenAI's trace endpoint from a test
  rig = await startFrameworkRig();
});
after(async () => { await rig?.close(); });

function agentWith(model: Model, calls: string[], modelSettings?: ConstructorParameters<typeof Agent>[0]['modelSettings']): Agent {
  const getWeather = tool({
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: z.object({ location: z.string() }),
    execute: async ({ location }) => { calls.push(location); return weatherOf(location); },
  });
  return new Agent({ name: 'weather', instructions: 'Use the tool.', tools: [getWeather], model, ...(modelSettings ? { modelSettings } : {}) });
}

// The Agents SDK pins its own openai release; the client object is the same at run time.
type AgentsClient = ConstructorParameters<typeof OpenAIResponsesModel>[0];
const client = () => new OpenAI({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1`, maxRetries: 0 }) as unknown as AgentsClient;

for (const [label, make] of [
  ['Responses model', (m: string) => new OpenAIResponsesModel(client(), m)],
  ['chat-completions model', (m: string) => new OpenAIChatCompletionsModel(client(), m)],
] as Array<[string, (m: string) => Model]>) {
  for (const route of ['loop-oai', 'loop-ant', 'loop-native']) {
    test(`Agents SDK, ${label} on ${route}: tool loop to the final answer, not streamed`, async () => {
      const calls: string[] = [];
      const result = await run(agentWith(make(route), calls), 'What is the weather in Paris?');
      assert.deepEqual(calls, ['Paris']);
      assert.equal(result.finalOutput, FINAL);
    });

    test(`Agents SDK, ${label} on ${route}: tool loop to the final answer, streamed`, async () => {
      const calls: string[] = [];
      const stream = await run(agentWith(make(route), calls), 'What is the weather in Paris?', { stream: true });
      let deltas = '';
      for await (const ev of stream) {
        if (ev.type === 'raw_model_stream_event' && ev.data.type === 'output_text_delta') deltas += ev.data.delta;
      }
      await stream.completed;
      assert.deepEqual(calls, ['Paris']);
      assert.equal(stream.finalOutput, FINAL);
      assert.ok(deltas.endsWith(FINAL), `text arrived as deltas: ${deltas}`);
    });
  }
}

/** A stateless run (store: false, include reasoning.encrypted_content) on `route`, streamed or not: its final output, new items and tool calls. */
async function statelessRun(route: string, stream: boolean): Promise<{ finalOutput: unknown; items: Array<{ type: string; rawItem?: unknown }>; calls: string[] }> {
  const calls: string[] = [];
  const agent = agentWith(new OpenAIResponsesModel(client(), route), calls, { store: false, providerData: { include: ['reasoning.encrypted_content'] } });
  rig.fake.reset();
  if (!stream) {
    const r = await run(agent, 'What is the weather in Paris?');
    return { finalOutput: r.finalOutput, items: r.newItems, calls };
  }
  const s = await run(agent, 'What is the weather in Paris?', { stream: true });
  for await (const _ of s) { /* drain */ }
  await s.completed;
  return { finalOutput: s.finalOutput, items: s.newItems, calls };
}

test('Agents SDK, Responses model, stateless (store: false, include reasoning.encrypted_content): OpenAI\'s reasoning items come back to the SDK and go to OpenAI again with the tool result', async () => {
  for (const stream of [false, true]) {
    const { finalOutput, calls } = await statelessRun('loop-native', stream);
    assert.equal(finalOutput, FINAL, `stream ${stream}`);
    assert.deepEqual(calls, ['Paris']);
    const ups = rig.fake.requests.map((r) => r.body as { include?: string[]; store?: boolean; input: Array<{ type?: string; encrypted_content?: string }> });
    assert.equal(ups.length, 2, JSON.stringify(ups[0]));
    assert.deepEqual(ups[0].include, ['reasoning.encrypted_content']);
    assert.equal(ups[0].store, false);
    // The second turn carries the first answer's reasoning item (before its call) as OpenAI made it.
    const second = ups[1].input;
    assert.deepEqual(second.map((i) => i.type ?? 'message'), ['message', 'message', 'reasoning', 'function_call', 'function_call_output'], `stream ${stream}`);
    assert.equal(second[2].encrypted_content, REASONING_ITEM.encrypted_content);
  }
});

test('Agents SDK, Responses model, stateless (store: false, include reasoning.encrypted_content) on Claude with extended thinking: its thinking and redacted_thinking blocks reach the SDK as reasoning items and go back to Anthropic as the same blocks, signature unchanged, with the tool result', async () => {
  for (const stream of [false, true]) {
    const { finalOutput, items, calls } = await statelessRun('think-ant', stream);
    // The turn after the tool call reached Anthropic with both blocks as answered (else the fake, as Anthropic, answers 400).
    assert.equal(finalOutput, FINAL, `stream ${stream}`);
    assert.deepEqual(calls, ['Paris']);
    const reasoning = items.filter((i) => i.type === 'reasoning_item').map((i) => i.rawItem as { content?: Array<{ text: string }> });
    assert.equal(reasoning.length, 2, `two reasoning items (thinking, redacted_thinking): ${JSON.stringify(items.map((i) => i.type))}`);
    assert.equal(reasoning[0].content?.[0]?.text, THINKING.thinking.thinking, 'the thinking text is the summary the SDK shows');
    const second = rig.fake.requests[1].body as { messages: Array<{ role: string; content: Array<Record<string, unknown>> }> };
    const asst = second.messages.find((m) => m.role === 'assistant')!;
    assert.deepEqual(asst.content.slice(0, 2), [THINKING.thinking, THINKING.redacted], `stream ${stream}`);
  }
});

test('Agents SDK, Responses model, stateless, on Claude with interleaved thinking (thinking, text, call, thinking, text, call): the items reach the SDK in the model\'s order and go back to Anthropic in it (the fake answers 400 otherwise)', async () => {
  for (const stream of [false, true]) {
    const calls: string[] = [];
    const getTime = tool({ name: 'get_time', description: 'Local time in a time zone', parameters: z.object({ tz: z.string() }), execute: async ({ tz }) => { calls.push(tz); return `noon in ${tz}`; } });
    const base = agentWith(new OpenAIResponsesModel(client(), 'think-interleaved'), calls, { store: false, providerData: { include: ['reasoning.encrypted_content'] } });
    const agent = base.clone({ tools: [...base.tools, getTime] });
    rig.fake.reset();
    let finalOutput: unknown;
    let items: Array<{ type: string; rawItem?: unknown }>;
    if (stream) {
      const s = await run(agent, 'Weather and time in Paris?', { stream: true });
      for await (const _ of s) { /* drain */ }
      await s.completed;
      finalOutput = s.finalOutput;
      items = s.newItems;
    } else {
      const r = await run(agent, 'Weather and time in Paris?');
      finalOutput = r.finalOutput;
      items = r.newItems;
    }
    // The fake, as Anthropic, answered the turn with the results (its blocks in order, else a 400 the run throws).
    assert.match(String(finalOutput), /^final: the tool said /, `stream ${stream}`);
    assert.deepEqual(calls, ['Paris', 'Europe/Paris']);
    const first = items.slice(0, 6).map((i) => i.type);
    assert.deepEqual(first, ['reasoning_item', 'message_output_item', 'tool_call_item', 'reasoning_item', 'message_output_item', 'tool_call_item'], `stream ${stream}: ${JSON.stringify(items.map((i) => i.type))}`);
    const thoughts = items.filter((i) => i.type === 'reasoning_item').map((i) => (i.rawItem as { content?: Array<{ text: string }> }).content?.[0]?.text);
    assert.deepEqual(thoughts, [THINKING.thinking.thinking, THINKING2.thinking]);
    assert.equal(rig.fake.requests.length, 2, `stream ${stream}: one turn with the two calls, one with their results`);
  }
});

test('Agents SDK, Responses model: a run chained with previousResponseId continues the conversation aam stored', async () => {
  const calls: string[] = [];
  const agent = agentWith(new OpenAIResponsesModel(client(), 'loop-oai'), calls);
  const first = await run(agent, 'What is the weather in Paris?');
  assert.match(first.lastResponseId ?? '', /^resp_/);
  rig.fake.reset();
  const second = await run(agent, 'And once more?', { previousResponseId: first.lastResponseId });
  assert.equal(second.finalOutput, FINAL);
  assert.deepEqual(calls, ['Paris', 'Paris']);
  // The upstream got the first run's whole conversation, resolved by aam, before the new question.
  const msgs = (rig.fake.requests[0].body as { messages: Array<{ role: string; content: unknown }> }).messages;
  assert.deepEqual(msgs.map((m) => m.role), ['system', 'user', 'assistant', 'tool', 'assistant', 'user']);
  assert.equal(msgs[4].content, FINAL);
  assert.equal(msgs[5].content, 'And once more?');
});
