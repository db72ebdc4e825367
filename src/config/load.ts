// Parse + validate + cross-reference a multi-document YAML config. Pure apart from reading files.
// Every problem is collected (not just the first) so `aam validate` can print them all.
import { readFileSync } from 'node:fs';
import { parseAllDocuments, LineCounter, isMap, isSeq, type Document } from 'yaml';
import type { z } from 'zod';
import { documentSchema, specByKind, unknownFieldMessage, type ConfigSet, type Kind, type Resource } from './schema.ts';
import { resolvePricing } from './pricing.ts';
import { compileLinearRegex } from './linear-regex.ts';
import { nearest } from '../lib/nearest.ts';
import { catalogLookup, catalogProviderOf, compileCatalog, type Catalog } from './catalog.ts';
import { hasWildcard, stringMatcher } from './glob.ts';
import { ConfigError, type ConfigIssue } from './errors.ts';
import { configDigest, readConfigSources, type ConfigSource } from './sources.ts';

export { ConfigError, formatIssue, formatIssues, type ConfigIssue } from './errors.ts';
export { configFiles } from './sources.ts';

function pathString(path: ReadonlyArray<PropertyKey>): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : (s ? '.' : '') + String(p);
  return s;
}

/** Best-effort line number of a path inside a YAML document. */
function lineOf(doc: Document, path: ReadonlyArray<PropertyKey>, lc: LineCounter): number | undefined {
  let node: unknown = doc.contents;
  let best: number | undefined;
  const pos = (n: unknown) => {
    const r = (n as { range?: [number, number, number] } | null)?.range;
    return r ? lc.linePos(r[0]).line : undefined;
  };
  best = pos(node);
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
      if (!pair) break;
      best = pos(pair.key) ?? best;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
      best = pos(node) ?? best;
    } else break;
  }
  return best;
}

/** "spec.tools[0].when" -> ['spec', 'tools', 0, 'when'] (the inverse of pathString). */
function pathKeys(path: string): PropertyKey[] {
  return [...path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]));
}

/**
 * Issues found after loading (policy compilation: CEL, rule conflicts) carry file, document and
 * path but no line, since the compiled config keeps no YAML: the line is looked up in the file
 * as it is now (or in `textOf`, the texts that were compiled). Best effort: an issue whose file or
 * document cannot be read again keeps no line.
 */
export function withLines(issues: readonly ConfigIssue[], textOf: (file: string) => string = (f) => readFileSync(f, 'utf8')): ConfigIssue[] {
  const docs = new Map<string, { list: Document[]; lc: LineCounter } | null>();
  const parsed = (file: string) => {
    if (!docs.has(file)) {
      try {
        const lc = new LineCounter();
        docs.set(file, { list: parseAllDocuments(textOf(file), { lineCounter: lc, prettyErrors: false }) as Document[], lc });
      } catch { docs.set(file, null); }
    }
    return docs.get(file);
  };
  return issues.map((i) => {
    if (i.line !== undefined || i.document < 0 || !i.path) return i;
    const p = parsed(i.file);
    const doc = p?.list[i.document];
    const line = doc ? lineOf(doc, pathKeys(i.path), p.lc) : undefined;
    return line === undefined ? i : { ...i, line };
  });
}

export interface ParsedDoc { kind: Kind; name: string; labels: Record<string, string>; spec: unknown; file: string; index: number; doc: Document; lc: LineCounter }

/** Load and validate; throws ConfigError with every issue found. */
export function loadConfig(path: string): ConfigSet {
  return parseConfigTexts(readConfigSources(path));
}

