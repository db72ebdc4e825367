// `aam import litellm`: a LiteLLM proxy config (model_list, router_settings, litellm_settings,
// general_settings) as aam documents. model_name groups become Model routes (several deployments:
// loadbalance by weight, or latency/cost when the routing strategy says so), `provider/model`
// prefixes become Providers, `os.environ/X` keys become Credentials reading X (a literal key is
// never copied), fallbacks append the fallback routes' targets, retries/timeouts/cooldowns map to
// retries, timeouts and breaker. Everything else is listed as unmapped with its path.
import {
  COMPATIBLE_BASE, ImportBuilder, envRef, num, safeName, str, type ImportResult, type Obj,
} from './import-common.ts';
import { resolvePricing } from './pricing.ts';
import type { PricingSpec, ProviderSpec } from './schema.ts';
import { isObj } from '../lib/json.ts';

type ProviderType = ProviderSpec['type'];

const STRATEGY: Readonly<Record<string, string>> = {
  'simple-shuffle': 'loadbalance',
  'latency-based-routing': 'latency',
  'cost-based-routing': 'cost',
};

/** Keys of litellm_params this importer reads (the rest is reported). */
const READ_PARAMS = new Set([
  'model', 'api_key', 'api_base', 'base_url', 'api_version', 'weight', 'timeout', 'stream_timeout', 'input_cost_per_token', 'output_cost_per_token',
  'aws_region_name', 'aws_access_key_id', 'aws_secret_access_key', 'vertex_project', 'vertex_location', 'vertex_credentials',
]);

interface Deployment { route: string; target: Obj; path: string }

/** The secret source of a deployment: an env reference, or a placeholder env when the key was literal. */
function credentialOf(b: ImportBuilder, p: Obj, path: string, fallbackEnv: string): string | undefined {
  const raw = p.api_key;
  if (raw === undefined) return undefined;
  const env = envRef(raw);
  if (env !== undefined) return b.credential({ env });
  b.note(`${path}.api_key`, `a literal key is not copied into aam's config; the Credential reads ${fallbackEnv}: export it there, or make it { stored: true } and run \`aam credentials set\``);
  return b.credential({ env: fallbackEnv });
}

