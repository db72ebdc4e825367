// Globs over names (SPIFFE IDs, tool resources, model routes), compiled once at load.
// '**' matches any characters (including '/'), '*' matches within one segment (no '/').

const escapeRe = (s: string): string => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');

/** Glob to an anchored RegExp. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') { re += '.*'; i++; } else re += '[^/]*';
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`);
}

export const hasWildcard = (s: string): boolean => s.includes('*');

/** Matcher for strings that may be exact or a glob; '*' alone matches everything when `starMatchesAll`. */
export function stringMatcher(pattern: string, starMatchesAll: boolean): (s: string) => boolean {
  if (!hasWildcard(pattern)) return (s) => s === pattern;
  if (pattern === '**' || (starMatchesAll && pattern === '*')) return () => true;
  const re = globToRegExp(pattern);
  return (s) => re.test(s);
}
