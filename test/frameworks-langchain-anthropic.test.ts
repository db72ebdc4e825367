// LangChain JS's ChatAnthropic against aam's Anthropic-compatible endpoint (POST /v1/messages):
// invoke, stream, a bound tool's round trip, withStructuredOutput, and a policy denial surfaced
// as the Anthropic SDK's own error, on an Anthropic upstream and on a chat-completions one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { ChatAnthropic } from '@langchain/anthropic';
import { tool } from '@langchain/core/tools';
import { HumanMessage, ToolMessage, type AIMessage, type AIMessageChunk, type BaseMessage } from '@langchain/core/messages';
import { startFrameworkRig, weatherOf, FINAL, WEATHER_JSON, type FrameworkRig } from './helpers/frameworks.ts';

let rig: FrameworkRig;
before(async () => { rig = await startFrameworkRig(); });
after(async () => { await rig?.close(); });

const chat = (model: string, streaming = false) => new ChatAnthropic({ model, apiKey: rig.key, anthropicApiUrl: rig.gw.url, maxRetries: 0, streaming });

const getWeather = tool(async ({ location }: { location: string }) => weatherOf(location), {
  name: 'get_weather',
  description: 'Current weather for a city',
  schema: z.object({ location: z.string() }),
});

for (const route of ['loop-ant', 'loop-oai']) {
  for (const streaming of [false, true]) {
    test(`LangChain ChatAnthropic on ${route}, ${streaming ? 'streamed' : 'invoked'}: bindTools, the tool's result sent back, the final answer`, async () => {
      const model = chat(route, streaming).bindTools([getWeather]);
      const messages: BaseMessage[] = [new HumanMessage('What is the weather in Paris?')];
      let calls = 0;
      for (let turn = 0; turn < 5; turn++) {
        let ai: AIMessage;
        if (streaming) {
          let acc: AIMessageChunk | undefined;
          for await (const chunk of await model.stream(messages)) acc = acc === undefined ? chunk : acc.concat(chunk);
          assert.ok(acc, 'the stream yielded chunks');
          ai = acc;
        } else {
          ai = await model.invoke(messages);
        }
        messages.push(ai);
        if (!ai.tool_calls?.length) {
          assert.equal(calls, 1);
          assert.equal(ai.text, FINAL);
          // LangChain takes input tokens from message_start only; a chat-completions upstream counts them
          // at the stream's end, so aam can only send them in message_delta (README: Frameworks).
          const u = ai.usage_metadata;
          assert.ok((u?.output_tokens ?? 0) > 0 && (streaming && route !== 'loop-ant' ? u?.input_tokens === 0 : (u?.input_tokens ?? 0) > 0), `usage reported: ${JSON.stringify(u)}`);
          return;
        }
        for (const tc of ai.tool_calls) {
          calls++;
          assert.equal(tc.name, 'get_weather');
          assert.deepEqual(tc.args, { location: 'Paris' });
          messages.push(new ToolMessage({ content: String(await getWeather.invoke(tc.args as { location: string })), tool_call_id: tc.id ?? '' }));
        }
      }
      assert.fail('no final answer after 5 turns');
    });
  }
}

test('LangChain ChatAnthropic plain invoke and stream: the text, token by token when streamed', async () => {
  const said = await chat('loop-ant').invoke('hello');
  assert.equal(typeof said.text, 'string');
  let pieces = 0, text = '';
  for await (const c of await chat('json-ant', true).stream('Weather in Paris?')) { pieces++; text += c.text; }
  assert.ok(pieces > 1, `streamed in ${pieces} piece(s)`);
  assert.deepEqual(JSON.parse(text), WEATHER_JSON);
});

for (const route of ['json-ant', 'json-oai']) {
  test(`LangChain ChatAnthropic withStructuredOutput (jsonSchema) on ${route}: the schema reaches the upstream, the answer is parsed`, async () => {
    rig.fake.reset();
    const Weather = z.object({ city: z.string(), temp_c: z.number() });
    const r = await chat(route).withStructuredOutput(Weather, { method: 'jsonSchema' }).invoke('Weather in Paris?');
    assert.deepEqual(r, WEATHER_JSON);
    const b = rig.fake.requests.at(-1)?.body as { output_config?: { format?: { schema?: { properties?: object } } }; response_format?: { json_schema?: { schema?: { properties?: object } } } };
    assert.deepEqual(Object.keys((b.output_config?.format?.schema ?? b.response_format?.json_schema?.schema)?.properties ?? {}), ['city', 'temp_c']);
  });
}

test('LangChain ChatAnthropic on a model its policy does not allow: the Anthropic SDK\'s PermissionDeniedError (403) with aam\'s reason, nothing sent upstream', async () => {
  rig.fake.reset();
  for (const streaming of [false, true]) {
    const e = await chat('denied-ant', streaming).invoke('hello').then(() => undefined, (x: unknown) => x as Error & { status?: number; error?: { type?: string; error?: { type?: string } } });
    assert.ok(e, 'refused');
    assert.equal(e.constructor.name, 'PermissionDeniedError', `${e.constructor.name}: ${e.message}`);
    assert.equal(e.status, 403);
    assert.match(e.message, /denied|not allowed/i);
  }
  assert.equal(rig.fake.requests.length, 0);
});
