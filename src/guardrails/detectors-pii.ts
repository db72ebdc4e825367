// PII detectors: email, phone, credit card, US SSN, IBAN, IP address. Written for precision:
// a shape match must also pass a checksum (Luhn, mod-97), a numbering rule (SSN, NANP) or a
// context rule, and numeric look-alikes (order ids, dates, versions, UUIDs) are rejected by
// boundaries and negative context.
import { isIPv6 } from 'node:net';
import { IBAN_LENGTHS, ibanValid, luhnValid } from './checksums.ts';
import { countDigits, finding, inContext, isDigit, isWord, onlyDigits, scan } from './scan.ts';
import type { Finding } from './types.ts';

// ---------- email
// The shape of /(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w-]|\.[A-Za-z0-9])/g,
// matched by hand from each '@' (bench/DETECTORS.md measured the regex at 54 us/KB on dense
// addresses; by hand, matching costs about half of that there and a tenth on ordinary text, and
// what remains on dense input is emitting the findings). Its lookbehind class equals its local-part class, so a match can only start at
// the beginning of the run of local-part characters before an '@' (at most 64 are looked at), and
// its domain never spans an '@', so every character is looked at a bounded number of times.
// test/guardrails-email.test.ts holds it to that regex on random and hostile text.
/** "logo@2x.png" and similar asset names are not addresses. */
const FILE_TLDS = ['png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'js', 'ts', 'css', 'map', 'json', 'txt', 'md'];
/** Up to 4 lower-cased characters packed into one number: a TLD is looked up without a substring. */
function packed(text: string, start: number, end: number): number {
  let k = 0;
  for (let i = start; i < end; i++) k = k * 256 + (text.charCodeAt(i) | 32);
  return k;
}
const FILE_TLD_KEYS = new Set(FILE_TLDS.map((t) => packed(t, 0, t.length)));
const LOCAL_MAX = 64, LABEL_MAX = 63, TLD_MIN = 2, TLD_MAX = 24;

// Character classes of the shape, one table lookup per character (ASCII only, like the regex).
const LETTER = 1, DIGIT = 2, WORD = 4, LOCAL = 8, LABEL = 16;
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122), digit = c >= 48 && c <= 57;
  CLASS[c] = (letter ? LETTER : 0) | (digit ? DIGIT : 0) | (letter || digit || c === 95 ? WORD : 0)
    | (letter || digit || c === 95 || c === 46 || c === 37 || c === 43 || c === 45 ? LOCAL : 0) | (letter || digit || c === 45 ? LABEL : 0);
}
/** The class bits of text[i] (0 outside ASCII and past the end). */
function cls(text: string, i: number): number {
  const c = text.charCodeAt(i);
  return c < 128 ? CLASS[c] : 0;
}
const ALNUM = LETTER | DIGIT;

/** Is text[start, end) one of FILE_TLDS, in any case? */
function isFileTld(text: string, start: number, end: number): boolean {
  return end - start <= 4 && FILE_TLD_KEYS.has(packed(text, start, end));
}

/** End of a TLD starting at i ([A-Za-z]{2,24} and the end boundary), or -1. */
function tldEnd(text: string, i: number): number {
  let e = i;
  while (e - i <= TLD_MAX && (cls(text, e) & LETTER) !== 0) e++;
  if (e - i < TLD_MIN || e - i > TLD_MAX) return -1;
  const c = text.charCodeAt(e);
  if ((cls(text, e) & WORD) !== 0 || c === 45 || (c === 46 && (cls(text, e + 1) & ALNUM) !== 0)) return -1;
  return e;
}

/**
 * The match whose '@' is at `at`: its end, with its start and TLD start in found[0], found[1];
 * or -1. `from`: where the previous match ended.
 */
