// `args:` constraints on tool-call arguments, compiled once (regexes included).
// A check returns null when satisfied, or a short human reason when not.
import type { ToolRuleSpec } from '../config/schema.ts';

type ArgSpec = NonNullable<ToolRuleSpec['args']>[string];

export interface CompiledArg {
  name: string;
  check(value: unknown, present: boolean): string | null;
}

const show = (v: unknown): string => {
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 60 ? s.slice(0, 57) + '...' : s;
};

/** Compile one constraint; returns an error message when the spec itself is invalid. */
export function compileArg(name: string, spec: ArgSpec): CompiledArg | string {
  let re: RegExp | null = null;
  if (spec.pattern !== undefined) {
    try { re = new RegExp(spec.pattern, 'u'); } catch (e) { return `invalid pattern: ${(e as Error).message}`; }
  }
  if (spec.min !== undefined && spec.max !== undefined && spec.min > spec.max) return `min ${spec.min} is greater than max ${spec.max}`;
  const allowed = spec.enum ? new Set<unknown>(spec.enum) : null;
  const enumText = spec.enum ? spec.enum.map(show).join(', ') : '';
  const required = spec.required === true;
  const { min, max, maxLength } = spec;
  return {
    name,
    check(value, present) {
      if (!present || value === undefined || value === null) return required ? `args.${name} is required` : null;
      if (allowed && !allowed.has(value)) return `args.${name} = ${show(value)} is not one of ${enumText}`;
      if (min !== undefined || max !== undefined) {
        if (typeof value !== 'number' || Number.isNaN(value)) return `args.${name} = ${show(value)} is not a number`;
        if (min !== undefined && value < min) return `args.${name} = ${show(value)} is below min ${min}`;
        if (max !== undefined && value > max) return `args.${name} = ${show(value)} exceeds max ${max}`;
      }
      if (re || maxLength !== undefined) {
        if (typeof value !== 'string') return `args.${name} = ${show(value)} is not a string`;
        if (maxLength !== undefined && value.length > maxLength) return `args.${name} is longer than maxLength ${maxLength}`;
        if (re && !re.test(value)) return `args.${name} = ${show(value)} does not match pattern ${spec.pattern}`;
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