/** Provider and upstream model for one `litellm_params`, or undefined (reported) when it cannot map. */
function providerOf(b: ImportBuilder, p: Obj, path: string): { provider: string; model: string } | undefined {
  const full = str(p.model);
  if (full === undefined) { b.note(`${path}.model`, 'missing: a deployment needs litellm_params.model'); return undefined; }
  const slash = full.indexOf('/');
  const prefix = slash > 0 ? full.slice(0, slash) : 'openai';
  const model = slash > 0 ? full.slice(slash + 1) : full;
  const base = str(p.api_base) ?? str(p.base_url);
  // A literal key's stand-in env var is named after the endpoint: a self-hosted server must never
  // be handed the real OpenAI key because both were written "openai/...".
  let host = prefix;
  try { if (base) host = new URL(base).hostname.split('.').slice(0, 2).join('_'); } catch { /* keep the prefix */ }
  const envName = `${host.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_API_KEY`;
  const spec: Obj = {};
  if (prefix === 'openai' || prefix === 'text-completion-openai') {
    spec.type = base ? 'openai-compatible' : 'openai';
    if (base) spec.baseUrl = base;
  } else if (prefix === 'anthropic' || prefix === 'gemini') {
    spec.type = prefix;
    if (base) spec.baseUrl = base;
  } else if (prefix === 'azure') {
    if (!base) { b.note(`${path}.api_base`, 'azure deployments need api_base (https://<resource>.openai.azure.com)'); return undefined; }
    Object.assign(spec, { type: 'azure-openai', baseUrl: base, azure: { apiVersion: str(p.api_version) ?? '2024-10-21' } });
  } else if (prefix === 'bedrock') {
    const region = str(p.aws_region_name);
    if (!region || envRef(region)) { b.note(`${path}.aws_region_name`, 'set a literal AWS region; the Provider was written for us-east-1'); }
    Object.assign(spec, { type: 'bedrock', bedrock: { region: region && !envRef(region) ? region : 'us-east-1' } });
    if (base) spec.baseUrl = base;
    const secretEnv = envRef(p.aws_secret_access_key) ?? 'AWS_SECRET_ACCESS_KEY';
    const keyId = str(p.aws_access_key_id);
    const literalId = keyId !== undefined && envRef(keyId) === undefined && /^[A-Z0-9]{16,128}$/.test(keyId) ? keyId : undefined;
    const idEnv = literalId ? undefined : envRef(keyId) ?? (keyId === undefined ? 'AWS_ACCESS_KEY_ID' : undefined);
    if (!literalId && !idEnv) b.note(`${path}.aws_access_key_id`, `aam needs the access key id in the Credential (aws.access_key_id or aws.access_key_id_env): replace the placeholder, or store the JSON of \`aws configure export-credentials\` as the secret`);
    if (p.aws_secret_access_key !== undefined && envRef(p.aws_secret_access_key) === undefined) b.note(`${path}.aws_secret_access_key`, `a literal secret is not copied; the Credential reads ${secretEnv}`);
    spec.credential = b.credential({ env: secretEnv, extra: { aws: idEnv ? { access_key_id_env: idEnv } : { access_key_id: literalId ?? 'AKIAXXXXXXXXXXXXXXXX' } } });
    return { provider: b.provider({ base: 'bedrock', spec }), model };
  } else if (prefix === 'vertex_ai') {
    if (!model.startsWith('gemini')) { b.note(`${path}.model`, `"${full}": aam serves Gemini models on Vertex; use the publisher's own API for others`); return undefined; }
    const project = str(p.vertex_project);
    const region = str(p.vertex_location) ?? 'us-central1';
    if (!project || envRef(project)) { b.note(`${path}.vertex_project`, 'set the literal Google Cloud project; "my-project" was written'); }
    Object.assign(spec, { type: 'vertex', vertex: { project: project && !envRef(project) ? project : 'my-project', region } });
    const file = str(p.vertex_credentials);
    const fileEnv = envRef(file);
    if (!file) b.note(`${path}.vertex_credentials`, 'missing: aam reads the service account JSON key from a file or env var; the Credential reads GOOGLE_SERVICE_ACCOUNT_JSON');
    spec.credential = b.credential({ ...(file && !fileEnv ? { file } : { env: fileEnv ?? 'GOOGLE_SERVICE_ACCOUNT_JSON' }), extra: { kind: 'google_service_account' } });
    return { provider: b.provider({ base: 'vertex', spec }), model };
  } else if (COMPATIBLE_BASE[prefix] !== undefined || base) {
    Object.assign(spec, { type: 'openai-compatible', baseUrl: base ?? COMPATIBLE_BASE[prefix] });
  } else {
    b.note(`${path}.model`, `provider "${prefix}" has no aam equivalent (types: openai, openai-compatible with api_base, anthropic, gemini, azure, bedrock, vertex_ai)`);
    return undefined;
  }
  const cred = credentialOf(b, p, path, envName);
  if (cred !== undefined) spec.credential = cred;
  return { provider: b.provider({ base: prefix === 'azure' ? 'azure' : prefix.replace(/_/g, '-'), spec }), model };
}

function timeoutsOf(p: Obj, router: Obj): Obj | undefined {
  const total = num(p.timeout) ?? num(router.timeout);
  const first = num(p.stream_timeout);
  const t: Obj = {};
  if (total !== undefined && total > 0) t.total_ms = Math.round(total * 1000);
  if (first !== undefined && first > 0) t.first_byte_ms = Math.round(first * 1000);
  return Object.keys(t).length > 0 ? t : undefined;
}

function deployments(b: ImportBuilder, list: unknown[], router: Obj): Deployment[] {
  const out: Deployment[] = [];
  list.forEach((entry, i) => {
    const path = `model_list[${i}]`;
    if (!isObj(entry)) { b.note(path, 'not a mapping'); return; }
    const route = str(entry.model_name);
    const p = entry.litellm_params;
    if (route === undefined || !isObj(p)) { b.note(path, 'needs model_name and litellm_params'); return; }
    const pp = `${path}.litellm_params`;
    const prov = providerOf(b, p, pp);
    if (!prov) return;
    if (route.includes('*')) {
      // A wildcard route ("openai/*") is a provider catalog in aam: clients send provider/model.
      const spec = b.providerSpec(prov.provider);
      if (spec) spec.models = '*';
      b.note(`${path}.model_name`, `wildcard "${route}": Provider "${prov.provider}" now exposes its catalog (models: "*"); clients send "${prov.provider}/<model>", and policies allow "${prov.provider}/*"`);
      return;
    }
    const target: Obj = { provider: prov.provider, model: prov.model };
    const w = num(p.weight);
    if (w !== undefined) target.weight = w;
    const t = timeoutsOf(p, router);
    if (t) target.timeouts = t;
    const inCost = num(p.input_cost_per_token) ?? num(isObj(entry.model_info) ? entry.model_info.input_cost_per_token : undefined);
    const outCost = num(p.output_cost_per_token) ?? num(isObj(entry.model_info) ? entry.model_info.output_cost_per_token : undefined);
    if (inCost !== undefined && outCost !== undefined) target.pricing = { input_per_1m: +(inCost * 1e6).toPrecision(12), output_per_1m: +(outCost * 1e6).toPrecision(12) };
    for (const k of Object.keys(p)) {
      if (READ_PARAMS.has(k)) continue;
      const why = k === 'rpm' || k === 'tpm' ? 'per-deployment upstream limits have no aam equivalent (aam limits callers: AgentPolicy models.rate)'
        : k === 'max_retries' ? 'per-deployment retries: aam retries per route (retries.attempts)'
          : 'not mapped';
      b.note(`${pp}.${k}`, why);
    }
    out.push({ route: safeName(route, true), target, path });
  });
  return out;
}

