// Secret detectors: vendor key formats (fixed prefixes make them precise), PEM private keys,
// JWTs (header must decode to JSON), values assigned to secret-named keys, and generic
// high-entropy tokens. Every finding is category `secret` with a `kind` for audit.
// Linear time (see scan.ts): each regex below starts with a literal or a lookbehind that admits
// one start per run; PEM bodies and URL passwords are found by hand-written scanners.
import { shannonEntropy } from './checksums.ts';
import { jsonObjectKeys } from './json-check.ts';
import { before, finding, isAlnum, isLetter, isSpace, isWord, scan } from './scan.ts';
import type { Finding } from './types.ts';

/** Prefix formats: [kind, regex]. Boundaries keep them from firing inside longer identifiers. */
const PREFIXED: ReadonlyArray<readonly [string, RegExp]> = [
  ['aws_access_key', /(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z2-7]{16}(?![A-Za-z0-9])/g],
  ['github_token', /(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])/g],
  ['github_pat', /(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{40,255}(?![A-Za-z0-9_])/g],
  ['slack_token', /(?<![A-Za-z0-9-])xox[abposr]-(?:\d+-)+[A-Za-z0-9-]{8,}(?![A-Za-z0-9-])/g],
  ['anthropic_key', /(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])/g],
  ['google_api_key', /(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/g],
  ['stripe_key', /(?<![A-Za-z0-9_])(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{24,}(?![A-Za-z0-9_])/g],
  ['stripe_webhook_secret', /(?<![A-Za-z0-9_])whsec_[A-Za-z0-9+/]{32,}(?![A-Za-z0-9_])/g],
  ['gitlab_token', /(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])/g],
  ['npm_token', /(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])/g],
  ['huggingface_token', /(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{34,}(?![A-Za-z0-9_])/g],
  ['sendgrid_key', /(?<![A-Za-z0-9_-])SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g],
  ['pypi_token', /(?<![A-Za-z0-9_-])pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}(?![A-Za-z0-9_-])/g],
  ['digitalocean_token', /(?<![A-Za-z0-9_])do[opr]_v1_[a-f0-9]{64}(?![A-Za-z0-9_])/g],
  ['shopify_token', /(?<![A-Za-z0-9_])shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?![A-Za-z0-9_])/g],
];
/** OpenAI: sk-, sk-proj-, sk-svcacct-, sk-admin-; needs digits and capitals so "sk-learn-..." prose does not match. */
const OPENAI_RE = /(?<![A-Za-z0-9_-])sk-(?!ant-)(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])/g;
/** PEM armour: the words before PRIVATE KEY end at the first '-', so parses of two markers never overlap. */
const PEM_BEGIN_RE = /-----BEGIN ((?:[A-Z0-9]+ ){0,3})PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_END_RE = /-----END ((?:[A-Z0-9]+ ){0,3})PRIVATE KEY(?: BLOCK)?-----/g;
/** How far after BEGIN its END may be; without one, the key runs to the end of the base64 body. */
const PEM_MAX_BODY = 16384;
const PEM_BODY = /[A-Za-z0-9+/=\s:,-]*/y;
const JWT_RE = /(?<![A-Za-z0-9_-])(eyJ[A-Za-z0-9_-]{8,})\.([A-Za-z0-9_-]{8,})\.([A-Za-z0-9_-]*)(?![A-Za-z0-9_-])/g;
/**
 * Secret-named key then a value: `api_key=...`, `"password": "..."`, `client_secret: ...`.
 * The match starts at the secret word: words before it (`client_`, `db.`) never change which value
 * is found, and matching them made every word boundary of "a.a.a..." a costly start. Each word
 * after it is bounded and must start with a separator, so its split is unique.
 */
