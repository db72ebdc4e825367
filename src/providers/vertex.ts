// Google Vertex AI, Gemini models: the same generateContent wire as the Gemini API (gemini.ts
// does the translation), served under a project/region path and authorised with an OAuth access
// token (service account; the credentials module fetches it). Only the addressing differs here.
import type { ProviderAdapter } from './types.ts';
import { geminiAdapter } from './gemini.ts';

/** Default endpoint root of a region ("global" has no regional host). */
export function vertexEndpoint(region: string): string {
  return region === 'global' ? 'https://aiplatform.googleapis.com' : `https://${region}-aiplatform.googleapis.com`;
}

/**
 * Path under the endpoint root that Gemini's `/models/{model}:generateContent` is appended to:
 * Google's publisher models of one project and region.
 */
export function vertexBasePath(project: string, region: string): string {
  return `/v1/projects/${encodeURIComponent(project)}/locations/${encodeURIComponent(region)}/publishers/google`;
}

export const vertexAdapter: ProviderAdapter = {
  wire: geminiAdapter.wire,
  streamFraming: geminiAdapter.streamFraming,
  chatRequest: geminiAdapter.chatRequest,
  chatResponse: geminiAdapter.chatResponse,
  streamParser: geminiAdapter.streamParser,
  errorMessage: geminiAdapter.errorMessage,
  // Embeddings on Vertex use another API (:predict with instances): not offered here yet.
};
