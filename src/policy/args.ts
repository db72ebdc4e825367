// `args:` constraints on tool-call arguments, compiled once (regexes included).
// A check returns null when satisfied, or a short human reason when not.
import type { ToolRuleSpec } from '../config/schema.ts';
import { compileLinearRegex } from '../config/linear-regex.ts';

type ArgSpec = NonNullable<ToolRuleSpec['args']>[string];

export interface CompiledArg {
  name: string;
  /** null when satisfied, else one of a few reason strings built at load (no allocation). */
  check(value: unknown, present: boolean): string | null;
}

/**
 * Compile one constraint; returns an error message when the spec itself is invalid.
 * Reasons name the argument and the constraint but never echo the value: reasons go to the
 * audit trail, which records only an argument digest.
 */
export function compileArg(name: string, spec: ArgSpec): CompiledArg | string {
  let re: RegExp | null = null;
  if (spec.pattern !== undefined) {
    // Agent-controlled strings meet an operator's pattern: linear-time engine, never backtracking.
    try { re = compileLinearRegex(spec.pattern, ''); } catch (e) { return `invalid pattern: ${(e as Error).message}`; }
  }
  if (spec.min !== undefined && spec.max !== undefined && spec.min > spec.max) return `min ${spec.min} is greater than max ${spec.max}`;
  const allowed = spec.enum ? new Set<unknown>(spec.enum) : null;
  const required = spec.required === true;
  const { min, max, maxLength } = spec;
  const a = `args.${name}`;
  const why = {
    required: `${a} is required`,
    notInEnum: `${a} is not one of ${(spec.enum ?? []).map((v) => JSON.stringify(v)).join(', ')}`,
    notNumber: `${a} must be a number`,
    belowMin: `${a} is below min ${min}`,
    aboveMax: `${a} exceeds max ${max}`,
    notString: `${a} must be a string`,
    tooLong: `${a} is longer than maxLength ${maxLength}`,
    noMatch: `${a} does not match pattern ${spec.pattern}`,
  };
  return {
    name,
    check(value, present) {
      if (!present || value === undefined || value === null) return required ? why.required : null;
      if (allowed && !allowed.has(value)) return why.notInEnum;
      if (min !== undefined || max !== undefined) {
        if (typeof value !== 'number' || Number.isNaN(value)) return why.notNumber;
        if (min !== undefined && value < min) return why.belowMin;
        if (max !== undefined && value > max) return why.aboveMax;
      }
      if (re || maxLength !== undefined) {
        if (typeof value !== 'string') return why.notString;
        if (maxLength !== undefined && value.length > maxLength) return why.tooLong;
        if (re && !re.test(value)) return why.noMatch;
      }
      return null;
    },
  };
}
/** First violated constraint's reason, or null when all hold. */
export function checkArgs(list: readonly CompiledArg[], args: Readonly<Record<string, unknown>>): string | null {
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    const present = Object.hasOwn(args, c.name);
    const r = c.check(present ? args[c.name] : undefined, present);
    if (r !== null) return r;
  }
  return null;
}
