// Path templates for HTTP tools (`/accounts/{id}`), compiled at load. Parameter values are checked
// so that no value can reach another endpoint: no separators, no dot segments, no percent-encoded
// tricks (a double-decoding upstream would turn %2e%2e%2f into ../), no control characters.

export interface PathTemplate {
  /** Parameter names in order of appearance. */
  params: string[];
  /** Fill the template; throws PathParamError on a missing or unsafe value. */
  render(values: Record<string, unknown>): string;
}

export class PathParamError extends Error {
  readonly param: string;
  constructor(param: string, message: string) { super(message); this.name = 'PathParamError'; this.param = param; }
}

const PARAM = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const ENCODED = /%[0-9a-f]{2}/i;
const MAX_LEN = 512;

export function compilePathTemplate(template: string): PathTemplate {
  const parts: Array<string | { param: string }> = [];
  const params: string[] = [];
  let last = 0;
  for (const m of template.matchAll(PARAM)) {
    parts.push(template.slice(last, m.index));
    parts.push({ param: m[1] });
    params.push(m[1]);
    last = (m.index ?? 0) + m[0].length;
  }
  parts.push(template.slice(last));
  return {
    params,
    render(values) {
      let out = '';
      for (const p of parts) out += typeof p === 'string' ? p : encodeURIComponent(checkParam(p.param, values[p.param]));
      return out;
    },
  };
}

/** Returns the value as a string, or throws saying what is wrong with it. */
export function checkParam(name: string, v: unknown): string {
  if (v === undefined || v === null || v === '') throw new PathParamError(name, `missing path parameter "${name}"`);
  if (typeof v !== 'string' && !(typeof v === 'number' && Number.isFinite(v))) throw new PathParamError(name, `path parameter "${name}" must be a string or number`);
  const s = String(v);
  const bad = s.length > MAX_LEN ? `is longer than ${MAX_LEN} characters`
    : s.includes('/') || s.includes('\\') ? 'contains a path separator'
    : s === '.' || s.includes('..') ? 'contains a dot segment'
    : ENCODED.test(s) ? 'contains percent-encoding (send the raw value; aam encodes it)'
    : CONTROL.test(s) ? 'contains control characters'
    : undefined;
  if (bad) throw new PathParamError(name, `path parameter "${name}" ${bad}`);
  return s;
}
