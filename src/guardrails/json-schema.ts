// A small JSON Schema subset for tool arguments, compiled once: type, required, properties,
// additionalProperties (false or schema), items, enum, const, minLength/maxLength, pattern,
// minimum/maximum, minItems/maxItems. Unknown assertion keywords are a compile error, because
// silently ignoring one would allow what the author meant to refuse.

import { compileLinearRegex } from '../config/linear-regex.ts';
import { isNum, isObj } from '../lib/json.ts';

export interface SchemaError { path: string; message: string }
export type Validator = (value: unknown, path: string, errors: SchemaError[]) => void;

const ANNOTATIONS = new Set(['$schema', '$id', '$comment', 'title', 'description', 'default', 'examples', 'format', 'deprecated', 'readOnly', 'writeOnly']);
const SUPPORTED = new Set(['type', 'required', 'properties', 'additionalProperties', 'items', 'enum', 'const', 'minLength', 'maxLength', 'pattern', 'minimum', 'maximum', 'minItems', 'maxItems']);
const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null']);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function typeMatches(t: string, v: unknown): boolean {
  if (t === 'integer') return typeof v === 'number' && Number.isInteger(v);
  if (t === 'number') return isNum(v);
  return typeOf(v) === t;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Compile a schema; throws with the schema path of the first unsupported or malformed keyword. */
export function compileSchema(schema: unknown, at = '$'): Validator {
  if (schema === true) return () => {};
  if (schema === false) return (_v, path, errors) => { errors.push({ path, message: 'no value is allowed here' }); };
  if (!isObj(schema)) throw new Error(`json_schema at ${at} must be an object or boolean`);
  const checks: Validator[] = [];
  for (const key of Object.keys(schema)) {
    if (!SUPPORTED.has(key) && !ANNOTATIONS.has(key)) {
      throw new Error(`json_schema at ${at} uses unsupported keyword "${key}" (supported: ${[...SUPPORTED].join(', ')})`);
    }
  }
  const s = schema;
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    if (!types.every((t) => typeof t === 'string' && TYPES.has(t))) throw new Error(`json_schema at ${at}.type must be one of ${[...TYPES].join(', ')}`);
    const list = types as string[];
    checks.push((v, path, errors) => {
      if (!list.some((t) => typeMatches(t, v))) errors.push({ path, message: `must be ${list.join(' or ')}, got ${typeOf(v)}` });
    });
  }
  if (s.enum !== undefined) {
    if (!Array.isArray(s.enum)) throw new Error(`json_schema at ${at}.enum must be an array`);
    const allowed = s.enum.map((e) => JSON.stringify(e));
    checks.push((v, path, errors) => {
      if (!allowed.includes(JSON.stringify(v))) errors.push({ path, message: `must be one of ${allowed.join(', ')}` });
    });
  }
  if (s.const !== undefined) {
    const c = s.const;
    checks.push((v, path, errors) => { if (!sameJson(v, c)) errors.push({ path, message: `must equal ${JSON.stringify(c)}` }); });
  }
  const num = (k: string): number | undefined => {
    const v = s[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number') throw new Error(`json_schema at ${at}.${k} must be a number`);
    return v;
  };
  const minLength = num('minLength'), maxLength = num('maxLength'), minimum = num('minimum'), maximum = num('maximum');
  const minItems = num('minItems'), maxItems = num('maxItems');
  // Agent-sent text meets an operator's pattern here: linear-time engine, like Guardrail.spec.regex.
  let pattern: RegExp | undefined;
  if (typeof s.pattern === 'string') {
    try { pattern = compileLinearRegex(s.pattern, ''); } catch (e) { throw new Error(`json_schema at ${at}.pattern ${(e as Error).message}`); }
  }
  if (minLength !== undefined || maxLength !== undefined || pattern !== undefined) {
    checks.push((v, path, errors) => {
      if (typeof v !== 'string') return;
      const len = [...v].length;
      if (minLength !== undefined && len < minLength) errors.push({ path, message: `must be at least ${minLength} characters` });
      if (maxLength !== undefined && len > maxLength) errors.push({ path, message: `must be at most ${maxLength} characters` });
      if (pattern !== undefined && !pattern.test(v)) errors.push({ path, message: `must match pattern ${pattern.source}` });
    });
  }
  if (minimum !== undefined || maximum !== undefined) {
    checks.push((v, path, errors) => {
      if (typeof v !== 'number') return;
      if (minimum !== undefined && v < minimum) errors.push({ path, message: `must be >= ${minimum}` });
      if (maximum !== undefined && v > maximum) errors.push({ path, message: `must be <= ${maximum}` });
    });
  }
  if (minItems !== undefined || maxItems !== undefined || s.items !== undefined) {
    const items = s.items === undefined ? undefined : compileSchema(s.items, `${at}.items`);
    checks.push((v, path, errors) => {
      if (!Array.isArray(v)) return;
      if (minItems !== undefined && v.length < minItems) errors.push({ path, message: `must have at least ${minItems} items` });
      if (maxItems !== undefined && v.length > maxItems) errors.push({ path, message: `must have at most ${maxItems} items` });
      if (items) v.forEach((item, i) => items(item, `${path}[${i}]`, errors));
    });
  }
  if (s.required !== undefined || s.properties !== undefined || s.additionalProperties !== undefined) {
    if (s.required !== undefined && !(Array.isArray(s.required) && s.required.every((r) => typeof r === 'string'))) {
      throw new Error(`json_schema at ${at}.required must be an array of property names`);
    }
    if (s.properties !== undefined && !isObj(s.properties)) throw new Error(`json_schema at ${at}.properties must be an object`);
    const required = (s.required ?? []) as string[];
    const props = new Map<string, Validator>();
    for (const [k, sub] of Object.entries((s.properties ?? {}) as Record<string, unknown>)) props.set(k, compileSchema(sub, `${at}.properties.${k}`));
    const extra: Validator | undefined = s.additionalProperties === false
      ? (_v, path, errors) => { errors.push({ path, message: 'is not an allowed property (additionalProperties is false)' }); }
      : s.additionalProperties === undefined ? undefined : compileSchema(s.additionalProperties, `${at}.additionalProperties`);
    checks.push((v, path, errors) => {
      if (!isObj(v)) return;
      for (const r of required) if (!Object.hasOwn(v, r)) errors.push({ path: `${path}.${r}`, message: 'is required' });
      for (const [k, item] of Object.entries(v)) {
        const p = props.get(k);
        if (p) p(item, `${path}.${k}`, errors);
        else if (extra) extra(item, `${path}.${k}`, errors);
      }
    });
  }
  return (v, path, errors) => { for (const c of checks) c(v, path, errors); };
}

/** Validate a value; returns the errors (empty when valid). Paths start at `$`. */
export function validateSchema(validator: Validator, value: unknown): SchemaError[] {
  const errors: SchemaError[] = [];
  validator(value, '$', errors);
  return errors;
}