function emailAt(text: string, at: number, from: number, found: Int32Array): number {
  let s = at;
  while (s > from && at - s <= LOCAL_MAX && (cls(text, s - 1) & LOCAL) !== 0) s--;
  // The run must begin at s (a start inside it fails the lookbehind) with a letter or digit.
  if (s === at || at - s > LOCAL_MAX || (cls(text, s) & ALNUM) === 0 || (s > 0 && (cls(text, s - 1) & LOCAL) !== 0)) return -1;
  // Domain labels, greedily: [A-Za-z0-9] [A-Za-z0-9-]* ending in [A-Za-z0-9], at most 63, then '.'.
  let p = at + 1, last = -1;
  for (;;) {
    if ((cls(text, p) & ALNUM) === 0) break;
    let q = p + 1;
    while (q - p <= LABEL_MAX && (cls(text, q) & LABEL) !== 0) q++;
    if (q - p > LABEL_MAX || text.charCodeAt(q - 1) === 45 || text.charCodeAt(q) !== 46) break;
    last = p;
    p = q + 1;
  }
  if (last < 0) return -1;
  found[0] = s;
  const e = tldEnd(text, p);
  if (e >= 0) { found[1] = p; return e; }
  // Backtracking to one label fewer makes the last label the TLD; only "." plus a non-alphanumeric
  // (or the end) can follow it, and with still fewer labels a label's first character follows.
  if (last === at + 1 || tldEnd(text, last) !== p - 1) return -1;
  found[1] = last;
  return p - 1;
}

/** The next '@' at or after i: a few characters by hand first (a call per '@' dominated dense input), then indexOf. */
function nextAt(text: string, i: number): number {
  const near = Math.min(text.length, i + 16);
  for (; i < near; i++) if (text.charCodeAt(i) === 64) return i;
  return near < text.length ? text.indexOf('@', near) : -1;
}

export function detectEmail(text: string, out: Finding[]): void {
  let at = text.indexOf('@');
  if (at < 0) return;
  const found = new Int32Array(2);
  for (let from = 0; at >= 0; at = nextAt(text, Math.max(at + 1, from))) {
    const end = emailAt(text, at, from, found);
    if (end < 0) continue;
    from = end;
    if (!isFileTld(text, found[1], end)) out.push(finding('email', found[0], end));
  }
}

// ---------- phone
const PHONE_CONTEXT = /(?:phone|tel|telephone|mobile|mob|cell|call|calling|fax|whatsapp|sms|text(?:ed)? me|contact|reach|ring|hotline|dial|number|nummer|telefon|téléphone|tél|móvil|cellulare|handy)\b[^\n;]{0,30}$/iu;
/** Words that make a digit group an identifier rather than a phone number. */
const NOT_PHONE_CONTEXT = /(?:\b(?:order|invoice|inv|ticket|tracking|ref|reference|account|acct|iban|sku|id|serial|case|claim|po|transaction|txn|confirmation|booking|policy|part|batch|lot|build|version|isbn|room|unit|suite|model)|#|no\.)(?:\s*(?:number|num|no\.?|nr\.?|id|#))?[\s:#.-]{0,4}$/i;

/** 00CC international prefix, separators required so long ids do not match. */
const PHONE_00_RE = /(?<![\w.-])00[1-9]\d{0,2}(?:[ .-]\(?\d{1,5}\)?){2,6}(?![\w-]|[.,]\d)/g;
/** NANP: (415) 555-2671, 415-555-2671, 415.555.2671, 1-415-555-2671. */
const PHONE_NANP_RE = /(?<![\w.-])(?:1[ .-]?)?(?:\(([2-9]\d{2})\)[ .-]?|([2-9]\d{2})[ .-])([2-9]\d{2})[ .-](\d{4})(?![\w-]|[.,]\d)/g;
/** National numbers with trunk 0 (UK, DE, FR, AU, IN, ...): need separators plus context or the FR 5-pair shape. */
const PHONE_TRUNK_RE = /(?<![\w.-])\(?0\d{1,4}\)?(?:[ .\/-]\d{2,8}){1,4}(?![\w-]|[.,]\d)/g;
const FR_PAIRS = /^0[1-9](?:[ .]\d{2}){4}$/;
/** Unformatted 10-digit NANP number, only with phone context. */
const PHONE_BARE_RE = /(?<![\w.+-])1?[2-9]\d{2}[2-9]\d{6}(?![\w-]|[.,]\d)/g;

// +CC international (E.164 with optional separators, "(0)" trunk allowed):
//   \+[1-9]\d{0,2}\)?(?:[ .-]?(?:\(0\))?[ .-]?\(?\d{1,5}\)?){1,6}  not followed by [\w-] or [.,]\d.
// As a backtracking regex this tried every split of a digit run into groups (~12 us per character
// on "+" and 40 digits), so it is matched by hand, in the regex's own preference order. A group
// cannot end inside a digit run (the next group or the end would need a non-digit), so a run of L
// digits costs ceil(L/5) groups whichever way it is split, and only the greedy split is tried.
const INTL_GROUPS = 6, INTL_GROUP_DIGITS = 5;
const isSep = (c: number): boolean => c === 32 || c === 46 || c === 45; // [ .-]

/** The `(?![\w-]|[.,]\d)` boundary after a number. */
function numberEndsAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return !isWord(c) && c !== 45 && !((c === 46 || c === 44) && isDigit(text.charCodeAt(i + 1)));
}

