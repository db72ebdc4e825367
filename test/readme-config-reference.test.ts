// The README's config reference against the schema aam loads with (src/config/schema.ts): every field
// any kind accepts is named as a field in the "## Config reference" section, and every value of every enum
// field is written on a line of it that names that field (`approval: none`, `scope: team`), so a value added to the schema without
// a word in the README fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { documentSchema, specByKind } from '../src/config/schema.ts';

interface Accepted { where: string; field: string; value?: string }

/** Every field (and, for an enum field, each of its values) the schema accepts, with the path it sits at. */
function accepted(schema: z.ZodType, where: string, field: string, out: Accepted[] = []): Accepted[] {
  const s = schema as z.ZodType & { def: Record<string, unknown> };
  if (s instanceof z.ZodObject) {
    for (const [k, v] of Object.entries(s.shape as Record<string, z.ZodType>)) {
      out.push({ where, field: k });
      accepted(v, `${where}.${k}`, k, out);
    }
  } else if (s instanceof z.ZodEnum) {
    for (const v of s.options) out.push({ where, field, value: String(v) });
  } else if (s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodDefault) {
    accepted(s.def.innerType as z.ZodType, where, field, out);
  } else if (s instanceof z.ZodArray) {
    accepted(s.def.element as z.ZodType, `${where}[]`, field, out);
  } else if (s instanceof z.ZodRecord) {
    accepted(s.def.valueType as z.ZodType, `${where}{}`, field, out);
  } else if (s instanceof z.ZodUnion) {
    for (const o of s.def.options as z.ZodType[]) accepted(o, where, field, out);
  } else if (s instanceof z.ZodPipe) {
    accepted(s.def.in as z.ZodType, where, field, out);
  } else if (!(s instanceof z.ZodString || s instanceof z.ZodURL || s instanceof z.ZodNumber || s instanceof z.ZodBoolean
    || s instanceof z.ZodLiteral || s instanceof z.ZodUnknown)) {
    // A new kind of schema node: teach this walker to look inside it rather than skip what it accepts.
    assert.fail(`${where}: ${s.constructor.name} is not walked by this test`);
  }
  return out;
}

const all = [
  ...Object.entries(specByKind).flatMap(([kind, schema]) => accepted(schema, kind, kind)),
  ...accepted(documentSchema, 'document', 'document'),
];
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8').split('\n');
/** The "## Config reference" section, up to the next "## " heading (before: the whole README, so a field named only in the fleet or Performance text passed). */
const lines = readme.slice(readme.indexOf('## Config reference'), readme.findIndex((l, i) => i > readme.indexOf('## Config reference') && l.startsWith('## ')));
const escaped = (w: string): string => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** `word` standing alone: not part of a longer name (`scope` is not in `scopes`, `team` not in `team_id`). */
const word = (w: string): RegExp => new RegExp(`(^|[^\\w-])${escaped(w)}($|[^\\w-])`);
/**
 * `field` named as a field: a YAML key (`threshold:`, `{ min: 1`), a dotted path (`spec.cache.threshold`), `?field=` or
 * `` `field` `` (before: the word anywhere, so `min` passed on "after 30 min" and `threshold` on a list of names).
 */
const key = (w: string): RegExp => new RegExp(`(^|[^\\w-])${escaped(w)}(\\s*:|\\.\\w|\\[)|\\.${escaped(w)}\\b|\\b${escaped(w)}=|\`${escaped(w)}\`|[{,] *${escaped(w)}\\b`);

test('every field the config schema accepts is named as a field in the README\'s config reference', () => {
  assert.ok(lines.length > 1000 && lines.length < readme.length, `the config reference is ${lines.length} of the README's ${readme.length} lines`);
  const fields = all.filter((a) => a.value === undefined);
  assert.ok(fields.length > 200, `walked ${fields.length} fields`);
  const missing = fields.filter((a) => !lines.some((l) => key(a.field).test(l))).map((a) => `${a.where}.${a.field}`);
  assert.deepEqual(missing, []);
});

test('every enum value the config schema accepts is written on a line of the config reference that names its field', () => {
  const values = all.filter((a) => a.value !== undefined);
  assert.ok(values.length > 50, `walked ${values.length} enum values`);
  // before: approval none, budget and cache scope team, webhook on_error allow, credential kind api_key and
  // HttpTool methods PUT, PATCH, DELETE were accepted but not shown
  const missing = values.filter((a) => !lines.some((l) => word(a.field).test(l) && word(a.value!).test(l))).map((a) => `${a.where} ${a.field}: ${a.value}`);
  assert.deepEqual(missing, []);
});
