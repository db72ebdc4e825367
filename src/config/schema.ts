// Resource schemas: the one place that says what a valid config document is.
// Strict objects everywhere so unknown fields are load errors, not silently ignored.
import { z } from 'zod';
import { nearest } from '../lib/nearest.ts';

export const API_VERSION = 'access.envisionai.dev/v1';

const NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/i;
const NAME_RULE = 'must be 1-128 letters, digits, ".", "_" or "-"';
const name = z.string().regex(NAME_RE, NAME_RULE);
/** Model route names may also hold "/" between segments (`openai/gpt-4o`, as OpenRouter-style clients send). */
const ROUTE_NAME_RE = /^[a-z0-9]([a-z0-9._/-]{0,126}[a-z0-9])?$/i;
const routeName = z.string().regex(ROUTE_NAME_RE, `${NAME_RULE} (Model names may also contain "/")`).refine((s) => !s.includes('//'), 'must not contain "//"');
const spiffeId = z.string().regex(/^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$/, 'must be a SPIFFE ID like spiffe://trust-domain/path');
const positive = z.number().positive();
const labels = z.record(z.string(), z.string());

export const credentialKind = z.enum(['api_key', 'bearer', 'basic', 'header', 'query', 'oauth2_client_credentials', 'on_behalf_of', 'aws_sigv4', 'google_service_account']);

export const credentialSpec = z.strictObject({
  env: z.string().min(1).optional(),
  file: z.string().min(1).optional(),
  stored: z.literal(true).optional(),
  /** Inline value: for local demos only (aam warns at start and in `aam credentials list`). */
  value: z.string().min(1).optional(),
  /** How the secret is sent upstream; providers pick a sensible default when omitted. */
  inject: z.strictObject({
    header: z.string().min(1).optional(),
    prefix: z.string().optional(),
    query: z.string().min(1).optional(),
  }).optional(),
  /** What the secret is; inferred when omitted (oauth2, obo, aws, google, inject.query / inject.header name theirs, else api_key: see effectiveKind). */
  kind: credentialKind.optional(),
  /** basic: the user name (the source then holds only the password; without it the source holds "user:password"). */
  username: z.string().min(1).optional(),
  /** oauth2_client_credentials: the source holds the client secret. */
  oauth2: z.strictObject({
    token_url: z.url({ protocol: /^https?$/ }),
    client_id: z.string().min(1),
    scope: z.string().optional(),
    audience: z.string().optional(),
    auth_method: z.enum(['client_secret_basic', 'client_secret_post']).optional(),
    timeout_ms: positive.optional(),
  }).optional(),
  /** on_behalf_of: a short-lived JWT signed by aam with the agent's SPIFFE ID as subject; no source needed. */
  obo: z.strictObject({
    audience: z.string().min(1),
    ttl_seconds: z.number().int().min(10).max(3600).optional(),
    /** RFC 8693 exchange of the assertion for an upstream token; the source (if any) is the client secret. */
    token_exchange: z.strictObject({
      token_url: z.url({ protocol: /^https?$/ }),
      client_id: z.string().min(1).optional(),
      scope: z.string().optional(),
      audience: z.string().optional(),
    }).optional(),
  }).optional(),
  /** aws_sigv4: requests are signed (SigV4). The source holds the secret access key, or the JSON of `aws configure export-credentials` (with a session token). */
  aws: z.strictObject({
    access_key_id: z.string().regex(/^[A-Z0-9]{16,128}$/, 'must be an AWS access key id (AKIA... or ASIA...)').optional(),
    /** The environment variable holding the access key id (e.g. AWS_ACCESS_KEY_ID), instead of writing it here. */
    access_key_id_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name').optional(),
  }).refine((a) => !(a.access_key_id !== undefined && a.access_key_id_env !== undefined), 'set access_key_id or access_key_id_env, not both').optional(),
  /** google_service_account: the source holds the service account's JSON key; aam signs a JWT and exchanges it for an access token. */
  google: z.strictObject({
    token_url: z.url({ protocol: /^https?$/ }).optional(),
    scope: z.string().min(1).optional(),
  }).optional(),
}).refine((s) => {
  const n = [s.env, s.file, s.stored, s.value].filter((v) => v !== undefined).length;
  return n === 1 || (n === 0 && (s.kind === 'on_behalf_of' || (s.kind === undefined && s.obo !== undefined)));
}, {
  message: 'set exactly one source: env, file, stored or value (only kind on_behalf_of may have none)',
}).superRefine((s, ctx) => {
  const kind = s.kind ?? (s.oauth2 ? 'oauth2_client_credentials' : s.obo ? 'on_behalf_of' : s.aws ? 'aws_sigv4' : s.google ? 'google_service_account' : undefined);
  if (s.aws && kind !== 'aws_sigv4') ctx.addIssue({ code: 'custom', path: ['aws'], message: `aws only applies to kind aws_sigv4 (kind is ${kind})` });
  if (s.google && kind !== 'google_service_account') ctx.addIssue({ code: 'custom', path: ['google'], message: `google only applies to kind google_service_account (kind is ${kind})` });
  if (kind === 'oauth2_client_credentials' && !s.oauth2) ctx.addIssue({ code: 'custom', path: ['oauth2'], message: 'kind oauth2_client_credentials needs oauth2: { token_url, client_id }' });
  if (kind === 'on_behalf_of' && !s.obo) ctx.addIssue({ code: 'custom', path: ['obo'], message: 'kind on_behalf_of needs obo: { audience }' });
  if (s.oauth2 && kind !== 'oauth2_client_credentials') ctx.addIssue({ code: 'custom', path: ['oauth2'], message: `oauth2 only applies to kind oauth2_client_credentials (kind is ${kind})` });
  if (s.obo && kind !== 'on_behalf_of') ctx.addIssue({ code: 'custom', path: ['obo'], message: `obo only applies to kind on_behalf_of (kind is ${kind})` });
  if (kind === 'header' && !s.inject?.header) ctx.addIssue({ code: 'custom', path: ['inject', 'header'], message: 'kind header needs inject.header (the header name)' });
  if (kind === 'query' && !s.inject?.query) ctx.addIssue({ code: 'custom', path: ['inject', 'query'], message: 'kind query needs inject.query (the parameter name)' });
  if (s.username && kind !== 'basic') ctx.addIssue({ code: 'custom', path: ['username'], message: 'username only applies to kind basic' });
});

