// Request cache-control for the response cache (RFC 9111 request directives, applied to aam's
// own cache): `no-store` = neither read nor write; `no-cache` (or `Pragma: no-cache`, or
// `max-age=0`) = do not answer from cache but store the fresh answer; `max-age=N` = only
// accept an entry younger than N seconds.

export interface CacheDirectives {
  lookup: boolean;
  store: boolean;
  /** Oldest acceptable entry age in seconds, when the client said max-age=N (N > 0). */
  maxAgeSeconds?: number;
}

type HeaderBag = Readonly<Record<string, string | string[] | undefined>>;

const DEFAULT: CacheDirectives = Object.freeze({ lookup: true, store: true });

export function cacheDirectives(headers: HeaderBag): CacheDirectives {
  const cc = joined(headers['cache-control']);
  const pragma = joined(headers.pragma);
  if (!cc && !pragma) return DEFAULT;
  let lookup = true;
  let store = true;
  let maxAgeSeconds: number | undefined;
  for (const raw of cc.split(',')) {
    const [name, value] = raw.trim().toLowerCase().split('=', 2);
    if (name === 'no-store') { lookup = false; store = false; }
    else if (name === 'no-cache') lookup = false;
    else if (name === 'max-age' && value !== undefined) {
      const n = Number(value.replace(/^"|"$/g, ''));
      if (Number.isFinite(n) && n >= 0) { if (n === 0) lookup = false; else maxAgeSeconds = n; }
    }
  }
  // Pragma only counts when Cache-Control is absent (RFC 9111 section 5.4).
  if (!cc && /(^|,)\s*no-cache\s*(,|$)/i.test(pragma)) lookup = false;
  return maxAgeSeconds !== undefined && lookup ? { lookup, store, maxAgeSeconds } : { lookup, store };
}

function joined(v: string | string[] | undefined): string {
  return v === undefined ? '' : Array.isArray(v) ? v.join(',') : v;
}
