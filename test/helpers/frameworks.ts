// A real gateway in front of the fake upstream, for the agent-framework tests: routes whose
// upstream runs a whole tool loop (first turn: a get_weather call; once the conversation ends
// with its result: "final: the tool said <result>"), on each upstream wire.
import { startFakeUpstream, type FakeUpstream } from '../fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './gateway.ts';

/**
 * More routes: json-* answer {"city":"Paris","temp_c":21} (structured output), handoff-* call the
 * transfer_to_* tool they are offered (an Agents SDK handoff), pause-* stream their first piece of
 * text and then nothing for 5 s (a client aborts meanwhile), think-ant is Claude with extended
 * thinking (thinking-tools: its turn after the tool call must carry both thinking blocks as sent),
 * think-interleaved Claude with interleaved thinking (thinking, text, get_weather, thinking, text,
 * get_time: the turn after the calls must carry its thinking and tool_use blocks in that order).
 */
const EXTRA: ReadonlyArray<[string, string, string]> = [
  ['json-oai', 'oai', 'json'], ['json-ant', 'ant', 'json'], ['json-native', 'openai', 'json'],
  ['handoff-oai', 'oai', 'handoff'], ['handoff-ant', 'ant', 'handoff'], ['pause-oai', 'oai', 'pause-5000'], ['pause-ant', 'ant', 'pause-5000'],
  ['think-ant', 'ant', 'thinking-tools'], ['think-interleaved', 'ant', 'thinking-interleaved'],
];

export interface FrameworkRig { fake: FakeUpstream; gw: TestGateway; key: string; close(): Promise<void> }

/**
 * loop-oai (chat completions), loop-ant (Anthropic), loop-gem (Gemini), loop-native (a type: openai
 * provider, which Responses clients reach on its own Responses API): each a tool-loop upstream.
 */
export async function startFrameworkRig(): Promise<FrameworkRig> {
  const fake = await startFakeUpstream();
  const route = (name: string, provider: string) => doc('Model', name, { targets: [{ provider, model: 'tool-loop' }], retries: { attempts: 1, backoff_ms: 0 } });
  const gw = await startTestGateway(yaml(
    doc('Credential', 'up-key', { env: 'TEST_UPSTREAM_KEY' }),
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    doc('Provider', 'gem', { type: 'gemini', baseUrl: `${fake.url}/v1beta`, credential: 'up-key' }),
    doc('Provider', 'openai', { type: 'openai', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    route('loop-oai', 'oai'), route('loop-ant', 'ant'), route('loop-gem', 'gem'), route('loop-native', 'openai'),
    // A route that exists but fw's policy does not allow (a policy denial as each SDK reports it).
    route('denied-ant', 'ant'),
    ...EXTRA.map(([name, provider, model]) => doc('Model', name, { targets: [{ provider, model }], retries: { attempts: 1, backoff_ms: 0 } })),
    doc('Agent', 'fw', { workload: 'spiffe://test/agent/fw', owner: 'qa@example.com', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'fw-policy', { identity: { workload: 'spiffe://test/agent/fw' }, models: { allow: ['loop-oai', 'loop-ant', 'loop-gem', 'loop-native', ...EXTRA.map(([name]) => name)] } }),
  ), { TEST_UPSTREAM_KEY: 'sk-fw-upstream-secret-0123456789abcdef' });
  return { fake, gw, key: gw.key('fw'), close: async () => { await gw.close(); await fake.close(); } };
}

/** What the weather tool answers, and the final answer the fake upstream makes of it. */
export const weatherOf = (location: string): string => `sunny in ${location}`;
export const FINAL = 'final: the tool said sunny in Paris';

/** What the json-* routes answer. */
export const WEATHER_JSON = { city: 'Paris', temp_c: 21 };