export const providerType = z.enum(['openai', 'openai-compatible', 'anthropic', 'gemini', 'azure-openai', 'bedrock', 'vertex', 'demo']);

export const timeoutsSpec = z.strictObject({
  connect_ms: positive.optional(),
  first_byte_ms: positive.optional(),
  total_ms: positive.optional(),
});

export const providerSpec = z.strictObject({
  type: providerType,
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
  credential: name.optional(),
  /** If the credential's env var/file is missing, skip this provider instead of failing the load. */
  optional: z.boolean().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  timeouts: timeoutsSpec.optional(),
  azure: z.strictObject({ apiVersion: z.string().min(1), deployment: z.string().min(1).optional() }).optional(),
  /** bedrock: the AWS region requests are signed for (and served from, unless baseUrl says otherwise). */
  bedrock: z.strictObject({ region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'must be an AWS region like us-east-1') }).optional(),
  /** vertex: the Google Cloud project and region (or "global") of the Gemini models. */
  vertex: z.strictObject({ project: z.string().min(1), region: z.string().regex(/^(global|[a-z]+-[a-z]+\d+)$/, 'must be a Google Cloud region like europe-west4, or global') }).optional(),
  /** Catalog: "*" (any model) or the model names clients may reach as `<provider>/<model>` without a Model document. */
  models: z.union([z.literal('*'), z.array(z.string().min(1)).min(1)]).optional(),
  /** Where this provider serves from (e.g. eu); a target's own region wins. Policy `models.regions` routes by it. */
  region: z.string().min(1).optional(),
});