export function parseConfigTexts(sources: readonly ConfigSource[]): ConfigSet {
  const issues: ConfigIssue[] = [];
  const parsed: ParsedDoc[] = [];
  /** Documents whose spec was refused ("Model/reasoning-high"): a reference to one is not "unknown". */
  const refused = new Map<string, string>();
  for (const { file, text } of sources) {
    const lc = new LineCounter();
    const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false });
    const list = Array.isArray(docs) ? docs : [docs as unknown as Document];
    list.forEach((doc, index) => {
      for (const err of doc.errors) {
        // linePos is only filled with prettyErrors: the line is taken from the error's offset.
        issues.push({ file, document: index, path: '', line: lc.linePos(err.pos[0]).line, message: `YAML syntax: ${err.message.split('\n')[0]}` });
      }
      if (doc.errors.length) return;
      const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
      if (value === null || value === undefined) return; // empty document (e.g. trailing ---)
      const head = documentSchema.safeParse(value);
      if (!head.success) {
        for (const i of head.error.issues) issues.push({ file, document: index, path: pathString(i.path), line: lineOf(doc, i.path, lc), message: describeZodIssue(i, documentSchema, value) });
        return;
      }
      const d = head.data;
      const schema = specByKind[d.kind] as z.ZodType;
      const spec = schema.safeParse(d.spec ?? {});
      if (!spec.success) {
        refused.set(`${d.kind}/${d.metadata.name}`, `${file} document ${index + 1}`);
        for (const i of spec.error.issues) {
          const p = ['spec', ...i.path];
          issues.push({ file, document: index, path: pathString(p), line: lineOf(doc, p, lc), message: describeZodIssue(i, specByKind[d.kind] as z.ZodType, d.spec ?? {}) });
        }
        return;
      }
      parsed.push({ kind: d.kind, name: d.metadata.name, labels: d.metadata.labels ?? {}, spec: spec.data, file, index, doc, lc });
    });
  }
  const set: ConfigSet = {
    credentials: new Map(), providers: new Map(), models: new Map(), agents: new Map(), policies: new Map(),
    mcpServers: new Map(), httpTools: new Map(), guardrails: new Map(), trustDomains: new Map(), roleBindings: new Map(), digest: configDigest(sources), files: sources.map((s) => s.file),
  };
  const bucket: Record<Kind, Map<string, Resource<unknown>>> = {
    Credential: set.credentials, Provider: set.providers, Model: set.models, Agent: set.agents, AgentPolicy: set.policies,
    McpServer: set.mcpServers, HttpTool: set.httpTools, Guardrail: set.guardrails, TrustDomain: set.trustDomains, RoleBinding: set.roleBindings,
  } as Record<Kind, Map<string, Resource<unknown>>>;
  for (const p of parsed) {
    const m = bucket[p.kind];
    const prev = m.get(p.name);
    if (prev) {
      issues.push({ file: p.file, document: p.index, path: 'metadata.name', line: lineOf(p.doc, ['metadata', 'name'], p.lc), message: `duplicate ${p.kind} "${p.name}" (first defined in ${prev.file} document ${prev.index + 1})` });
      continue;
    }
    m.set(p.name, { name: p.name, labels: p.labels, spec: p.spec, file: p.file, index: p.index });
  }
  const byKey = new Map(parsed.map((p) => [`${p.kind}/${p.name}`, p]));
  const at = (kind: Kind, r: Resource<unknown>, path: PropertyKey[], message: string) => {
    const p = byKey.get(`${kind}/${r.name}`);
    issues.push({ file: r.file, document: r.index, path: pathString(path), line: p ? lineOf(p.doc, path, p.lc) : undefined, message });
  };
  checkReferences(set, at);
  if (issues.length) throw new ConfigError(refused.size ? issues.map((i) => refusedReference(i, refused)) : issues);
  return set;
}

/**
 * `unknown Model route "x" (defined: ...)` when document x is there but was refused reads as if it
 * were missing: say it is invalid and where its own problem is listed.
 */
function refusedReference(i: ConfigIssue, refused: ReadonlyMap<string, string>): ConfigIssue {
  const m = /^unknown (\w+)(?: route)? "([^"]+)"/.exec(i.message);
  const where = m ? refused.get(`${m[1]}/${m[2]}`) : undefined;
  return where === undefined ? i : { ...i, message: `${m![1]} "${m![2]}" is defined but invalid (see ${where}, listed above)` };
}