/** One number being matched: the text and the memo of `after` results (per position and group count). */
interface Intl { text: string; memo: Map<number, number> }

/** After `count` groups at i: another group first (greedy), else the end boundary. */
function intlAfter(m: Intl, i: number, count: number): number {
  const key = i * 8 + count;
  let r = m.memo.get(key);
  if (r === undefined) {
    r = count < INTL_GROUPS ? intlGroup(m, i, count) : -1;
    if (r < 0 && count > 0 && numberEndsAt(m.text, i)) r = i;
    m.memo.set(key, r);
  }
  return r;
}

/** One group `[ .-]?(?:\(0\))?[ .-]?\(?\d{1,5}\)?`: each optional part taken first, then skipped. */
function intlGroup(m: Intl, i: number, count: number): number {
  const text = m.text;
  for (let a = isSep(text.charCodeAt(i)) ? i + 1 : i; a >= i; a--) {
    for (let b = text.startsWith('(0)', a) ? a + 3 : a; b >= a; b -= 3) {
      for (let c = isSep(text.charCodeAt(b)) ? b + 1 : b; c >= b; c--) {
        for (let d = text.charCodeAt(c) === 40 ? c + 1 : c; d >= c; d--) {
          const r = intlDigits(m, d, count);
          if (r >= 0) return r;
        }
      }
    }
  }
  return -1;
}

/** A digit run at d takes ceil(L/5) groups; then the optional ')'. */
function intlDigits(m: Intl, d: number, count: number): number {
  const text = m.text;
  let n = 0;
  while (n <= INTL_GROUPS * INTL_GROUP_DIGITS && isDigit(text.charCodeAt(d + n))) n++;
  if (n === 0) return -1;
  const used = count + Math.ceil(n / INTL_GROUP_DIGITS);
  if (used > INTL_GROUPS) return -1;
  const e = d + n;
  if (text.charCodeAt(e) === 41) { const r = intlAfter(m, e + 1, used); if (r >= 0) return r; }
  return intlAfter(m, e, used);
}

/** Longest text the pattern can match: '+', 3 country-code digits, ')', 6 groups of at most 12 characters. */
const INTL_MAX_LEN = 5 + INTL_GROUPS * 12;

/**
 * Cheap necessary condition: a group (a digit or ')') followed by the end boundary, within the run
 * of number characters after '+'. Most '+' in hostile text fail here, before any search.
 */
function intlCanEnd(text: string, plus: number): boolean {
  for (let q = plus + 2; q <= plus + INTL_MAX_LEN; q++) {
    const prev = text.charCodeAt(q - 1);
    if ((isDigit(prev) || prev === 41) && numberEndsAt(text, q)) return true;
    const c = text.charCodeAt(q);
    if (!(isDigit(c) || isSep(c) || c === 40 || c === 41)) return false;
  }
  return false;
}

/** End of the international number whose '+' is at `plus`, or -1; the same span the regex above matches. */
export function intlPhoneEnd(text: string, plus: number): number {
  const c0 = text.charCodeAt(plus + 1);
  if (!isDigit(c0) || c0 === 48) return -1;
  // The digits right after '+' fill the country code and at most every group: a longer run never matches.
  let run = 1;
  while (run <= 3 + INTL_GROUPS * INTL_GROUP_DIGITS && isDigit(text.charCodeAt(plus + 1 + run))) run++;
  if (run > 3 + INTL_GROUPS * INTL_GROUP_DIGITS) return -1;
  if (!intlCanEnd(text, plus)) return -1;
  const m: Intl = { text, memo: new Map() };
  // Country code [1-9]\d{0,2}, longest first, then an optional ')'.
  const extra = Math.min(2, run - 1);
  for (let k = extra; k >= 0; k--) {
    const j = plus + 2 + k;
    if (text.charCodeAt(j) === 41) { const r = intlAfter(m, j + 1, 0); if (r >= 0) return r; }
    const r = intlAfter(m, j, 0);
    if (r >= 0) return r;
  }
  return -1;
}

