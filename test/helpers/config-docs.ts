// Config text for tests: one YAML document per resource. Kept apart from gateway.ts so a test that
// starts no gateway does not load one.
export const doc = (kind: string, name: string, spec: unknown): string =>
  `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec: ${JSON.stringify(spec)}\n`;

export const yaml = (...docs: string[]): string => docs.join('---\n');