const ASSIGN_RE = /(?<![A-Za-z0-9])(?:secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|passw(?:or)?d|pwd|credentials?|auth)(?:[_-][A-Za-z0-9]{1,32}){0,4}["']?\s*(?:[:=]|=>)\s*["']?([^\s"'`,;<>{}()[\]]{8,})/gi;
const BEARER_RE = /\bBearer\s+([A-Za-z0-9._~+/-]{16,}=*)/g;
const AWS_SECRET_CONTEXT = /aws.{0,20}secret|secret.?access.?key/i;
const PLACEHOLDER = /^(?:x{3,}|\*{3,}|\.{3,}|\$|%|<|\{\{|your|example|changeme|redacted|placeholder|dummy|none|null|undefined|true|false|process\.env|os\.environ|env\.|getenv|\[)/i;
const HEX_RE = /^[0-9a-fA-F]+$/;
const ID_PREFIX = /^[a-z]{2,12}[_-](?:[a-z]{2,8}[_-])?[A-Za-z0-9]/;
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function classes(s: string): { lower: number; upper: number; digit: number } {
  let lower = 0, upper = 0, digit = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 97 && c <= 122) lower++;
    else if (c >= 65 && c <= 90) upper++;
    else if (c >= 48 && c <= 57) digit++;
  }
  return { lower, upper, digit };
}

/** Entropy a random token of this length over a ~62-symbol alphabet would clearly exceed; tuned on the corpus. */
function entropyThreshold(len: number): number {
  return Math.min(4.2, Math.log2(len) * 0.82);
}

function jwtHeaderOk(seg: string): boolean {
  const keys = jsonObjectKeys(Buffer.from(seg, 'base64url').toString('utf8'));
  return keys !== null && (keys.includes('alg') || keys.includes('typ'));
}

/** Scheme character in a URL (`[a-z0-9+.-]`, case-insensitive). */
function isSchemeChar(c: number): boolean {
  return isLetter(c) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46;
}

/** True when some word-boundary start before `at` (the ':' of '://') begins a scheme `[a-z][a-z0-9+.-]*`. */
function hasScheme(text: string, at: number): boolean {
  for (let s = at - 1; s >= 0 && isSchemeChar(text.charCodeAt(s)); s--) {
    if (isLetter(text.charCodeAt(s)) && !isWord(text.charCodeAt(s - 1))) return true;
  }
  return false;
}

/**
 * Passwords in URL userinfo, `scheme://user:password@host`: the password is the run after the
 * first ':' up to '@' (no whitespace or '/'). Scanned from each '://', so a long run of dots or
 * scheme characters is read once instead of once per possible scheme start.
 */
function detectUrlPasswords(text: string, out: Finding[]): void {
  for (let at = text.indexOf('://'); at >= 0; at = text.indexOf('://', at + 3)) {
    let i = at + 3;
    while (i < text.length && !isSpace(text.charCodeAt(i)) && !':@/'.includes(text[i])) i++;
    if (i === at + 3 || text[i] !== ':' || !hasScheme(text, at)) continue;
    const start = ++i;
    while (i < text.length && !isSpace(text.charCodeAt(i)) && text[i] !== '@' && text[i] !== '/') i++;
    if (text[i] !== '@' || i - start < 3 || PLACEHOLDER.test(text.slice(start, i))) continue;
    out.push(finding('secret', start, i, 'url_password'));
  }
}

/**
 * PEM private keys: BEGIN, then the first END with the same words within PEM_MAX_BODY characters,
 * else the base64 body that follows. END markers are indexed once per text, so a text full of
 * BEGIN lines costs one lookup each instead of a 16 KB search each.
 */
function detectPem(text: string, out: Finding[]): void {
  const ends = new Map<string, Array<{ at: number; end: number }>>();
  if (text.includes('-----END')) {
    PEM_END_RE.lastIndex = 0;
    for (let m = PEM_END_RE.exec(text); m !== null; m = PEM_END_RE.exec(text)) {
      let list = ends.get(m[1]);
      if (list === undefined) ends.set(m[1], list = []);
      list.push({ at: m.index, end: m.index + m[0].length });
      PEM_END_RE.lastIndex = m.index + 1; // END markers may share dashes ("-----END X-----END X-----")
    }
  }
  const cursor = new Map<string, number>();
  PEM_BEGIN_RE.lastIndex = 0;
  for (let m = PEM_BEGIN_RE.exec(text); m !== null; m = PEM_BEGIN_RE.exec(text)) {
    const body = m.index + m[0].length;
    const list = ends.get(m[1]) ?? [];
    let k = cursor.get(m[1]) ?? 0;
    while (k < list.length && list[k].at < body) k++;
    cursor.set(m[1], k);
    let end: number;
    if (k < list.length && list[k].at - body <= PEM_MAX_BODY) {
      end = list[k].end;
    } else {
      PEM_BODY.lastIndex = body;
      PEM_BODY.test(text);
      end = PEM_BODY.lastIndex;
    }
    out.push(finding('secret', m.index, end, 'private_key'));
    PEM_BEGIN_RE.lastIndex = end;
  }
}

/** `[A-Za-z0-9+/_-]`: the token alphabet ('=' is padding only, so `token=abc...` splits into key and value). */
function isTokenChar(c: number): boolean {
  return isAlnum(c) || c === 43 || c === 47 || c === 95 || c === 45;
}

/** Tokens are at least this long, so probing every TOKEN_MIN-th character finds every one. */
const TOKEN_MIN = 20;

/**
 * Candidate tokens: maximal runs of 20+ token characters plus up to two '=' of padding, not next to
 * '=' or another token character. Only runs that contain a probe (every 20th character) can be
 * long enough, so most of a text is never looked at; each run is read once.
 */
function forEachToken(text: string, fn: (start: number, end: number) => void): void {
  let next = 0;
  for (let p = TOKEN_MIN - 1; p < text.length; p += TOKEN_MIN) {
    if (p < next || !isTokenChar(text.charCodeAt(p))) continue;
    let start = p;
    while (isTokenChar(text.charCodeAt(start - 1))) start--;
    let i = p + 1;
    while (isTokenChar(text.charCodeAt(i))) i++;
    const runEnd = i;
    while (text.charCodeAt(i) === 61) i++;
    next = i;
    const padded = i - runEnd;
    if (runEnd - start >= TOKEN_MIN && padded <= 2 && text.charCodeAt(start - 1) !== 61 && (padded === 0 || !isTokenChar(text.charCodeAt(i)))) fn(start, i);
  }
}

/** High-entropy token not already explained by a known non-secret shape. */
export function looksRandom(tok: string): boolean {
  if (tok.length < 20 || HEX_RE.test(tok) || UUID_RE.test(tok) || tok.includes('//')) return false;
  // Typed object ids (msg_01..., chatcmpl-..., cus_..., file-...) are references an agent needs, not
  // credentials; vendor secrets with such prefixes are matched by the explicit formats above.
  if (ID_PREFIX.test(tok)) return false;
  const c = classes(tok);
  if (c.lower < 2 || c.upper < 2 || c.digit < 2) return false;
  return shannonEntropy(tok) >= entropyThreshold(tok.length);
}

export function detectSecrets(text: string, out: Finding[]): void {
  for (const [kind, re] of PREFIXED) scan(re, text, out, (m) => finding('secret', m.index, m.index + m[0].length, kind));
  if (text.includes('sk-')) {
    scan(OPENAI_RE, text, out, (m) => {
      const c = classes(m[0]);
      return c.digit > 0 && c.upper > 0 ? finding('secret', m.index, m.index + m[0].length, 'openai_key') : null;
    });
  }
  if (text.includes('-----BEGIN')) detectPem(text, out);
  if (text.includes('eyJ')) {
    scan(JWT_RE, text, out, (m) => jwtHeaderOk(m[1]) ? finding('secret', m.index, m.index + m[0].length, 'jwt') : null);
  }
  scan(ASSIGN_RE, text, out, (m) => {
    const v = m[1];
    if (PLACEHOLDER.test(v)) return null;
    const c = classes(v);
    // A value with only letters is usually prose ("password: incorrect"), unless it is long.
    if (c.digit === 0 && v.length < 20 && /^[A-Za-z]+$/.test(v)) return null;
    const start = m.index + m[0].length - v.length;
    return finding('secret', start, start + v.length, 'assigned_secret');
  });
  detectUrlPasswords(text, out);
  if (text.includes('Bearer')) {
    scan(BEARER_RE, text, out, (m) => {
      const start = m.index + m[0].length - m[1].length;
      return finding('secret', start, start + m[1].length, 'bearer_token');
    });
  }
  forEachToken(text, (start, end) => {
    // Inline data (data:...;base64,) is content, not a credential.
    if (text.startsWith('base64,', start - 7)) return;
    const tok = text.slice(start, end);
    if (looksRandom(tok)) out.push(finding('secret', start, end, 'high_entropy'));
    // 40-char base64 after an AWS secret label is the secret access key.
    else if (tok.length === 40 && AWS_SECRET_CONTEXT.test(before(text, start, 40))) out.push(finding('secret', start, start + 40, 'aws_secret_key'));
  });
}
