// Deterministic local embedder for tests, benchmarks and offline demos (never for production
// semantic caching: it knows word overlap, not meaning). Text is normalised (case, diacritics,
// contractions, possessives), stop words are dropped, words are stemmed crudely and mapped
// through a tiny synonym table; each remaining word contributes its own feature (weight 1) and
// its character trigrams (weight 0.25 each, so inflections and typos still overlap), hashed with
// a sign bit into `dim` buckets and L2-normalised.
//
// Calibration (asserted in test/cache-semantic.test.ts): paraphrases such as "What is the capital
// of France?" / "what's France's capital city" score >= 0.85; same-template questions about a
// different entity ("... capital of Germany?") score ~0.6; unrelated questions score < 0.3 at
// dim 256 (mean 0.05; the rest is hash collisions). So threshold 0.8 separates them with margin on
// both sides. Known blind spot (bag of words): "capital of France and Spain" also scores 0.85. Real embedding models compress the
// range (unrelated questions often score 0.3-0.6, same-template ones 0.85-0.9), which is why the
// production default threshold is higher (DEFAULT_SEMANTIC_THRESHOLD in semantic.ts).
import type { Embed } from './semantic.ts';

const STOP = new Set(('a an the of is are was were be been what which who whom whose how do does did i me my we our you your ' +
  'tell please in on at to for and or can could would will should it its this that there here about with by from as ' +
  'some any just really exactly name give show know like much many').split(' '));

const SYNONYMS: Record<string, string> = {
  automobile: 'car', vehicle: 'car', purchase: 'buy', price: 'cost', film: 'movie', large: 'big', huge: 'big',
  begin: 'start', commence: 'start', reside: 'live', capitol: 'capital', metropolis: 'city', nation: 'country',
};

const CONTRACTIONS: Array<[RegExp, string]> = [
  [/\b(what|who|where|how|that|it|there|here|when)'s\b/g, '$1 is'],
  [/n't\b/g, ' not'], [/'re\b/g, ' are'], [/'ll\b/g, ' will'], [/'ve\b/g, ' have'], [/'d\b/g, ' would'], [/'m\b/g, ' am'],
  [/'s\b/g, ''], // possessive: "France's" -> "France"
];

export function tokens(text: string): string[] {
  let s = text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/[\u2018\u2019`]/g, "'");
  for (const [re, to] of CONTRACTIONS) s = s.replace(re, to);
  const out: string[] = [];
  for (const w of s.split(/[^a-z0-9]+/)) {
    if (!w || STOP.has(w)) continue;
    const st = stem(w);
    out.push(SYNONYMS[st] ?? st);
  }
  // "capital city" says no more than "capital".
  return out.filter((w, i) => !(w === 'city' && out[i - 1] === 'capital'));
}

function stem(w: string): string {
  if (w.length > 5 && w.endsWith('ing')) return w.slice(0, -3);
  if (w.length > 4 && w.endsWith('ies')) return w.slice(0, -3) + 'y';
  if (w.length > 4 && w.endsWith('ed')) return w.slice(0, -2);
  if (w.length > 3 && w.endsWith('s') && !w.endsWith('ss')) return w.slice(0, -1);
  return w;
}

/** FNV-1a, 32 bit. */
function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

function add(v: Float32Array, feature: string, weight: number): void {
  const h = hash(feature);
  v[h % v.length] += h & 0x80000000 ? -weight : weight;
}

export function embedSync(text: string, dim = 256): Float32Array {
  const v = new Float32Array(dim);
  for (const w of tokens(text)) {
    add(v, `w:${w}`, 1);
    const padded = `#${w}#`;
    for (let i = 0; i + 3 <= padded.length; i++) add(v, `t:${padded.slice(i, i + 3)}`, 0.25);
  }
  let n = 0;
  for (let i = 0; i < dim; i++) n += v[i] * v[i];
  n = Math.sqrt(n) || 1;
  for (let i = 0; i < dim; i++) v[i] /= n;
  return v;
}

/** The embed function to inject into SemanticCache in tests. */
export function testEmbedder(dim = 256): Embed {
  return async (text) => embedSync(text, dim);
}