/** USD per 1M tokens, or `free: true`: the explicit opt-in for a route a budget cannot bill (e.g. a local model). */
export const pricingSpec = z.strictObject({
  input_per_1m: z.number().nonnegative().optional(),
  output_per_1m: z.number().nonnegative().optional(),
  cached_input_per_1m: z.number().nonnegative().optional(),
  cache_write_input_per_1m: z.number().nonnegative().optional(),
  cache_write_1h_input_per_1m: z.number().nonnegative().optional(),
  free: z.literal(true).optional(),
}).refine((p) => p.free
  ? p.input_per_1m === undefined && p.output_per_1m === undefined && p.cached_input_per_1m === undefined && p.cache_write_input_per_1m === undefined && p.cache_write_1h_input_per_1m === undefined
  : p.input_per_1m !== undefined && p.output_per_1m !== undefined, {
  message: 'set input_per_1m and output_per_1m (USD per 1M tokens), or only free: true',
});

export const targetSpec = z.strictObject({
  provider: name,
  model: z.string().min(1),
  weight: z.number().nonnegative().optional(),
  region: z.string().optional(),
  timeouts: timeoutsSpec.optional(),
  /** This target's price (wins over the route's pricing and the built-in table). */
  pricing: pricingSpec.optional(),
  /**
   * How this Claude target thinks when a client sends a reasoning effort: `budget` (a fixed
   * budget_tokens: Claude 3.7-4.5) or `adaptive` (4.6 and later). Unset: told by the model id.
   */
  thinking: z.enum(['budget', 'adaptive']).optional(),
});

export const cacheSpec = z.strictObject({
  mode: z.enum(['exact', 'semantic']),
  ttl_seconds: positive.optional(),
  scope: z.enum(['agent', 'team', 'global']).optional(),
  threshold: z.number().min(0).max(1).optional(),
  embedding_model: z.string().optional(),
});

export const modelSpec = z.strictObject({
  targets: z.array(targetSpec).min(1),
  /** fallback: config order; loadbalance: weighted first pick; latency: lowest recent time to first token; cost: cheapest for this request. */
  strategy: z.enum(['fallback', 'loadbalance', 'latency', 'cost']).optional(),
  pricing: pricingSpec.optional(),
  retries: z.strictObject({ attempts: z.number().int().min(0).max(10).optional(), backoff_ms: z.number().nonnegative().optional() }).optional(),
  /** Per-target circuit breaker: open after `failures` consecutive failures, for `cooldown_ms`, then one trial request. */
  breaker: z.strictObject({ failures: z.number().int().min(1).max(1000).optional(), cooldown_ms: z.number().int().min(1).optional() }).optional(),
  kind: z.enum(['chat', 'embeddings']).optional(),
  cache: cacheSpec.optional(),
  /** Guardrails applied to every call of this route, whoever the caller (in addition to the caller's policy guardrails). */
  guardrails: z.array(name).optional(),
});

export const agentSpec = z.strictObject({
  workload: spiffeId,
  owner: z.string().optional(),
  team: z.string().optional(),
  environment: z.string().optional(),
  deployment: z.string().optional(),
  labels: labels.optional(),
  description: z.string().optional(),
  /** The agent's A2A endpoint: callers reach it only through aam at /a2a/<agent>, with this credential injected. */
  a2a: z.strictObject({
    url: z.url({ protocol: /^https?$/ }), credential: name.optional(),
    /** idle_ms: the longest silence of the callee (before its answer's head, between two chunks); total_ms: a call's whole (default: 300000 for a request/response call, none for a stream). */
    timeouts: z.strictObject({ idle_ms: positive.optional(), total_ms: positive.optional() }).optional(),
  }).optional(),
});

/** agents: which A2A agents (and skills) this identity may call; deny wins, default deny. */
/** Calls a rule allows, per minute, per agent and per virtual key (429 / JSON-RPC -32029 above). */
const ruleRate = z.strictObject({ rpm: z.number().int().positive() });
/** Calls a rule allows per UTC day and/or month, per agent and per virtual key (429 budget_exceeded / -32029 above). */
const ruleBudget = z.strictObject({ calls_per_day: z.number().int().positive().optional(), calls_per_month: z.number().int().positive().optional() });

export const agentRuleSpec = z.strictObject({
  agent: z.string().min(1),
  skills: z.array(z.string().min(1)).optional(),
  deny: z.array(z.string().min(1)).optional(),
  when: z.string().min(1).optional(),
  rate: ruleRate.optional(),
  budget: ruleBudget.optional(),
});

