// JSON Schema validation of tool arguments (input schemas) and structured results (output
// schemas), with Ajv configured as the MCP SDK's AjvJsonSchemaValidator configures it (not strict,
// formats checked, schemas not validated, all errors), without loading the SDK.
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';

type AddFormats = (ajv: Ajv) => Ajv;
// ajv-formats is CommonJS: its default export is the plugin (or, from some loaders, an object holding it).
const addFormats = ((addFormatsModule as unknown as { default?: AddFormats }).default ?? addFormatsModule) as unknown as AddFormats;

let ajv: Ajv | undefined;
function instance(): Ajv {
  if (!ajv) {
    ajv = new Ajv({ strict: false, validateFormats: true, validateSchema: false, allErrors: true });
    addFormats(ajv);
  }
  return ajv;
}

/** Compile `schema`; the validator returns undefined when a value matches, else Ajv's error text. Throws when it cannot be compiled. */
export function schemaValidator(schema: Record<string, unknown>): (value: unknown) => string | undefined {
  // A schema with an $id is cached by Ajv under it: the compiled one is used as the SDK's provider does.
  const id = typeof schema.$id === 'string' ? schema.$id : undefined;
  const a = instance();
  const v = (id && a.getSchema(id)) || a.compile(schema);
  return (value) => (v(value) ? undefined : a.errorsText(v.errors));
}
