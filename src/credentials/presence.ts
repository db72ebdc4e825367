// Whether a config's credential sources are there on this machine, said the same way by the vault
// (which refuses to start without a required one) and by `aam validate` (which notes it: the
// machine that validates is often not the one that serves).
import { existsSync } from 'node:fs';
import type { ConfigSet, CredentialSpec } from '../config/schema.ts';

/** The credentials each kind of document needs: Providers' (which may be optional), and everything else's. */
function users(config: ConfigSet): { optionalProviders: Set<string>; requiredProviders: Set<string>; others: Set<string> } {
  const optionalProviders = new Set<string>();
  const requiredProviders = new Set<string>();
  const others = new Set<string>();
  for (const p of config.providers.values()) if (p.spec.credential) (p.spec.optional ? optionalProviders : requiredProviders).add(p.spec.credential);
  for (const m of config.mcpServers.values()) if (m.spec.credential) others.add(m.spec.credential);
  for (const h of config.httpTools.values()) if (h.spec.credential) others.add(h.spec.credential);
  for (const a of config.agents.values()) if (a.spec.a2a?.credential) others.add(a.spec.a2a.credential);
  return { optionalProviders, requiredProviders, others };
}

/** Credentials only optional Providers use: a missing one turns those providers off instead of failing the load. */
export function optionalNames(config: ConfigSet): Set<string> {
  const u = users(config);
  return new Set([...u.optionalProviders].filter((n) => !u.requiredProviders.has(n) && !u.others.has(n)));
}

/** Credentials only Providers use, some of them required: marking those optional: true is a way out of a missing one. */
export function providerOnlyNames(config: ConfigSet): Set<string> {
  const u = users(config);
  return new Set([...u.requiredProviders].filter((n) => !u.others.has(n)));
}

/** A missing variable and its fix; `providerOnly`: a credential only Providers use, which may be marked optional instead. */
export function envNotSet(name: string, variable: string, providerOnly: boolean): string {
  return `Credential "${name}": environment variable ${variable} is not set (export it${providerOnly ? ', or mark the Provider that uses it optional: true' : ''})`;
}

/** The env and file sources of required credentials that are absent here (stored ones live in the data dir or fleet). */
export function absentSources(config: ConfigSet, env: NodeJS.ProcessEnv): string[] {
  const optional = optionalNames(config);
  const providerOnly = providerOnlyNames(config);
  const out: string[] = [];
  for (const r of config.credentials.values()) {
    if (optional.has(r.name)) continue;
    const s: CredentialSpec = r.spec;
    if (s.env !== undefined && !env[s.env]) out.push(envNotSet(r.name, s.env, providerOnly.has(r.name)));
    else if (s.file !== undefined && !existsSync(s.file)) out.push(`Credential "${r.name}": file ${s.file} does not exist (create it or fix the path)`);
  }
  return out;
}