const argConstraint = z.strictObject({
  enum: z.array(z.union([z.string(), z.number(), z.boolean()])).optional(),
  max: z.number().optional(),
  min: z.number().optional(),
  pattern: z.string().optional(),
  maxLength: z.number().int().nonnegative().optional(),
  required: z.boolean().optional(),
});

export const toolRuleSpec = z.strictObject({
  resource: z.string().min(1),
  actions: z.array(z.string().min(1)).optional(),
  deny: z.array(z.string().min(1)).optional(),
  when: z.string().min(1).optional(),
  args: z.record(z.string(), argConstraint).optional(),
  approval: z.enum(['required', 'none']).optional(),
  rate: ruleRate.optional(),
  budget: ruleBudget.optional(),
});

export const policySpec = z.strictObject({
  /** audit: shadow mode, decisions it would deny are recorded (would_deny), nothing is enforced. */
  mode: z.enum(['enforce', 'audit']).optional(),
  identity: z.strictObject({
    workload: z.string().min(1).optional(),
    team: z.string().optional(),
    environment: z.string().optional(),
    owner: z.string().optional(),
    deployment: z.string().optional(),
    labels: labels.optional(),
    agent: name.optional(),
  }).refine((s) => Object.values(s).some((v) => v !== undefined), { message: 'name at least one of workload, agent, team, environment, owner, deployment, labels' }),
  models: z.strictObject({
    allow: z.array(z.string().min(1)).optional(),
    deny: z.array(z.string().min(1)).optional(),
    budget: z.strictObject({
      daily_usd: positive.optional(),
      monthly_usd: positive.optional(),
      scope: z.enum(['agent', 'team']).optional(),
      alert_at: z.array(z.number().positive().max(100)).optional(),
    }).optional(),
    rate: z.strictObject({ rpm: z.number().int().positive().optional(), tpm: z.number().int().positive().optional() }).optional(),
    /** Only targets in these regions may serve this identity's calls (several policies: every list must hold). */
    regions: z.array(z.string().min(1)).min(1).optional(),
  }).optional(),
  tools: z.array(toolRuleSpec).optional(),
  agents: z.array(agentRuleSpec).optional(),
  /** Longest agent-to-agent chain a call of this identity may start or extend (the caller's call is hop 1; default 4). */
  max_delegation_depth: z.number().int().min(1).max(32).optional(),
  credentials: z.strictObject({
    injection: z.enum(['runtime']).optional(),
    expose_to_agent: z.literal(false, { error: 'must be false (aam never hands credentials to agents)' }).optional(),
    allow: z.array(name).optional(),
  }).optional(),
  audit: z.strictObject({
    record: z.array(z.enum(['identity', 'policy', 'credential', 'action', 'outcome', 'model', 'arguments'])).optional(),
  }).optional(),
  guardrails: z.array(name).optional(),
});

export const mcpServerSpec = z.strictObject({
  transport: z.enum(['streamable-http', 'sse', 'stdio']),
  url: z.url().optional(),
  command: z.string().optional(),
  args: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
  credential: name.optional(),
  tools: z.record(z.string(), z.strictObject({ resource: z.string().optional(), action: z.string().optional(), digest: z.string().optional(), mutating: z.boolean().optional() })).optional(),
  timeout_ms: positive.optional(),
  /**
   * How long the server may take to start and answer initialize (default: timeout_ms, at least
   * 120 s for stdio: `npx -y` may download a package first). A call waits at most timeout_ms for it.
   */
  start_timeout_ms: positive.optional(),
  /** Default resource for this server's tools, resources/* and prompts/* (default: the server name). */
  resource: z.string().min(1).optional(),
  /** Largest tool/resource/prompt result passed back to the agent, in bytes (default 1 MiB). */
  max_result_bytes: z.number().int().positive().optional(),
  /** Guardrails on every tool call of this server (arguments and results), whoever the caller, in addition to the caller's policy guardrails. */
  guardrails: z.array(name).optional(),
});

export const httpToolSpec = z.strictObject({
  baseUrl: z.url({ protocol: /^https?$/ }),
  credential: name.optional(),
  resource: z.string().min(1),
  actions: z.record(z.string(), z.strictObject({
    method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']),
    path: z.string().startsWith('/'),
    mutating: z.boolean().optional(),
  })),
  timeout_ms: positive.optional(),
  /** Guardrails on every call of this tool (arguments), whoever the caller, in addition to the caller's policy guardrails. */
  guardrails: z.array(name).optional(),
});

