// Secret detectors: vendor key formats (fixed prefixes make them precise), PEM private keys,
// JWTs (header must decode to JSON), values assigned to secret-named keys, and generic
// high-entropy tokens. Every finding is category `secret` with a `kind` for audit.
import { shannonEntropy } from './checksums.ts';
import { before, finding, scan } from './scan.ts';
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
const PEM_RE = /-----BEGIN ((?:[A-Z0-9]+ ){0,3})PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]{0,16384}?-----END \1PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:,-]*)/g;
const JWT_RE = /(?<![A-Za-z0-9_-])(eyJ[A-Za-z0-9_-]{8,})\.([A-Za-z0-9_-]{8,})\.([A-Za-z0-9_-]*)(?![A-Za-z0-9_-])/g;
/** Secret-named key then a value: `api_key=...`, `"password": "..."`, `client_secret: ...`. */
// Bounded repetitions keep this linear on long dotted/dashed runs ("a.a.a.a...").
const ASSIGN_RE = /(?<![A-Za-z0-9])(?:[A-Za-z0-9]{1,32}[_.-]){0,4}(?:secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|passw(?:or)?d|pwd|credentials?|auth)(?:[_-][A-Za-z0-9]{1,32}){0,4}["']?\s*(?:[:=]|=>)\s*["']?([^\s"'`,;<>{}()[\]]{8,})/gi;
/** Password in URL userinfo: scheme://user:password@host. */
const URL_PASSWORD_RE = /\b[a-z][a-z0-9+.-]*:\/\/[^\s:@\/]+:([^\s@\/]{3,})@/gi;
const BEARER_RE = /\bBearer\s+([A-Za-z0-9._~+/-]{16,}=*)/g;
const AWS_SECRET_CONTEXT = /aws.{0,20}secret|secret.?access.?key/i;
/** '=' only as trailing padding, so `token=abc...` splits into key and value. */
const TOKEN_RE = /(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/_=-])/g;
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
  try {
    const h: unknown = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
    return typeof h === 'object' && h !== null && ('alg' in h || 'typ' in h);
  } catch {
    return false;
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
  if (text.includes('-----BEGIN')) scan(PEM_RE, text, out, (m) => finding('secret', m.index, m.index + m[0].length, 'private_key'));
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
  if (text.includes('://')) {
    scan(URL_PASSWORD_RE, text, out, (m) => {
      if (PLACEHOLDER.test(m[1])) return null;
      const start = m.index + m[0].length - 1 - m[1].length;
      return finding('secret', start, start + m[1].length, 'url_password');
    });
  }
  if (text.includes('Bearer')) {
    scan(BEARER_RE, text, out, (m) => {
      const start = m.index + m[0].length - m[1].length;
      return finding('secret', start, start + m[1].length, 'bearer_token');
    });
  }
  scan(TOKEN_RE, text, out, (m) => {
    const tok = m[0];
    // Inline data (data:...;base64,) is content, not a credential.
    if (text.startsWith('base64,', m.index - 7)) return null;
    if (looksRandom(tok)) return finding('secret', m.index, m.index + tok.length, 'high_entropy');
    // 40-char base64 after an AWS secret label is the secret access key.
    if (tok.length === 40 && AWS_SECRET_CONTEXT.test(before(text, m.index, 40))) return finding('secret', m.index, m.index + 40, 'aws_secret_key');
    return null;
  });
}
