// Shared parts of `aam import` (LiteLLM, Portkey): a builder that collects aam documents
// (Credentials and Providers deduplicated, Model routes in order) and the list of what could not
// be mapped, each with the source path. Pure: no I/O; the CLI reads, renders and validates.
import { stringify } from 'yaml';
import { API_VERSION } from './schema.ts';

export type Obj = Record<string, unknown>;

export interface Doc { kind: string; name: string; spec: Obj }

export interface ImportResult {
  docs: Doc[];
  /** One line per thing not carried over: "path: why (what to do)". */
  unmapped: string[];
}

export const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
export const num = (v: unknown): number | undefined => {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
};

/** A name aam accepts (letters, digits, ".", "_", "-"; "/" too for Model routes). */
export function safeName(s: string, allowSlash = false): string {
  const cleaned = s.toLowerCase().replace(allowSlash ? /[^a-z0-9._/-]+/g : /[^a-z0-9._-]+/g, '-').replace(/\/{2,}/g, '/').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return (cleaned || 'imported').slice(0, 128);
}

/** Known OpenAI-compatible services by the prefix both LiteLLM and Portkey use. */
export const COMPATIBLE_BASE: Readonly<Record<string, string>> = {
  groq: 'https://api.groq.com/openai/v1',
  mistral: 'https://api.mistral.ai/v1',
  together_ai: 'https://api.together.xyz/v1',
  'together-ai': 'https://api.together.xyz/v1',
  deepseek: 'https://api.deepseek.com/v1',
  fireworks_ai: 'https://api.fireworks.ai/inference/v1',
  'fireworks-ai': 'https://api.fireworks.ai/inference/v1',
  openrouter: 'https://openrouter.ai/api/v1',
  xai: 'https://api.x.ai/v1',
  'x-ai': 'https://api.x.ai/v1',
  perplexity: 'https://api.perplexity.ai',
  'perplexity-ai': 'https://api.perplexity.ai',
};

/** A provider as the importer sees it; identical ones (same endpoint and credential) become one Provider. */
export interface ProviderWant {
  /** Preferred name (e.g. "openai"); a suffix is added when another provider took it. */
  base: string;
  spec: Obj;
}

export interface CredentialWant {
  /** Env var holding the secret, a file path, or the name of a stored Credential (`aam credentials set`). */
  env?: string;
  file?: string;
  stored?: string;
  extra?: Obj;
}

export class ImportBuilder {
  readonly unmapped: string[] = [];
  private readonly credentials = new Map<string, Doc>();
  private readonly providers = new Map<string, Doc>();
  private readonly providerByKey = new Map<string, string>();
  private readonly models: Doc[] = [];
  private readonly policies: Doc[] = [];

  note(path: string, why: string): void {
    this.unmapped.push(`${path}: ${why}`);
  }

  /** A Credential reading `env` (or `file`); named after it, one per source. */
  credential(want: CredentialWant): string {
    const source = want.env !== undefined ? { env: want.env } : want.stored !== undefined ? { stored: true } : { file: want.file as string };
    const name = safeName((want.env ?? want.stored ?? `file-${(want.file as string).split('/').pop() ?? 'secret'}`).replace(/_/g, '-'));
    if (want.stored !== undefined && this.credentials.has(name)) return name;
    const key = JSON.stringify({ ...source, ...want.extra });
    if (want.stored === undefined) for (const [n, d] of this.credentials) if (JSON.stringify(d.spec) === key) return n;
    const unique = this.unique(name, this.credentials);
    this.credentials.set(unique, { kind: 'Credential', name: unique, spec: { ...source, ...want.extra } });
    return unique;
  }

  provider(want: ProviderWant): string {
    const key = JSON.stringify(want.spec);
    const have = this.providerByKey.get(key);
    if (have !== undefined) return have;
    const name = this.unique(safeName(want.base), this.providers);
    this.providers.set(name, { kind: 'Provider', name, spec: want.spec });
    this.providerByKey.set(key, name);
    return name;
  }

  providerSpec(name: string): Obj | undefined {
    return this.providers.get(name)?.spec;
  }

  model(name: string, spec: Obj): void {
    this.models.push({ kind: 'Model', name, spec });
  }

  modelSpec(name: string): { targets: Obj[] } | undefined {
    return this.models.find((m) => m.name === name)?.spec as { targets: Obj[] } | undefined;
  }

  modelNames(): string[] {
    return this.models.map((m) => m.name);
  }

  policy(name: string, spec: Obj): void {
    this.policies.push({ kind: 'AgentPolicy', name, spec });
  }

  result(): ImportResult {
    return { docs: [...this.credentials.values(), ...this.providers.values(), ...this.models, ...this.policies], unmapped: this.unmapped };
  }

  private unique(name: string, taken: Map<string, unknown>): string {
    if (!taken.has(name)) return name;
    for (let i = 2; ; i++) if (!taken.has(`${name}-${i}`)) return `${name}-${i}`;
  }
}

/** "os.environ/NAME" (LiteLLM) or "$NAME" -> NAME; anything else is a literal secret. */
export function envRef(v: unknown): string | undefined {
  const s = str(v);
  if (s === undefined) return undefined;
  const m = /^(?:os\.environ\/|\$\{?)([A-Za-z_][A-Za-z0-9_]*)\}?$/.exec(s);
  return m?.[1];
}

/** aam YAML for the documents, with a header saying where they came from. */
export function renderDocs(docs: readonly Doc[], header: string): string {
  const body = docs.map((d) => stringify({ apiVersion: API_VERSION, kind: d.kind, metadata: { name: d.name }, spec: d.spec }, { lineWidth: 0 })).join('---\n');
  return `# ${header}\n${body}`;
}
