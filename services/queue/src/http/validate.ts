// JSON-schema validation of request bodies with the schemas under /schemas (one Ajv instance,
// validators compiled once). Defaults from the schemas are filled in, as Taskcluster does.
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { schemas } from '@conveyor/schemas';
import { ApiError } from './errors.js';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => void;

const ajv = new Ajv({ strict: false, useDefaults: true, allErrors: false });
addFormats(ajv);
for (const schema of Object.values(schemas)) ajv.addSchema(schema as object);

const compiled = new Map<string, ValidateFunction>();

export function validatorFor(name: string): ValidateFunction {
  let v = compiled.get(name);
  if (!v) {
    const schema = schemas[name.replace(/#$/, '')];
    if (!schema) throw new Error(`unknown schema ${name}`);
    v = ajv.getSchema((schema as { $id: string }).$id) ?? ajv.compile(schema as object);
    compiled.set(name, v);
  }
  return v;
}

// PostgreSQL text and jsonb cannot hold U+0000, and jsonb refuses unpaired surrogates (JSON
// allows both): refused here, or they would fail inside the transaction as a 500.
const unstorable = /[\u0000\p{Cs}]/u;

function findUnstorable(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return unstorable.test(value) ? path : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUnstorable(value[i], `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    if (unstorable.test(k)) return `${path} (a key)`;
    const found = findUnstorable(v, `${path}.${k}`);
    if (found) return found;
  }
  return undefined;
}

/** Validates (and fills defaults into) `data`, or throws InputValidationError saying what is wrong. */
export function validate(name: string, data: unknown, what = 'request payload'): void {
  const v = validatorFor(name);
  if (v(data)) {
    const where = findUnstorable(data, what);
    if (where) {
      throw new ApiError('InputValidationError', `${where} contains a NUL character (\\u0000) or an unpaired UTF-16 surrogate, which cannot be stored`, { schema: name });
    }
    return;
  }
  const errors = (v.errors ?? []).slice(0, 5).map((e) => {
    const where = e.instancePath === '' ? what : `${what}${e.instancePath.replace(/\//g, '.')}`;
    const extra = e.params && 'allowedValues' in e.params ? ` (${(e.params.allowedValues as unknown[]).join(', ')})`
      : e.params && 'additionalProperty' in e.params ? ` ('${String(e.params.additionalProperty)}')` : '';
    return `${where} ${e.message ?? 'is invalid'}${extra}`;
  });
  throw new ApiError('InputValidationError', `Schema validation failed for ${name}:\n${errors.join('\n')}`, {
    schema: name,
    errors: v.errors,
  });
}
