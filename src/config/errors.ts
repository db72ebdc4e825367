// Config problems, apart from the loader (load.ts: yaml + zod), so the gateway's thread can name
// them without loading the loader: it validates in a short-lived process (isolated.ts).

export interface ConfigIssue {
  file: string;
  /** 0-based document index within the file (-1: whole file). */
  document: number;
  /** Dotted field path, e.g. "spec.targets[0].provider". */
  path: string;
  line?: number;
  message: string;
}

export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(formatIssues(issues));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssue(i: ConfigIssue): string {
  const where = `${i.file}${i.line ? `:${i.line}` : ''}${i.document >= 0 ? ` (document ${i.document + 1})` : ''}`;
  return `${where}: ${i.path ? i.path + ': ' : ''}${i.message}`;
}
export function formatIssues(issues: ConfigIssue[]): string {
  return issues.map(formatIssue).join('\n');
}
