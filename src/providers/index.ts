// Lookup of translators by provider type / client wire. Providers know nothing of auth:
// credentials are injected into the UpstreamRequest by the credentials module.
import type { ClientCodec, ProviderAdapter } from './types.ts';
import { openaiAdapter, openaiCodec } from './openai.ts';
import { anthropicAdapter, anthropicCodec } from './anthropic.ts';
import { geminiAdapter } from './gemini.ts';
import { azureAdapter } from './azure.ts';
import { bedrockAdapter } from './bedrock.ts';
import { vertexAdapter } from './vertex.ts';

export type AdapterType = 'openai' | 'openai-compatible' | 'anthropic' | 'gemini' | 'azure-openai' | 'bedrock' | 'vertex';

const ADAPTERS: Readonly<Record<AdapterType, ProviderAdapter>> = {
  'openai': openaiAdapter,
  'openai-compatible': openaiAdapter,
  'anthropic': anthropicAdapter,
  'gemini': geminiAdapter,
  'azure-openai': azureAdapter,
  'bedrock': bedrockAdapter,
  'vertex': vertexAdapter,
};

export function adapterFor(type: AdapterType): ProviderAdapter {
  const a = ADAPTERS[type];
  if (a === undefined) throw new Error(`unknown provider type "${String(type)}"; use one of ${Object.keys(ADAPTERS).join(', ')}`);
  return a;
}

export function codecFor(wire: 'openai' | 'anthropic'): ClientCodec {
  return wire === 'anthropic' ? anthropicCodec : openaiCodec;
}

export { SseParser, sseFrame, SSE_KEEPALIVE } from './sse.ts';
export type { SseRecord } from './sse.ts';
export { parseOpenAIChatRequest, parseEmbeddingsRequest } from './openai-parse.ts';
export type { ParseResult } from './openai-parse.ts';
export { parseAnthropicRequest } from './anthropic-parse.ts';
export { anthropicErrorBody } from './anthropic-codec.ts';
export { UpstreamShapeError } from './util.ts';
export { EventStreamFramer } from './bedrock-eventstream.ts';
export { bedrockEndpoint } from './bedrock.ts';
export { vertexEndpoint, vertexBasePath } from './vertex.ts';
