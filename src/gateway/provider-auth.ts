// Outbound provider authentication: resolve a Provider's Credential and place it where that
// provider expects it. (Static sources only here; the credentials module adds vault, OAuth, OBO.)
import { readFileSync } from 'node:fs';
import type { ConfigSet } from '../config/schema.ts';
import type { ProviderRuntime } from './routes.ts';
import type { Injection } from './upstream.ts';

export class CredentialResolver {
  readonly #env: NodeJS.ProcessEnv;
  constructor(env: NodeJS.ProcessEnv) { this.#env = env; }

  /** Why a credential cannot be resolved right now, or null when it can. */
  problem(name: string, set: ConfigSet): string | null {
    const c = set.credentials.get(name);
    if (!c) return `credential "${name}" is not defined`;
    if (c.spec.env !== undefined && !this.#env[c.spec.env]) return `environment variable ${c.spec.env} (credential "${name}") is not set`;
    if (c.spec.file !== undefined) {
      try { if (!readFileSync(c.spec.file, 'utf8').trim()) return `file ${c.spec.file} (credential "${name}") is empty`; } catch { return `file ${c.spec.file} (credential "${name}") cannot be read`; }
    }
    return null;
  }

  value(name: string, set: ConfigSet): string {
    const c = set.credentials.get(name);
    if (!c) throw new Error(`credential "${name}" is not defined`);
    if (c.spec.env !== undefined) return this.#env[c.spec.env] ?? '';
    if (c.spec.file !== undefined) return readFileSync(c.spec.file, 'utf8').trim();
    return c.spec.value ?? '';
  }
}

export function providerInjection(p: ProviderRuntime, secret: string, credName: string): Injection {
  const credential = { name: credName, version: 1 };
  switch (p.authStyle) {
    case 'x-api-key': return { headers: { 'x-api-key': secret }, credential };
    case 'x-goog-api-key': return { headers: { 'x-goog-api-key': secret }, credential };
    case 'api-key': return { headers: { 'api-key': secret }, credential };
    default: return { headers: { authorization: `Bearer ${secret}` }, credential };
  }
}
