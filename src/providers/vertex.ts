// Google Vertex AI, Gemini models: the same generateContent wire as the Gemini API (gemini.ts
// does the translation), served under a project/region path and authorised with an OAuth access
// token (service account; the credentials module fetches it). Only the addressing differs here.
import type { EmbeddingsResult, ProviderAdapter } from './types.ts';
import { embedTexts, geminiAdapter, modelPath } from './gemini.ts';
import { UpstreamShapeError, arr, num, obj, usageOf, type Obj } from './util.ts';
import { isObj } from '../lib/json.ts';

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
  // Embeddings on Vertex are the prediction API (`:predict` with one instance per text), not
  // Gemini's batchEmbedContents; token counts come per text in `statistics`.
  embeddingsRequest: (req, target) => {
    const body: Obj = { instances: embedTexts(req.input).map((content) => ({ content })) };
    if (req.dimensions !== undefined) body.parameters = { outputDimensionality: req.dimensions };
    return { method: 'POST', path: `${modelPath(target.model)}:predict`, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  },
  embeddingsResponse: (body: unknown): EmbeddingsResult => {
    const list = isObj(body) ? arr(body.predictions) : undefined;
    if (list === undefined) throw new UpstreamShapeError('upstream :predict response has no predictions array');
    let tokens = 0;
    const data = list.map((p, index) => {
      const e = obj(obj(p)?.embeddings);
      const values = arr(e?.values);
      if (values === undefined) throw new UpstreamShapeError(`upstream :predict prediction ${index} has no embeddings.values`);
      tokens += num(obj(e?.statistics)?.token_count) ?? 0;
      return { index, embedding: values as number[] };
    });
    return { model: '', data, usage: usageOf(tokens, 0, undefined) };
  },
};