/** A spec issue in words; a wrong type or value names what was found, read from the spec (zod's issues do not carry their input). */
/** A zod issue of `schema` checking `root` (a document, or its spec) in the words of the YAML: what was found, the nearest real name. */
function describeZodIssue(i: z.core.$ZodIssue, schema: z.ZodType, root: unknown): string {
  if (i.code === 'unrecognized_keys') return unknownFieldMessage(schema, i.path, i.keys);
  if ((i.code === 'too_big' || i.code === 'too_small') && i.message.startsWith('Too ')) return boundMessage(i, valueAt(root, i.path)?.value);
  if (i.code !== 'invalid_type' && i.code !== 'invalid_value') return i.message;
  const found = valueAt(root, i.path);
  if (i.code === 'invalid_type') return found === undefined ? `required field is missing (expected ${typeName(i.expected)})` : `expected ${typeName(i.expected)}, not ${describeValue(found.value)}`;
  const allowed = allowedMessage(i);
  if (found === undefined) return `${allowed} (none given)`;
  const near = typeof found.value === 'string' ? nearest(found.value, i.values.filter((v): v is string => typeof v === 'string')) : null;
  return `${allowed}, not ${describeValue(found.value)}${near ? ` (did you mean ${near}?)` : ''}`;
}

/**
 * The values a field takes, in the YAML's words (`must be one of openai, anthropic`); zod's own
 * ("Invalid option: expected one of "openai"|"anthropic"") only when a schema gave none of its own.
 */
function allowedMessage(i: z.core.$ZodIssueInvalidValue): string {
  if (!/^Invalid (option|input)\b/.test(i.message)) return i.message;
  const values = i.values.map((v) => String(v));
  return values.length === 1 ? `must be ${values[0]}` : `must be one of ${values.join(', ')}`;
}

/** A bound in the YAML's words with what was found: `must be at most 10, not 20` (zod's own: "Too big: expected number to be <=10"). */
function boundMessage(i: z.core.$ZodIssueTooBig | z.core.$ZodIssueTooSmall, found: unknown): string {
  const big = i.code === 'too_big';
  const limit = Number(big ? (i as z.core.$ZodIssueTooBig).maximum : (i as z.core.$ZodIssueTooSmall).minimum);
  const cmp = big ? (i.inclusive ? 'at most' : 'less than') : (i.inclusive ? 'at least' : 'more than');
  const unit = i.origin === 'array' ? (limit === 1 ? ' item' : ' items') : i.origin === 'string' ? (limit === 1 ? ' character' : ' characters') : '';
  const size = Array.isArray(found) ? found.length : typeof found === 'string' ? found.length : undefined;
  const got = typeof found === 'number' ? `, not ${found}` : size !== undefined ? ` (it has ${size})` : '';
  return `must be ${cmp} ${limit}${unit}${got}`;
}

/** The value at `path` in a parsed YAML document, if it is there (`{ value }` so a present null is told from absence). */
function valueAt(root: unknown, path: readonly PropertyKey[]): { value: unknown } | undefined {
  let cur: unknown = root;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, k)) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return { value: cur };
}

/** zod's type names in YAML's words. */
const typeName = (t: string): string => ({ array: 'a list', object: 'a mapping', number: 'a number', string: 'a string', boolean: 'true or false', nonoptional: 'a value' } as Record<string, string>)[t] ?? t;

/** A found value as a user would recognise it in the YAML: `the string "75"`, `a list`, `null`. */
function describeValue(v: unknown): string {
  if (v === null) return 'null (an empty value)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  const text = JSON.stringify(v);
  return `${typeof v === 'string' ? 'the string' : `the ${typeof v}`} ${text.length > 60 ? `${text.slice(0, 57)}...` : text}`;
}

type At = (kind: Kind, r: Resource<unknown>, path: PropertyKey[], message: string) => void;