/** Fallback lists: [{ "gpt-4o": ["claude", "gemini"] }, ...] -> route -> fallback routes. */
function fallbacksOf(b: ImportBuilder, v: unknown, path: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (v === undefined) return out;
  if (!Array.isArray(v)) { b.note(path, 'expected a list of { route: [fallback routes] }'); return out; }
  v.forEach((f, i) => {
    if (!isObj(f)) { b.note(`${path}[${i}]`, 'not a mapping'); return; }
    for (const [from, to] of Object.entries(f)) {
      if (!Array.isArray(to)) { b.note(`${path}[${i}].${from}`, 'expected a list of route names'); continue; }
      out.set(safeName(from, true), to.filter((x): x is string => typeof x === 'string').map((x) => safeName(x, true)));
    }
  });
  return out;
}

export function importLitellm(cfg: unknown): ImportResult {
  const b = new ImportBuilder();
  if (!isObj(cfg)) { b.note('(root)', 'not a LiteLLM config (expected a mapping with model_list)'); return b.result(); }
  const router = isObj(cfg.router_settings) ? cfg.router_settings : {};
  const settings = isObj(cfg.litellm_settings) ? cfg.litellm_settings : {};
  const list = Array.isArray(cfg.model_list) ? cfg.model_list : [];
  if (list.length === 0) b.note('model_list', 'missing or empty: nothing to import');
  const deps = deployments(b, list, router);

  const groups = new Map<string, Deployment[]>();
  for (const d of deps) groups.set(d.route, [...(groups.get(d.route) ?? []), d]);
  const strategyName = str(router.routing_strategy);
  const strategy = strategyName ? STRATEGY[strategyName] : undefined;
  if (strategyName && !strategy) b.note('router_settings.routing_strategy', `"${strategyName}" has no aam equivalent; groups of deployments use loadbalance (weighted)`);
  const fallbacks = fallbacksOf(b, router.fallbacks ?? settings.fallbacks, router.fallbacks !== undefined ? 'router_settings.fallbacks' : 'litellm_settings.fallbacks');
  const retries = num(router.num_retries) ?? num(settings.num_retries);
  const failures = num(router.allowed_fails);
  const cooldown = num(router.cooldown_time);
  const cache = settings.cache === true;
  const cacheParams = isObj(settings.cache_params) ? settings.cache_params : {};
  const ttl = num(cacheParams.ttl);
  if (cache && String(cacheParams.type ?? '').includes('semantic')) b.note('litellm_settings.cache_params.type', 'semantic caching needs an embeddings route in aam (cache.mode: semantic, embedding_model); imported as exact');
  if (cache) b.note('litellm_settings.cache', 'LiteLLM shares one cache among all keys; aam caches per agent (set cache.scope: global to share answers across agents)');

  for (const [route, group] of groups) {
    const targets = group.map((d) => d.target);
    const spec: Obj = { targets };
    if (group.length > 1) spec.strategy = strategy ?? 'loadbalance';
    else if (strategy === 'latency' || strategy === 'cost') spec.strategy = strategy;
    for (const fb of fallbacks.get(route) ?? []) {
      const other = groups.get(fb);
      if (!other) { b.note(`fallbacks.${route}`, `fallback "${fb}" is not a model_name in model_list`); continue; }
      // Fallback targets come after the route's own; weight 0 keeps them out of the weighted first pick.
      for (const d of other) targets.push(spec.strategy === 'loadbalance' ? { ...d.target, weight: 0 } : { ...d.target });
    }
    if (retries !== undefined) spec.retries = { attempts: Math.min(10, Math.max(0, Math.round(retries))) };
    if (failures !== undefined || cooldown !== undefined) {
      const br: Obj = {};
      if (failures !== undefined) br.failures = Math.max(1, Math.round(failures));
      if (cooldown !== undefined) br.cooldown_ms = Math.max(1, Math.round(cooldown * 1000));
      spec.breaker = br;
    }
    if (cache) spec.cache = { mode: 'exact', ...(ttl !== undefined ? { ttl_seconds: ttl } : {}), scope: 'agent' };
    b.model(route, spec);
  }
  for (const from of fallbacks.keys()) if (!groups.has(from)) b.note(`fallbacks.${from}`, 'not a model_name in model_list');

  defaultPolicy(b, settings);
  for (const [k, v] of Object.entries(router)) {
    if (['routing_strategy', 'fallbacks', 'num_retries', 'allowed_fails', 'cooldown_time', 'timeout'].includes(k)) continue;
    b.note(`router_settings.${k}`, k.endsWith('fallbacks') ? 'only plain fallbacks map (aam falls back on errors, not on context window or content policy)' : v === undefined ? 'empty' : 'not mapped');
  }
  for (const k of Object.keys(settings)) {
    if (['fallbacks', 'num_retries', 'cache', 'cache_params', 'max_budget', 'budget_duration', 'default_key_generate_params'].includes(k)) continue;
    b.note(`litellm_settings.${k}`, k.includes('callback') ? 'aam records every call in its own audit trail (export: JSONL, OCSF, webhook, OTLP)' : 'not mapped');
  }
  if (isObj(cfg.general_settings)) {
    for (const k of Object.keys(cfg.general_settings)) {
      b.note(`general_settings.${k}`, k === 'master_key' ? 'not imported: agents get their own virtual keys (aam keys create --agent NAME); admins use AAM_ADMIN_TOKEN or OIDC'
        : k === 'database_url' ? 'not imported: aam keeps its state in the data dir, or AAM_DATABASE_URL for a fleet' : 'not mapped');
    }
  }
  for (const k of Object.keys(cfg)) {
    if (!['model_list', 'router_settings', 'litellm_settings', 'general_settings'].includes(k)) b.note(k, 'not mapped');
  }
  return b.result();
}