/** Each '+' that starts an international number (not after a word character or another '+'). */
function scanIntl(text: string, out: Finding[]): void {
  for (let p = text.indexOf('+'); p >= 0;) {
    const prev = text.charCodeAt(p - 1);
    const end = isWord(prev) || prev === 43 ? -1 : intlPhoneEnd(text, p);
    if (end < 0) { p = text.indexOf('+', p + 1); continue; }
    // Digits, not counting the 0 of the first "(0)" trunk marker.
    let n = 0, trunk = 0, open = 0, close = 0;
    for (let i = p; i < end; i++) {
      const c = text.charCodeAt(i);
      if (isDigit(c)) n++;
      else if (c === 40) { open++; if (trunk === 0 && text.startsWith('(0)', i) && i + 3 <= end) trunk = 1; }
      else if (c === 41) close++;
    }
    n -= trunk;
    // Without an unmatched closing parenthesis at the end ("(call +44 20 7946 0958)").
    const len = text.charCodeAt(end - 1) === 41 && open < close ? end - p - 1 : end - p;
    if (n >= 8 && n <= 15) out.push(finding('phone', p, p + len));
    p = text.indexOf('+', end);
  }
}

/** Length without an unmatched closing parenthesis at the end ("(call +44 20 7946 0958)"). */
function balanced(s: string): number {
  return s.endsWith(')') && s.split('(').length < s.split(')').length ? s.length - 1 : s.length;
}

export function detectPhone(text: string, out: Finding[]): void {
  if (!/\d{2}/.test(text)) return;
  scanIntl(text, out);
  scan(PHONE_00_RE, text, out, (m) => {
    const n = countDigits(m[0]);
    return n >= 10 && n <= 17 && !inContext(NOT_PHONE_CONTEXT, text, m.index, 20) ? finding('phone', m.index, m.index + balanced(m[0])) : null;
  });
  scan(PHONE_NANP_RE, text, out, (m) =>
    inContext(NOT_PHONE_CONTEXT, text, m.index, 20) ? null : finding('phone', m.index, m.index + balanced(m[0])));
  scan(PHONE_TRUNK_RE, text, out, (m) => {
    const n = countDigits(m[0]);
    if (n < 9 || n > 12) return null;
    if (inContext(NOT_PHONE_CONTEXT, text, m.index, 20)) return null;
    return FR_PAIRS.test(m[0]) || inContext(PHONE_CONTEXT, text, m.index, 40) ? finding('phone', m.index, m.index + m[0].length) : null;
  });
  scan(PHONE_BARE_RE, text, out, (m) => {
    return inContext(PHONE_CONTEXT, text, m.index, 40) && !inContext(NOT_PHONE_CONTEXT, text, m.index, 20) ? finding('phone', m.index, m.index + m[0].length) : null;
  });
}

// ---------- credit card
const CARD_RE = /(?<![\w.-]|\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d|\w|[.,]\d)/g;

/** Known issuer prefixes (IIN ranges) with their valid lengths. */
function knownIssuer(d: string): boolean {
  const len = d.length;
  const p2 = Number(d.slice(0, 2)), p3 = Number(d.slice(0, 3)), p4 = Number(d.slice(0, 4)), p6 = Number(d.slice(0, 6));
  if (d[0] === '4') return len === 13 || len === 16 || len === 19; // Visa
  if (p2 >= 51 && p2 <= 55) return len === 16; // Mastercard
  if (p4 >= 2221 && p4 <= 2720) return len === 16; // Mastercard 2-series
  if (p2 === 34 || p2 === 37) return len === 15; // Amex
  if (p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925)) return len >= 16 && len <= 19; // Discover
  if (p4 >= 3528 && p4 <= 3589) return len >= 16 && len <= 19; // JCB
  if ((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38 || p2 === 39) return len >= 14 && len <= 19; // Diners
  if (p2 === 62) return len >= 16 && len <= 19; // UnionPay
  if (p2 === 50 || (p2 >= 56 && p2 <= 69)) return len >= 12 && len <= 19; // Maestro
  return false;
}

/** Separators, if any, must be one kind and split the number into groups of 3-7 digits. */
function cardGrouping(s: string): boolean {
  const hasSpace = s.includes(' '), hasDash = s.includes('-');
  if (!hasSpace && !hasDash) return true;
  if (hasSpace && hasDash) return false;
  const groups = s.split(hasSpace ? ' ' : '-');
  return groups.length >= 3 && groups.every((g) => g.length >= 3 && g.length <= 7);
}