export const guardrailSpec = z.strictObject({
  on: z.array(z.enum(['input', 'output'])).min(1),
  detect: z.array(z.enum(['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'])).optional(),
  regex: z.array(z.string().refine((src) => { try { new RegExp(src); return true; } catch { return false; } }, 'must be a valid JavaScript regular expression')).optional(),
  keywords: z.array(z.string()).optional(),
  action: z.enum(['block', 'redact', 'flag']),
  max_chars: z.number().int().positive().optional(),
  /** Characters of one request or response scanned (default 1 MiB); beyond it the guardrail blocks, or flags with on_scan_limit: flag. */
  max_scan_chars: z.number().int().positive().optional(),
  on_scan_limit: z.enum(['block', 'flag']).optional(),
  webhook: z.strictObject({ url: z.url(), timeout_ms: positive.optional(), on_error: z.enum(['block', 'allow']).optional() }).optional(),
  /** JSON Schema (subset, see src/guardrails/json-schema.ts) that tool arguments / JSON payloads must satisfy. */
  json_schema: z.record(z.string(), z.unknown()).optional(),
});

/** A trusted SPIFFE trust domain (metadata.name, e.g. "prod"): where its JWT-SVID keys and X.509-SVID CAs come from. */
export const trustDomainSpec = z.strictObject({
  jwks_url: z.url({ protocol: /^https?$/ }).optional(),
  /** Path to a JWKS (or SPIFFE bundle) JSON file; relative paths are resolved against the config file's directory. */
  jwks_file: z.string().min(1).optional(),
  /** PEM file of the CAs that sign this domain's X.509-SVIDs (mTLS); only they can vouch for its SPIFFE IDs. Relative to the config file. */
  x509_bundle_file: z.string().min(1).optional(),
  refresh_seconds: positive.optional(),
  /** How long a kid a fetch of this domain's JWKS showed absent is refused without another fetch (default 60; 0: every time, at most once a second). */
  absent_kid_seconds: z.number().int().min(0, { message: 'must be 0 (look the kid up every time, at most once a second) or more seconds, to 3600 (default 60)' }).max(3600, { message: 'at most 3600: a kid refused longer keeps a partner\'s new key out for as long after a rotation; give 0 to 3600 (default 60)' }).optional(),
  /** Audience tokens from this trust domain must carry (default: the gateway's own audiences). */
  audience: z.string().min(1).optional(),
  /** Longest JWT-SVID accepted from this domain, exp - iat and exp - now (default 3600); iat is then required. */
  max_token_seconds: z.number().int().positive().max(30 * 24 * 3600).optional(),
}).refine((s) => s.jwks_url === undefined || s.jwks_file === undefined, {
  message: 'set at most one of jwks_url or jwks_file',
}).refine((s) => s.jwks_url !== undefined || s.jwks_file !== undefined || s.x509_bundle_file !== undefined, {
  message: 'set jwks_url or jwks_file (JWT-SVID keys), x509_bundle_file (X.509-SVID CAs), or both',
});

/** Console and admin API roles for people (viewer < approver < operator < admin), by email or ID-token group. */
export const roleBindingSpec = z.strictObject({
  role: z.enum(['viewer', 'approver', 'operator', 'admin']),
  subjects: z.array(z.union([
    z.strictObject({ email: z.string().min(3).includes('@', { message: 'must be an email address' }) }),
    z.strictObject({ group: z.string().min(1) }),
  ], { error: 'each subject is { email: ADDRESS } or { group: NAME } (groups come from the ID token\'s "groups" claim)' })).min(1),
});

export const specByKind = {
  Credential: credentialSpec,
  Provider: providerSpec,
  Model: modelSpec,
  Agent: agentSpec,
  AgentPolicy: policySpec,
  McpServer: mcpServerSpec,
  HttpTool: httpToolSpec,
  Guardrail: guardrailSpec,
  TrustDomain: trustDomainSpec,
  RoleBinding: roleBindingSpec,
} as const;