/** Dangling references and cross-resource rules that a per-document schema cannot see. */
function checkReferences(set: ConfigSet, at: At): void {
  const knownGuardrails = (kind: Kind, r: Resource<unknown>, list: readonly string[] | undefined): void => {
    (list ?? []).forEach((g, i) => {
      if (!set.guardrails.has(g)) at(kind, r, ['spec', 'guardrails', i], unknownRef('Guardrail', g, set.guardrails));
    });
  };
  for (const p of set.providers.values()) {
    const s = p.spec;
    if (s.credential && !set.credentials.has(s.credential)) at('Provider', p, ['spec', 'credential'], unknownRef('Credential', s.credential, set.credentials));
    if (s.type !== 'demo' && !s.baseUrl && s.type !== 'openai' && s.type !== 'anthropic' && s.type !== 'gemini' && s.type !== 'bedrock' && s.type !== 'vertex') at('Provider', p, ['spec', 'baseUrl'], `baseUrl is required for type ${s.type}`);
    if (s.type === 'azure-openai' && !s.azure) at('Provider', p, ['spec', 'azure'], 'azure-openai needs azure: { apiVersion: "2024-10-21" }');
    const cred = s.credential ? set.credentials.get(s.credential)?.spec : undefined;
    if (cred && (cred.kind ?? (cred.aws ? 'aws_sigv4' : undefined)) === 'aws_sigv4' && s.type !== 'bedrock') at('Provider', p, ['spec', 'credential'], `Credential "${s.credential}" signs AWS requests (aws_sigv4); only a Provider of type bedrock can use it`);
    if (s.type === 'bedrock' && !s.bedrock) at('Provider', p, ['spec', 'bedrock'], 'bedrock needs bedrock: { region: us-east-1 } (the AWS region requests are signed for)');
    if (s.type === 'vertex' && !s.vertex) at('Provider', p, ['spec', 'vertex'], 'vertex needs vertex: { project: my-project, region: europe-west4 }');
  }
  for (const m of set.models.values()) {
    m.spec.targets.forEach((t, i) => {
      if (!set.providers.has(t.provider)) at('Model', m, ['spec', 'targets', i, 'provider'], unknownRef('Provider', t.provider, set.providers));
    });
    knownGuardrails('Model', m, m.spec.guardrails);
    if (m.spec.cache?.mode === 'semantic' && m.spec.cache.embedding_model && !set.models.has(m.spec.cache.embedding_model)) {
      at('Model', m, ['spec', 'cache', 'embedding_model'], unknownRef('Model', m.spec.cache.embedding_model, set.models));
    }
  }
  const catalog = compileCatalog(set);
  const workloads = new Map<string, string>();
  for (const a of set.agents.values()) {
    const other = workloads.get(a.spec.workload);
    if (other) at('Agent', a, ['spec', 'workload'], `workload ${a.spec.workload} is already used by Agent "${other}"`);
    workloads.set(a.spec.workload, a.name);
  }
  for (const pol of set.policies.values()) {
    const s = pol.spec;
    if (s.identity.agent && !set.agents.has(s.identity.agent)) at('AgentPolicy', pol, ['spec', 'identity', 'agent'], unknownRef('Agent', s.identity.agent, set.agents));
    for (const list of ['allow', 'deny'] as const) {
      (s.models?.[list] ?? []).forEach((name, i) => {
        const problem = modelNameProblem(set, catalog, name);
        if (problem) at('AgentPolicy', pol, ['spec', 'models', list, i], problem === 'unknown' ? unknownRef('Model', name, set.models, 'Model route') : problem);
      });
    }
    knownGuardrails('AgentPolicy', pol, s.guardrails);
    (s.credentials?.allow ?? []).forEach((c, i) => {
      if (!set.credentials.has(c)) at('AgentPolicy', pol, ['spec', 'credentials', 'allow', i], unknownRef('Credential', c, set.credentials));
    });
    (s.agents ?? []).forEach((r, i) => {
      const callee = set.agents.get(r.agent);
      if (r.agent !== '*' && !callee) at('AgentPolicy', pol, ['spec', 'agents', i, 'agent'], unknownRef('Agent', r.agent, set.agents));
      else if (callee && !callee.spec.a2a) at('AgentPolicy', pol, ['spec', 'agents', i, 'agent'], `Agent "${r.agent}" publishes no A2A endpoint; add spec.a2a: { url } to it`);
    });
  }
  for (const a of set.agents.values()) {
    const c = a.spec.a2a?.credential;
    if (c && !set.credentials.has(c)) at('Agent', a, ['spec', 'a2a', 'credential'], unknownRef('Credential', c, set.credentials));
  }
  for (const m of set.mcpServers.values()) {
    const s = m.spec;
    if (s.credential && !set.credentials.has(s.credential)) at('McpServer', m, ['spec', 'credential'], unknownRef('Credential', s.credential, set.credentials));
    if (s.transport === 'stdio' && !s.command) at('McpServer', m, ['spec', 'command'], 'stdio transport needs command');
    if (s.transport !== 'stdio' && !s.url) at('McpServer', m, ['spec', 'url'], `${s.transport} transport needs url`);
    if (m.name.includes('__')) at('McpServer', m, ['metadata', 'name'], 'must not contain "__" (used to join server and tool names)');
    knownGuardrails('McpServer', m, s.guardrails);
  }
  for (const h of set.httpTools.values()) {
    if (h.spec.credential && !set.credentials.has(h.spec.credential)) at('HttpTool', h, ['spec', 'credential'], unknownRef('Credential', h.spec.credential, set.credentials));
    knownGuardrails('HttpTool', h, h.spec.guardrails);
  }
  checkBudgetsCanBind(set, at);
  for (const p of set.providers.values()) {
    if (Array.isArray(p.spec.models)) p.spec.models.forEach((m, i) => {
      if (m.includes('*')) at('Provider', p, ['spec', 'models', i], 'list model names, or set models: "*" for any model (no globs in a list)');
    });
  }
  for (const g of set.guardrails.values()) {
    (g.spec.regex ?? []).forEach((r, i) => {
      try { compileLinearRegex(r); } catch (e) { at('Guardrail', g, ['spec', 'regex', i], (e as Error).message); }
    });
  }
}

