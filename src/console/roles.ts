// Roles of people (console and admin API), from `kind: RoleBinding` documents. Pure: the config
// set in, a lookup out; a person's role is the highest one any binding gives their email or groups.
import type { ConfigSet } from '../config/schema.ts';

export type Role = 'viewer' | 'approver' | 'operator' | 'admin';

/** Each role includes every right of the roles before it. */
export const ROLES: readonly Role[] = ['viewer', 'approver', 'operator', 'admin'];

export const atLeast = (have: Role, need: Role): boolean => ROLES.indexOf(have) >= ROLES.indexOf(need);

export interface HumanClaims { sub: string; email?: string; groups: readonly string[] }

export interface RoleTable {
  /** The person's role, or null when no binding names them (they may not log in). */
  roleOf(c: HumanClaims): Role | null;
}

export function compileRoles(set: ConfigSet): RoleTable {
  const byEmail = new Map<string, Role>();
  const byGroup = new Map<string, Role>();
  const raise = (m: Map<string, Role>, k: string, r: Role) => { const cur = m.get(k); if (!cur || atLeast(r, cur)) m.set(k, r); };
  for (const b of set.roleBindings.values()) {
    for (const s of b.spec.subjects) {
      // Emails compare case-insensitively (IdPs differ in the case they return); groups exactly.
      if ('email' in s) raise(byEmail, s.email.toLowerCase(), b.spec.role);
      else raise(byGroup, s.group, b.spec.role);
    }
  }
  return {
    roleOf(c) {
      let best: Role | null = c.email ? byEmail.get(c.email.toLowerCase()) ?? null : null;
      for (const g of c.groups) {
        const r = byGroup.get(g);
        if (r && (!best || atLeast(r, best))) best = r;
      }
      return best;
    },
  };
}