export type Kind = keyof typeof specByKind;
export const KINDS = Object.keys(specByKind) as Kind[];

/** `unknown field "stratgy" (did you mean strategy?)`, else the fields that exist there, so a typo is obvious. */
export function unknownFieldMessage(schema: z.ZodType, path: readonly PropertyKey[], keys: readonly string[]): string {
  const known = fieldsAt(schema, path);
  const what = `unknown field${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}`;
  if (known.length === 0) return what;
  const near = keys.map((k) => nearest(k, known)).filter((n): n is string => n !== null);
  return near.length === keys.length ? `${what} (did you mean ${near.join(', ')}?)` : `${what} (fields here: ${known.join(', ')})`;
}

/** The field names of the object schema at `path` inside `schema` ([] where the path is not a plain object). */
function fieldsAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let cur: z.ZodType | undefined = schema;
  const unwrap = () => { while (cur instanceof z.ZodOptional || cur instanceof z.ZodNullable) cur = cur.unwrap() as z.ZodType; };
  for (const k of path) {
    unwrap();
    if (cur instanceof z.ZodObject) cur = (cur.shape as Record<string, z.ZodType>)[String(k)];
    else if (cur instanceof z.ZodArray && typeof k === 'number') cur = cur.element as z.ZodType;
    else if (cur instanceof z.ZodRecord) cur = cur.def.valueType as z.ZodType;
    else return [];
  }
  unwrap();
  return cur instanceof z.ZodObject ? Object.keys(cur.shape) : [];
}

export const documentSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.enum(KINDS as [Kind, ...Kind[]]),
  metadata: z.strictObject({
    name: routeName,
    labels: labels.optional(),
    annotations: labels.optional(),
  }),
  spec: z.unknown(),
}).superRefine((d, ctx) => {
  if (d.kind !== 'Model' && !NAME_RE.test(d.metadata.name)) ctx.addIssue({ code: 'custom', path: ['metadata', 'name'], message: `${NAME_RULE} ("/" only in Model names)` });
});

export type CredentialSpec = z.infer<typeof credentialSpec>;
export type CredentialKind = z.infer<typeof credentialKind>;
export type ProviderSpec = z.infer<typeof providerSpec>;
export type ModelSpec = z.infer<typeof modelSpec>;
export type TargetSpec = z.infer<typeof targetSpec>;
export type PricingSpec = z.infer<typeof pricingSpec>;
export type AgentSpec = z.infer<typeof agentSpec>;
export type PolicySpec = z.infer<typeof policySpec>;
export type ToolRuleSpec = z.infer<typeof toolRuleSpec>;
export type AgentRuleSpec = z.infer<typeof agentRuleSpec>;
export type McpServerSpec = z.infer<typeof mcpServerSpec>;
export type HttpToolSpec = z.infer<typeof httpToolSpec>;
export type GuardrailSpec = z.infer<typeof guardrailSpec>;
export type TimeoutsSpec = z.infer<typeof timeoutsSpec>;
export type TrustDomainSpec = z.infer<typeof trustDomainSpec>;
export type RoleBindingSpec = z.infer<typeof roleBindingSpec>;

export interface Resource<S> { name: string; labels: Record<string, string>; spec: S; file: string; index: number }

/** A validated config: resources by kind and name, in file order. */
export interface ConfigSet {
  credentials: Map<string, Resource<CredentialSpec>>;
  providers: Map<string, Resource<ProviderSpec>>;
  models: Map<string, Resource<ModelSpec>>;
  agents: Map<string, Resource<AgentSpec>>;
  policies: Map<string, Resource<PolicySpec>>;
  mcpServers: Map<string, Resource<McpServerSpec>>;
  httpTools: Map<string, Resource<HttpToolSpec>>;
  guardrails: Map<string, Resource<GuardrailSpec>>;
  /** Trusted SPIFFE trust domains by name (JWKS source for their JWT-SVIDs). */
  trustDomains: Map<string, Resource<TrustDomainSpec>>;
  /** Who may use the console and admin API in which role. */
  roleBindings: Map<string, Resource<RoleBindingSpec>>;
  /** sha256 of the source text(s): stamped on decisions and audit events. */
  digest: string;
  files: string[];
}
