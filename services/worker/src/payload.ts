// The payload schema (services/worker/schemas/v1/payload.json) and its validator.
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';

export interface GenericPayload {
  command: string | string[];
  env?: Record<string, string>;
  maxRunTime?: number;
  artifacts?: Array<{ name: string; path: string; type: 'file'; contentType?: string }>;
}

export const payloadSchema = JSON.parse(readFileSync(new URL('../schemas/v1/payload.json', import.meta.url), 'utf8')) as object;

const validate = new Ajv({ allErrors: true, strict: false }).compile<GenericPayload>(payloadSchema);

/** The payload, or a list of what is wrong with it (for the task log). */
export function checkPayload(payload: unknown): { ok: true; payload: GenericPayload } | { ok: false; problems: string[] } {
  if (validate(payload)) return { ok: true, payload };
  const problems = (validate.errors ?? []).map((e) => `payload${e.instancePath.replace(/\//g, '.')} ${e.message}${e.params && 'additionalProperty' in e.params ? `: ${String(e.params.additionalProperty)}` : ''}`);
  return { ok: false, problems: [...new Set(problems)] };
}