export function detectCreditCard(text: string, out: Finding[]): void {
  scan(CARD_RE, text, out, (m) => {
    const d = onlyDigits(m[0]);
    return d.length >= 13 && d.length <= 19 && cardGrouping(m[0]) && knownIssuer(d) && luhnValid(d)
      ? finding('credit_card', m.index, m.index + m[0].length) : null;
  });
}

// ---------- US SSN
const SSN_SEP_RE = /(?<![\w.-]|\d[ -])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-]|[.,]\d| \d)/g;
const SSN_BARE_RE = /(?<![\w.-])(\d{3})(\d{2})(\d{4})(?![\w-]|[.,]\d)/g;
const SSN_CONTEXT = /(?:ssn|ss#|social security|soc\.? sec|taxpayer|\btin\b)[^\n,;]{0,20}$/i;

function ssnValid(area: string, group: string, serial: string): boolean {
  return area !== '000' && area !== '666' && area[0] !== '9' && group !== '00' && serial !== '0000';
}

export function detectSsn(text: string, out: Finding[]): void {
  scan(SSN_SEP_RE, text, out, (m) => {
    if (!ssnValid(m[1], m[3], m[4])) return null;
    if (inContext(SSN_CONTEXT, text, m.index, 40)) return finding('ssn', m.index, m.index + m[0].length);
    // Without context: dashes only (space-separated groups are common in other ids), and not after an id label.
    if (m[2] === ' ' || inContext(NOT_PHONE_CONTEXT, text, m.index, 20)) return null;
    return finding('ssn', m.index, m.index + m[0].length);
  });
  scan(SSN_BARE_RE, text, out, (m) =>
    ssnValid(m[1], m[2], m[3]) && inContext(SSN_CONTEXT, text, m.index, 40) ? finding('ssn', m.index, m.index + m[0].length) : null);
}

// ---------- IBAN
const IBAN_RE = /(?<![A-Za-z0-9])([A-Z]{2})(\d{2})((?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)(?![a-z0-9])/g;

export function detectIban(text: string, out: Finding[]): void {
  scan(IBAN_RE, text, out, (m) => {
    const want = IBAN_LENGTHS[m[1]];
    if (want === undefined) return null;
    // Take exactly `want` alphanumerics; the match may have swallowed a following word.
    let n = 0, i = 0;
    const s = m[0];
    for (; i < s.length && n < want; i++) if (s[i] !== ' ') n++;
    if (n !== want || (i < s.length && s[i] !== ' ')) return null;
    return ibanValid(s.slice(0, i).replace(/ /g, '')) ? finding('iban', m.index, m.index + i) : null;
  });
}

// ---------- IP addresses
const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4_RE = new RegExp(`(?<![\\w.-])${OCTET}(?:\\.${OCTET}){3}(?![\\w-]|\\.\\d)`, 'g');
const NOT_IP_CONTEXT = /(?:\bv|version|ver\.?|build|release|rev|firmware|fw|section|chapter|clause|§|figure|fig\.|table|step|oid)\s*[:=]?\s*$/i;
const IPV6_RE = /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,8}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})(?:%[\w]+)?(?![\w:])/g;

export function detectIp(text: string, out: Finding[]): void {
  if (text.includes('.')) {
    scan(IPV4_RE, text, out, (m) => inContext(NOT_IP_CONTEXT, text, m.index, 12) ? null : finding('ip_address', m.index, m.index + m[0].length));
  }
  if (text.includes(':')) {
    scan(IPV6_RE, text, out, (m) => {
      let addr = m[0].replace(/%\w+$/, '');
      let end = m.index + m[0].length;
      // "2001:db8::1:8443" written without brackets: try the address without a trailing port.
      if (!isIPv6(addr)) {
        const cut = addr.lastIndexOf(':');
        if (!/^\d{1,5}$/.test(addr.slice(cut + 1)) || !isIPv6(addr.slice(0, cut))) return null;
        end -= addr.length - cut;
        addr = addr.slice(0, cut);
      }
      // "a::b" or "12::30" in prose/code is more likely scope syntax than an address.
      const groups = addr.split(':').filter((g) => g.length > 0).length;
      if (groups < 3 && addr !== '::1' && !m[0].includes('%') && !/^fe80:/i.test(addr)) return null;
      return finding('ip_address', m.index, end);
    });
  }
}
