// The Vercel AI SDK against aam: generateText and streamText with a tool, through the OpenAI
// provider (Responses API and chat completions), the OpenAI-compatible provider and the
// Anthropic provider (aam's /v1/messages); each runs its tool loop to the final answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { generateText, streamText, tool, stepCountIs, type LanguageModel } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { createAnthropic } from '@ai-sdk/anthropic';
import { startFrameworkRig, weatherOf, FINAL, type FrameworkRig } from './helpers/frameworks.ts';

// The Anthropic provider warns that it does not know aam's route names (a client-side notice).
(globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;

let rig: FrameworkRig;
before(async () => { rig = await startFrameworkRig(); });
after(async () => { await rig?.close(); });

const tools = (calls: string[]) => ({
  get_weather: tool({
    description: 'Current weather for a city',
    inputSchema: z.object({ location: z.string() }),
    execute: async ({ location }: { location: string }) => { calls.push(location); return weatherOf(location); },
  }),
});

const MODELS: Array<[string, () => LanguageModel]> = [
  ['@ai-sdk/openai responses (chat-completions upstream)', () => createOpenAI({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1` }).responses('loop-oai')],
  // Its text parts come back as item_reference inputs (store defaults to true): aam resolves them.
  ['@ai-sdk/openai responses (Anthropic upstream)', () => createOpenAI({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1` }).responses('loop-ant')],
  ['@ai-sdk/openai responses (OpenAI provider: its own Responses API)', () => createOpenAI({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1` }).responses('loop-native')],
  ['@ai-sdk/openai chat', () => createOpenAI({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1` }).chat('loop-oai')],
  ['@ai-sdk/openai-compatible', () => createOpenAICompatible({ name: 'aam', apiKey: rig.key, baseURL: `${rig.gw.url}/v1` }).chatModel('loop-gem')],
  ['@ai-sdk/anthropic (/v1/messages)', () => createAnthropic({ apiKey: rig.key, baseURL: `${rig.gw.url}/v1` })('loop-oai')],
];

/** The tool's result as the upstream will quote it (JSON-encoded by some providers). */
const finalOf = (text: string): string => text.replace(/\\?"/g, '');

for (const [label, model] of MODELS) {
  test(`AI SDK generateText, ${label}: tool loop to the final answer`, async () => {
    const calls: string[] = [];
    const r = await generateText({ model: model(), tools: tools(calls), stopWhen: stepCountIs(5), prompt: 'What is the weather in Paris?', maxRetries: 0 });
    assert.deepEqual(calls, ['Paris']);
    assert.equal(finalOf(r.text), FINAL);
    assert.equal(r.steps.length, 2);
  });

  test(`AI SDK streamText, ${label}: tool loop to the final answer`, async () => {
    const calls: string[] = [];
    const r = streamText({ model: model(), tools: tools(calls), stopWhen: stepCountIs(5), prompt: 'What is the weather in Paris?', maxRetries: 0 });
    let streamed = '';
    for await (const t of r.textStream) streamed += t;
    assert.deepEqual(calls, ['Paris']);
    assert.equal(finalOf(await r.text), FINAL);
    assert.ok(finalOf(streamed).endsWith(FINAL), streamed);
  });
}
