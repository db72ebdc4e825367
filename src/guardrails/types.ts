// Shared guardrail types. Findings carry positions and a category, never the matched value,
// so they can be logged and audited without re-leaking what they found.

/** Built-in detector names, as written in `Guardrail.spec.detect`. */
export type DetectorName = 'email' | 'phone' | 'credit_card' | 'ssn' | 'iban' | 'ip_address' | 'secrets';

/** Finding categories: one per detector (secrets report `secret`), plus the non-detector checks. */
export type Category =
  | 'email' | 'phone' | 'credit_card' | 'ssn' | 'iban' | 'ip_address' | 'secret'
  | 'regex' | 'keyword' | 'size' | 'schema' | 'webhook' | 'scan_limit';

export interface Finding {
  category: Category;
  /** UTF-16 offsets into the scanned text, end exclusive. */
  start: number;
  end: number;
  /** Sub-type for secrets (e.g. `aws_access_key`, `jwt`), useful in audit; never the value. */
  kind?: string;
}

export type Direction = 'input' | 'output';
export type Action = 'block' | 'redact' | 'flag';
export type Verdict = 'allow' | 'flag' | 'redact' | 'block';

/** Per-guardrail, per-category summary: safe to log and audit. */
export interface FindingSummary {
  guardrail: string;
  category: Category;
  count: number;
  /** Where it was found, for structured inputs (e.g. `messages[1].content`, `args.customer.email`). */
  where?: string[];
}
