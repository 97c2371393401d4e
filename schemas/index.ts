// @conveyor/schemas: the JSON Schemas (draft-07) for the Queue v1 API bodies and pulse messages.
// The files in ./v1/ are the single source of truth; ./types.ts is generated from them
// (node --import tsx schemas/generate-types.ts).
import { readdirSync, readFileSync } from 'node:fs';
import type { TaskStatus } from './types.js';

export type * from './types.js';

/** A run of a task, as found in `TaskStatus.runs`. */
export type TaskRun = TaskStatus['runs'][number];

const schemaDir = new URL('./v1/', import.meta.url);

function loadSchemas(): Record<string, object> {
  const out: Record<string, object> = {};
  for (const file of readdirSync(schemaDir).filter((f) => f.endsWith('.json')).sort()) {
    const schema = JSON.parse(readFileSync(new URL(file, schemaDir), 'utf8')) as { $id?: unknown };
    if (schema.$id !== `/schemas/queue/v1/${file}#`) {
      throw new Error(`schemas/v1/${file}: $id must be "/schemas/queue/v1/${file}#"`);
    }
    out[`v1/${file}`] = schema;
  }
  return out;
}

/**
 * Every schema, keyed by its path relative to this package: 'v1/task-status.json', … Each has an
 * `$id` like '/schemas/queue/v1/task-status.json#'; relative `$ref`s ('task-status.json#',
 * 'constants.json#/definitions/slugid') resolve against it, so add all of them to the validator
 * (e.g. `for (const s of Object.values(schemas)) fastify.addSchema(s)`).
 */
export const schemas: Readonly<Record<string, object>> = Object.freeze(loadSchemas());

/**
 * The `$id` of a schema. Accepts 'v1/task-status.json', 'task-status.json' or 'task-status'
 * and returns '/schemas/queue/v1/task-status.json#'. Throws for an unknown schema.
 */
export function schemaId(name: string): string {
  let key = name.startsWith('v1/') ? name : `v1/${name}`;
  if (!key.endsWith('.json')) key = `${key}.json`;
  const schema = schemas[key] as { $id?: string } | undefined;
  if (!schema?.$id) throw new Error(`unknown schema: ${name}`);
  return schema.$id;
}

/** The $id of every schema, e.g. '/schemas/queue/v1/task.json#'. */
export const schemaIds: readonly string[] = Object.values(schemas).map((s) => (s as { $id: string }).$id);