/**
 * A reference to a document the config lacks, said the same way everywhere: the nearest name
 * (a typo), else the names there are, else which kind of document to add.
 */
function unknownRef(kind: Kind, name: string, defined: Map<string, unknown>, what: string = kind): string {
  const names = [...defined.keys()];
  const near = nearest(name, names);
  const hint = near ? `did you mean ${near}?` : names.length > 0 ? `defined: ${names.slice(0, 20).join(', ')}${names.length > 20 ? ', ...' : ''}` : `there is none: add a kind: ${kind} document`;
  return `unknown ${what} "${name}" (${hint})`;
}

/**
 * Why a models.allow/deny entry cannot name anything: 'unknown', a message, or null when it is
 * '*', a Model route, a catalog model, or a glob matching a route or reaching a provider catalog.
 */
function modelNameProblem(set: ConfigSet, catalog: Catalog, name: string): string | null {
  if (name === '*' || set.models.has(name)) return null;
  if (hasWildcard(name)) {
    const match = stringMatcher(name, true);
    if (catalogProviderOf(catalog, name) || [...set.models.keys()].some(match)) return null;
    return `"${name}" matches no Model route and no provider catalog (a glob's provider part must be literal, e.g. "openai/*", and that Provider needs spec.models)`;
  }
  const hit = catalogLookup(catalog, name);
  if (hit?.ok) return null;
  if (hit) return `model "${hit.model}" is not in the catalog of Provider "${hit.provider}" (spec.models: ${hit.listed.join(', ')})`;
  return 'unknown';
}

/** Budgeted policies that allow each route (a route denied by the same policy is not allowed by it). */
function budgetedPoliciesByRoute(set: ConfigSet): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const pol of set.policies.values()) {
    const m = pol.spec.models;
    if (m?.budget?.daily_usd === undefined && m?.budget?.monthly_usd === undefined) continue;
    const deny = (m.deny ?? []).map((d) => stringMatcher(d, true));
    const allow = (m.allow ?? []).map((a) => stringMatcher(a, true));
    for (const route of set.models.keys()) {
      if (!allow.some((f) => f(route)) || deny.some((f) => f(route))) continue;
      out.set(route, [...(out.get(route) ?? []), pol.name]);
    }
  }
  return out;
}

/**
 * A budget must be able to bind: every target of a route a budgeted policy allows needs a price
 * (its own, the route's, or a built-in one), or the explicit `pricing: { free: true }`.
 * Otherwise its calls would cost $0 against the budget, silently.
 */
function checkBudgetsCanBind(set: ConfigSet, at: At): void {
  for (const [route, policies] of budgetedPoliciesByRoute(set)) {
    const m = set.models.get(route)!;
    m.spec.targets.forEach((t, i) => {
      const provider = set.providers.get(t.provider);
      if (!provider || resolvePricing(provider.spec.type, t.model, t.pricing, m.spec.pricing)) return;
      const who = policies.map((p) => `"${p}"`).join(', ');
      at('Model', m, ['spec', 'targets', i], `no price for model "${t.model}" (provider ${t.provider}), but AgentPolicy ${who} puts a budget on route "${route}": its calls would never count against that budget. Add pricing: { input_per_1m, output_per_1m } (USD) to this target or the route, or pricing: { free: true } to let it run unbilled`);
    });
  }
}
