// `aam import portkey`: a Portkey gateway config (strategy, targets, retry, request_timeout,
// cache) as aam documents: one Model route (named by the caller) whose targets are the config's
// targets in order, fallback or loadbalance by weight. Nested strategies are flattened (aam routes
// are one level); providers and keys become Providers and Credentials (literal keys are never
// copied; virtual keys become stored Credentials to fill with `aam credentials set`).
import {
  COMPATIBLE_BASE, ImportBuilder, envRef, num, safeName, str, type ImportResult, type Obj,
} from './import-common.ts';
import { isObj } from '../lib/json.ts';

const TARGET_KEYS = new Set([
  'provider', 'api_key', 'virtual_key', 'override_params', 'weight', 'custom_host', 'resource_name', 'deployment_id', 'api_version',
  'aws_region', 'aws_access_key_id', 'aws_secret_access_key', 'vertex_project_id', 'vertex_region', 'vertex_service_account_json',
  'strategy', 'targets', 'retry', 'request_timeout', 'cache', 'name',
  'input_guardrails', 'output_guardrails', 'before_request_hooks', 'after_request_hooks',
]);

function secretOf(b: ImportBuilder, t: Obj, path: string, providerName: string): string | undefined {
  const vk = str(t.virtual_key);
  if (vk !== undefined) {
    const name = safeName(`portkey-${vk}`);
    b.note(`${path}.virtual_key`, `Portkey keeps the key behind virtual key "${vk}"; aam stores it in Credential "${name}": run \`aam credentials set ${name}\` with the provider key on stdin`);
    return b.credential({ stored: name });
  }
  if (t.api_key === undefined) return undefined;
  const env = envRef(t.api_key) ?? `${providerName.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_API_KEY`;
  if (envRef(t.api_key) === undefined) b.note(`${path}.api_key`, `a literal key is not copied into aam's config; the Credential reads ${env}: export it there, or use { stored: true } and \`aam credentials set\``);
  return b.credential({ env });
}

function providerOf(b: ImportBuilder, t: Obj, path: string): { provider: string; model: string } | undefined {
  const kind = str(t.provider);
  const model = str(isObj(t.override_params) ? t.override_params.model : undefined);
  if (kind === undefined) { b.note(`${path}.provider`, 'missing: aam needs the provider of each target (a virtual key alone does not say which)'); return undefined; }
  const host = str(t.custom_host);
  const spec: Obj = {};
  if (kind === 'openai' || kind === 'anthropic' || kind === 'google') {
    spec.type = kind === 'google' ? 'gemini' : kind;
    if (host) spec.baseUrl = host;
  } else if (kind === 'azure-openai') {
    const resource = str(t.resource_name);
    if (!resource && !host) { b.note(`${path}.resource_name`, 'azure-openai needs resource_name (or custom_host)'); return undefined; }
    Object.assign(spec, { type: 'azure-openai', baseUrl: host ?? `https://${resource}.openai.azure.com`, azure: { apiVersion: str(t.api_version) ?? '2024-10-21', ...(str(t.deployment_id) ? { deployment: str(t.deployment_id) } : {}) } });
  } else if (kind === 'bedrock') {
    const region = str(t.aws_region) ?? 'us-east-1';
    Object.assign(spec, { type: 'bedrock', bedrock: { region } });
    if (host) spec.baseUrl = host;
    const keyId = str(t.aws_access_key_id);
    const literal = keyId !== undefined && /^[A-Z0-9]{16,128}$/.test(keyId) ? keyId : undefined;
    const idEnv = literal ? undefined : envRef(keyId) ?? (keyId === undefined ? 'AWS_ACCESS_KEY_ID' : undefined);
    if (!literal && !idEnv) b.note(`${path}.aws_access_key_id`, 'set aws.access_key_id (or aws.access_key_id_env) in the Credential (placeholder written)');
    if (t.aws_secret_access_key !== undefined && envRef(t.aws_secret_access_key) === undefined) b.note(`${path}.aws_secret_access_key`, 'a literal secret is not copied; the Credential reads AWS_SECRET_ACCESS_KEY');
    spec.credential = b.credential({ env: envRef(t.aws_secret_access_key) ?? 'AWS_SECRET_ACCESS_KEY', extra: { aws: idEnv ? { access_key_id_env: idEnv } : { access_key_id: literal ?? 'AKIAXXXXXXXXXXXXXXXX' } } });
    return model ? { provider: b.provider({ base: 'bedrock', spec }), model } : missingModel(b, path);
  } else if (kind === 'vertex-ai') {
    const project = str(t.vertex_project_id);
    if (!project) b.note(`${path}.vertex_project_id`, 'missing: "my-project" was written');
    Object.assign(spec, { type: 'vertex', vertex: { project: project ?? 'my-project', region: str(t.vertex_region) ?? 'us-central1' } });
    if (t.vertex_service_account_json !== undefined) b.note(`${path}.vertex_service_account_json`, 'an inline service-account key is not copied; the Credential reads GOOGLE_SERVICE_ACCOUNT_JSON');
    spec.credential = b.credential({ env: 'GOOGLE_SERVICE_ACCOUNT_JSON', extra: { kind: 'google_service_account' } });
    return model ? { provider: b.provider({ base: 'vertex', spec }), model } : missingModel(b, path);
  } else if (COMPATIBLE_BASE[kind] !== undefined || host) {
    Object.assign(spec, { type: 'openai-compatible', baseUrl: host ?? COMPATIBLE_BASE[kind] });
  } else {
    b.note(`${path}.provider`, `"${kind}" has no aam equivalent (openai, anthropic, google, azure-openai, bedrock, vertex-ai, OpenAI-compatible services or custom_host)`);
    return undefined;
  }
  const cred = secretOf(b, t, path, kind);
  if (cred !== undefined) spec.credential = cred;
  if (!model) return missingModel(b, path);
  return { provider: b.provider({ base: kind, spec }), model };
}