/** Budget periods aam has: a day or a month. */
function budgetKey(duration: string | undefined): 'daily_usd' | 'monthly_usd' | undefined {
  if (duration === undefined) return 'monthly_usd';
  if (/^(1d|24h)$/.test(duration)) return 'daily_usd';
  if (/^(30d|1mo|1m)$/.test(duration)) return 'monthly_usd';
  return undefined;
}

/**
 * Proxy-wide budget and default key limits become one AgentPolicy over every imported route, for
 * every workload (LiteLLM lets any valid key use every model): a per-agent budget and rate.
 */
function defaultPolicy(b: ImportBuilder, settings: Obj): void {
  const models: Obj = {};
  const maxBudget = num(settings.max_budget);
  if (maxBudget !== undefined) {
    const key = budgetKey(str(settings.budget_duration));
    if (key) {
      models.budget = { [key]: maxBudget };
      b.note('litellm_settings.max_budget', `LiteLLM's budget covers the whole proxy; aam budgets are per agent (or per team with scope: team): imported as ${key} ${maxBudget} per agent in AgentPolicy "litellm-default"`);
    } else b.note('litellm_settings.budget_duration', `"${String(settings.budget_duration)}": aam budgets are daily or monthly`);
  }
  const keyDefaults = isObj(settings.default_key_generate_params) ? settings.default_key_generate_params : {};
  const rpm = num(keyDefaults.rpm_limit);
  const tpm = num(keyDefaults.tpm_limit);
  if (rpm !== undefined || tpm !== undefined) models.rate = { ...(rpm !== undefined ? { rpm: Math.round(rpm) } : {}), ...(tpm !== undefined ? { tpm: Math.round(tpm) } : {}) };
  for (const k of Object.keys(keyDefaults)) if (k !== 'rpm_limit' && k !== 'tpm_limit') b.note(`litellm_settings.default_key_generate_params.${k}`, 'not mapped');
  if (models.budget === undefined && models.rate === undefined) return;
  // A budget must bind: a route with a target aam cannot price stays out (aam refuses to load otherwise).
  const routes = models.budget === undefined ? b.modelNames() : b.modelNames().filter((r) => {
    const unpriced = b.modelSpec(r)?.targets.find((t) => !resolvePricing(String(b.providerSpec(String(t.provider))?.type) as ProviderType, String(t.model), t.pricing as PricingSpec | undefined, undefined));
    if (unpriced) b.note(`AgentPolicy litellm-default.models.allow`, `route "${r}" left out: no price known for ${String(unpriced.model)}, so the budget could not count it (add input_cost_per_token / output_cost_per_token)`);
    return !unpriced;
  });
  if (routes.length === 0) return;
  b.policy('litellm-default', { identity: { workload: 'spiffe://**' }, models: { allow: routes, ...models } });
  b.note('AgentPolicy litellm-default', 'applies to every workload (spiffe://**): narrow its identity to your agents');
}
