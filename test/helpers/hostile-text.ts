// Inputs that make a careless detector slow: long runs of the separators, prefixes and digits
// that detectors key on (each a shape that once cost, or could cost, super-linear time), plus
// random texts. Shared by the linear-time tests and bench/detectors.ts.

/** Repeat `unit` after `prefix` until the text is `size` characters long. */
export function run(prefix: string, unit: string, size: number): string {
  const body = unit.repeat(Math.ceil(Math.max(0, size - prefix.length) / unit.length));
  return (prefix + body).slice(0, size);
}

/** [label, unit-or-prefix] shapes; each becomes a text of the requested size. */
const SHAPES: ReadonlyArray<readonly [string, string, string]> = [
  // label, prefix, repeated unit
  ['"://" + "a." (URL password)', '://', 'a.'],
  ['"x://u:" + "a:" ', 'x://u:', 'a:'],
  ['"a." run', '', 'a.'],
  ['"a-" run', '', 'a-'],
  ['"a_" run', '', 'a_'],
  ['"@" run', '', '@'],
  ['"a@" run', '', 'a@'],
  ['"x@" + "a." (email domain)', 'x@', 'a.'],
  ['"x@" + "a-" (email label)', 'x@', 'a-'],
  ['"a.@" run', '', 'a.@'],
  ['digit run', '', '1'],
  ['"1 " run', '', '1 '],
  ['"1-" run', '', '1-'],
  ['"1." run', '', '1.'],
  ['"12 " run', '', '12 '],
  ['"+1 " run', '', '+1 '],
  ['"+" + 40 digits run (international phone)', '', '+' + '1'.repeat(40) + ' '],
  ['"+1" + 21 digits + "x" run', '', '+1' + '1'.repeat(20) + 'x '],
  ['"+12 (0)1" run', '', '+12 (0)1'],
  ['"+1" + "(0)1" (phone trunk)', '+1', '(0)1'],
  ['"+1" + " (1)" (phone groups)', '+1', ' (1)'],
  ['"0" + " 12" (national phone)', '0', ' 12'],
  ['"00 1" run', '', '00 1'],
  ['"1.1." run (IPv4)', '', '1.1.'],
  ['":" run', '', ':'],
  ['"a:" run (IPv6)', '', 'a:'],
  ['"1:" run', '', '1:'],
  ['"DE89 " + "AAAA " (IBAN)', 'DE89 ', 'AAAA '],
  ['"AB12" run (IBAN starts)', '', 'AB12'],
  ['"-----BEGIN PRIVATE KEY-----" + base64, no END', '-----BEGIN PRIVATE KEY-----\n', 'QUJD'],
  ['"-----BEGIN A " run (PEM header)', '', '-----BEGIN A '],
  ['"-----BEGIN PRIVATE KEY-----!" run', '', '-----BEGIN PRIVATE KEY-----!'],
  ['"eyJ" + "a." (JWT)', 'eyJ', 'aaaaaaaa.'],
  ['"eyJaaaaaaaa." run', '', 'eyJaaaaaaaa.'],
  ['"xoxb-" + "1-" (Slack)', 'xoxb-', '1-'],
  ['"sk-" run', '', 'sk-'],
  ['"secret_" run (assignment key)', '', 'secret_'],
  ['"a_secret_a" + "_a" (assignment key)', 'a_secret_a', '_a'],
  ['"password=" run', '', 'password='],
  ['"token:" + spaces', 'token:', ' '],
  ['"Bearer " run', '', 'Bearer '],
  ['"=" run', '', '='],
  ['"Ab1" run (one long token)', '', 'Ab1'],
  ['"Ab1+/" run + "==="', '', 'Ab1+/'],
  ['whitespace run', '', ' \n\t'],
  // Dense hits: every few characters a finding (per-finding costs).
  ['"a@b.co " run (dense emails)', '', 'a@b.co '],
  ['"4111 1111 1111 1111 " run (dense cards)', '', '4111 1111 1111 1111 '],
  ['"078-05-1120 " run (dense SSNs)', '', '078-05-1120 '],
  ['"+44 20 7946 0958 " run (dense phones)', '', '+44 20 7946 0958 '],
  ['"10.0.0.1 " run (dense IPs)', '', '10.0.0.1 '],
  ['"DE89370400440532013000 " run (dense IBANs)', '', 'DE89370400440532013000 '],
  ['"AKIAIOSFODNN7EXAMPLE " run (dense keys)', '', 'AKIAIOSFODNN7EXAMPLE '],
  ['"project falcon café " run (dense keywords)', '', 'project falcon café '],
];

export function adversarialInputs(size: number): Array<[string, string]> {
  return SHAPES.map(([label, prefix, unit]) => [label, run(prefix, unit, size)]);
}

/** Deterministic PRNG (mulberry32) so benchmark runs are comparable. */
export function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomOver(alphabet: string, size: number, seed: number): string {
  const r = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < size; i++) out.push(alphabet[Math.floor(r() * alphabet.length)]);
  return out.join('');
}

const WORDS = ['the', 'order', 'call', 'me', 'at', 'phone', 'secret', 'token', 'key', 'api', 'version', 'ssn', 'card', 'mail', 'to', 'from', 'id', 'and'];

function randomProse(size: number, seed: number): string {
  const r = prng(seed);
  const pieces: string[] = [];
  let n = 0;
  while (n < size) {
    const k = r();
    const w = k < 0.6 ? WORDS[Math.floor(r() * WORDS.length)]
      : k < 0.7 ? String(Math.floor(r() * 1e10))
      : k < 0.75 ? `${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}`
      : k < 0.8 ? `u${Math.floor(r() * 1e4)}@ex${Math.floor(r() * 100)}.com`
      : k < 0.85 ? `+44 20 ${Math.floor(r() * 1e4)} ${Math.floor(r() * 1e4)}`
      : k < 0.9 ? randomOver('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', 24, Math.floor(r() * 1e9))
      : randomOver('abcdefghijklmnopqrstuvwxyz', 1 + Math.floor(r() * 10), Math.floor(r() * 1e9));
    const sep = r() < 0.1 ? '\n' : r() < 0.2 ? ', ' : r() < 0.25 ? ': ' : r() < 0.3 ? '=' : ' ';
    pieces.push(w, sep);
    n += w.length + sep.length;
  }
  return pieces.join('').slice(0, size);
}

export function randomInputs(size: number): Array<[string, string]> {
  return [
    ['random printable ASCII', randomOver(Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join(''), size, 1)],
    ['random digits and separators', randomOver('0123456789 -.()+:/@', size, 2)],
    ['random base64 with spaces', randomOver('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= ', size, 3)],
    ['random prose with PII-like values', randomProse(size, 4)],
  ];
}