function missingModel(b: ImportBuilder, path: string): undefined {
  b.note(`${path}.override_params.model`, 'missing: aam routes need the upstream model of each target');
  return undefined;
}

/** Targets of a (possibly nested) strategy block, flattened in order. */
function collect(b: ImportBuilder, node: Obj, path: string, out: Obj[], weightScale: number): void {
  const targets = Array.isArray(node.targets) ? node.targets : [node];
  const mode = str(isObj(node.strategy) ? node.strategy.mode : undefined);
  targets.forEach((t, i) => {
    const tp = Array.isArray(node.targets) ? `${path}.targets[${i}]` : path;
    if (!isObj(t)) { b.note(tp, 'not an object'); return; }
    const w = num(t.weight);
    if (Array.isArray(t.targets)) {
      b.note(`${tp}.strategy`, `nested strategy (${str(isObj(t.strategy) ? t.strategy.mode : undefined) ?? 'unnamed'}) flattened into the parent's targets: aam routes are one level`);
      collect(b, t, tp, out, weightScale * (w ?? 1));
      return;
    }
    const prov = providerOf(b, t, tp);
    if (!prov) return;
    const target: Obj = { provider: prov.provider, model: prov.model };
    if (mode === 'loadbalance' || w !== undefined) target.weight = +((w ?? 1) * weightScale).toPrecision(12);
    const timeout = num(t.request_timeout);
    if (timeout !== undefined) target.timeouts = { total_ms: Math.round(timeout) };
    for (const k of Object.keys(t)) {
      if (!TARGET_KEYS.has(k)) b.note(`${tp}.${k}`, 'not mapped');
      else if (k === 'override_params' && isObj(t.override_params)) {
        for (const p of Object.keys(t.override_params)) if (p !== 'model') b.note(`${tp}.override_params.${p}`, 'aam does not override request parameters per target');
      }
    }
    if (t !== node) for (const k of ['retry', 'cache'] as const) if (t[k] !== undefined) b.note(`${tp}.${k}`, `per-target ${k}: aam sets it per route (top level of the config)`);
    out.push(target);
  });
}

/** Portkey accepts camelCase keys too (overrideParams, virtualKey): read everything as snake_case. */
function snakeKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(snakeKeys);
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = snakeKeys(x);
  return out;
}

export function importPortkey(raw: unknown, routeName: string): ImportResult {
  const cfg = snakeKeys(raw);
  const b = new ImportBuilder();
  if (!isObj(cfg)) { b.note('(root)', 'not a Portkey config (expected a JSON object)'); return b.result(); }
  const strategy = isObj(cfg.strategy) ? cfg.strategy : {};
  const mode = str(strategy.mode) ?? (Array.isArray(cfg.targets) ? 'fallback' : 'single');
  const targets: Obj[] = [];
  collect(b, cfg, '$', targets, 1);
  const spec: Obj = { targets };
  if (mode === 'loadbalance') spec.strategy = 'loadbalance';
  else if (mode === 'conditional') b.note('$.strategy.mode', 'conditional routing (on metadata or params) has no aam equivalent; targets are tried in order (fallback). Use one route per condition and policies to choose');
  if (strategy.on_status_codes !== undefined) b.note('$.strategy.on_status_codes', 'aam falls back on 408/409/425/429/5xx after retries and on 401/403/404 at once; other statuses are the request\'s fault and final');
  for (const k of Object.keys(strategy)) if (!['mode', 'on_status_codes'].includes(k)) b.note(`$.strategy.${k}`, 'not mapped');
  const retry = isObj(cfg.retry) ? cfg.retry : undefined;
  if (retry) {
    const n = num(retry.attempts);
    if (n !== undefined) spec.retries = { attempts: Math.min(10, Math.max(0, Math.round(n))) };
    if (retry.on_status_codes !== undefined) b.note('$.retry.on_status_codes', 'aam retries 408/409/425/429/5xx (honouring retry-after); the list is not configurable');
  }
  const timeout = num(cfg.request_timeout);
  if (timeout !== undefined) for (const t of targets) t.timeouts ??= { total_ms: Math.round(timeout) };
  const cache = isObj(cfg.cache) ? cfg.cache : undefined;
  if (cache) {
    const cm = str(cache.mode);
    const ttl = num(cache.max_age);
    if (cm === 'semantic') b.note('$.cache.mode', 'semantic caching needs an embeddings route (cache.embedding_model); imported as exact');
    spec.cache = { mode: 'exact', ...(ttl !== undefined ? { ttl_seconds: ttl } : {}) };
  }
  for (const k of ['input_guardrails', 'output_guardrails', 'before_request_hooks', 'after_request_hooks']) {
    if (cfg[k] !== undefined) b.note(`$.${k}`, 'Portkey guardrails are not imported: define aam Guardrail documents (detect, regex, keywords, webhook) and attach them to the route or policy');
  }
  if (targets.length === 0) b.note('$', 'no target could be imported, so no Model route was written');
  else b.model(safeName(routeName, true), spec);
  return b.result();
}
