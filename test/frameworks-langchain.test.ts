// LangChain JS against aam: ChatOpenAI with a bound tool, streamed and not, over chat completions
// and over the Responses API (useResponsesApi); each runs its tool loop to the final answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { ChatOpenAI } from '@langchain/openai';
import { tool } from '@langchain/core/tools';
import { HumanMessage, ToolMessage, type AIMessage, type BaseMessage } from '@langchain/core/messages';
import { startFrameworkRig, weatherOf, FINAL, type FrameworkRig } from './helpers/frameworks.ts';

let rig: FrameworkRig;
before(async () => { rig = await startFrameworkRig(); });
after(async () => { await rig?.close(); });

const getWeather = tool(async ({ location }: { location: string }) => weatherOf(location), {
  name: 'get_weather',
  description: 'Current weather for a city',
  schema: z.object({ location: z.string() }),
});

/** The agent loop LangChain users write: call the model, run the tools it asks for, repeat. */
async function loop(llm: ChatOpenAI, streaming: boolean): Promise<{ answer: string; calls: number }> {
  const model = llm.bindTools([getWeather]);
  const messages: BaseMessage[] = [new HumanMessage('What is the weather in Paris?')];
  let calls = 0;
  for (let turn = 0; turn < 5; turn++) {
    let ai: AIMessage;
    if (streaming) {
      let acc: Awaited<ReturnType<typeof model.invoke>> | undefined;
      for await (const chunk of await model.stream(messages)) acc = acc === undefined ? chunk : acc.concat(chunk);
      assert.ok(acc, 'the stream yielded chunks');
      ai = acc as AIMessage;
    } else {
      ai = await model.invoke(messages);
    }
    messages.push(ai);
    if (!ai.tool_calls?.length) return { answer: typeof ai.content === 'string' ? ai.content : ai.text, calls };
    for (const tc of ai.tool_calls) {
      calls++;
      const out = await getWeather.invoke(tc.args as { location: string });
      messages.push(new ToolMessage({ content: String(out), tool_call_id: tc.id ?? '' }));
    }
  }
  throw new Error('no final answer after 5 turns');
}

for (const useResponsesApi of [false, true]) {
  for (const route of ['loop-oai', 'loop-ant']) {
    for (const streaming of [false, true]) {
      test(`LangChain ChatOpenAI (${useResponsesApi ? 'Responses API' : 'chat completions'}) on ${route}, ${streaming ? 'streamed' : 'not streamed'}: bound tool, loop to the final answer`, async () => {
        const llm = new ChatOpenAI({ model: route, apiKey: rig.key, configuration: { baseURL: `${rig.gw.url}/v1` }, maxRetries: 0, streaming, useResponsesApi });
        const r = await loop(llm, streaming);
        assert.equal(r.calls, 1);
        assert.equal(r.answer, FINAL);
      });
    }
  }
}
