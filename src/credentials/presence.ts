// Whether a config's credential sources are there on this machine, said the same way by the vault
// (which refuses to start without a required one) and by `aam validate` (which notes it: the
// machine that validates is often not the one that serves).
import { existsSync } from 'node:fs';
import type { ConfigSet, CredentialSpec } from '../config/schema.ts';

/** Credentials only optional Providers use: a missing one turns those providers off instead of failing the load. */
export function optionalNames(config: ConfigSet): Set<string> {
  const required = new Set<string>();
  const optional = new Set<string>();
  for (const p of config.providers.values()) if (p.spec.credential) (p.spec.optional ? optional : required).add(p.spec.credential);
  for (const m of config.mcpServers.values()) if (m.spec.credential) required.add(m.spec.credential);
  for (const h of config.httpTools.values()) if (h.spec.credential) required.add(h.spec.credential);
  return new Set([...optional].filter((n) => !required.has(n)));
}

export function envNotSet(name: string, variable: string, optional: boolean): string {
  return `Credential "${name}": environment variable ${variable} is not set (export it${optional ? '' : ', or mark the Provider that uses it optional: true'})`;
}

/** The env and file sources of required credentials that are absent here (stored ones live in the data dir or fleet). */
export function absentSources(config: ConfigSet, env: NodeJS.ProcessEnv): string[] {
  const optional = optionalNames(config);
  const out: string[] = [];
  for (const r of config.credentials.values()) {
    if (optional.has(r.name)) continue;
    const s: CredentialSpec = r.spec;
    if (s.env !== undefined && !env[s.env]) out.push(envNotSet(r.name, s.env, false));
    else if (s.file !== undefined && !existsSync(s.file)) out.push(`Credential "${r.name}": file ${s.file} does not exist (create it or fix the path)`);
  }
  return out;
}
