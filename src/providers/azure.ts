// Azure OpenAI: the OpenAI wire at a deployment path with an api-version query.
import type { ProviderAdapter, TargetInfo } from './types.ts';
import { openaiAdapter, openaiChatBody, openaiEmbeddingsBody, openaiRawRequest, jsonRequest } from './openai.ts';

/** GA version that supports stream_options.include_usage. */
export const AZURE_DEFAULT_API_VERSION = '2024-10-21';

function deploymentPath(target: TargetInfo, op: string): string {
  const deployment = target.options.deployment ?? target.model;
  const version = target.options.apiVersion ?? AZURE_DEFAULT_API_VERSION;
  return `/openai/deployments/${encodeURIComponent(deployment)}/${op}?api-version=${encodeURIComponent(version)}`;
}

export const azureAdapter: ProviderAdapter = {
  ...openaiAdapter,
  chatRequest: (req, target) => jsonRequest(deploymentPath(target, 'chat/completions'), openaiChatBody(req, target)),
  rawChatRequest: openaiRawRequest((target) => deploymentPath(target, 'chat/completions')),
  embeddingsRequest: (req, target) => jsonRequest(deploymentPath(target, 'embeddings'), openaiEmbeddingsBody(req, target)),
};
