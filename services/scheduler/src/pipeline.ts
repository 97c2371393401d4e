// Pipeline files: parsing (YAML or JSON), checking, and turning a stage into task definitions.
// Task and group ids are derived from the pipeline id, stage and task name, so submitting a stage
// again creates the same tasks (createTask is idempotent) instead of new ones.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import { schemas } from '@conveyor/schemas';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => void;

export interface TaskFields {
  taskQueueId?: string;
  projectId?: string;
  routes?: string[];
  priority?: string;
  retries?: number;
  scopes?: string[];
  payload?: Record<string, unknown>;
  tags?: Record<string, string>;
  extra?: Record<string, unknown>;
  requires?: 'all-completed' | 'all-resolved';
  deadline?: string;
  expires?: string;
  description?: string;
}

export interface StageTask extends TaskFields {
  name: string;
  dependsOn?: string[];
}

export interface Pipeline {
  name: string;
  description?: string;
  owner?: string;
  source?: string;
  defaults?: TaskFields;
  stages: Array<{ name: string; tasks: StageTask[] }>;
}

export class PipelineError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid pipeline:\n  ${problems.join('\n  ')}`);
  }
}

export const pipelineSchema = JSON.parse(readFileSync(new URL('../schemas/v1/pipeline.json', import.meta.url), 'utf8')) as object;

const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);
for (const s of Object.values(schemas)) ajv.addSchema(s as object);
const validatePipeline = ajv.compile<Pipeline>(pipelineSchema);
const validateTask = ajv.getSchema('/schemas/queue/v1/create-task-request.json#')!;

export const defaultDeadline = '1 day';
export const defaultTaskQueueId = 'local/generic';

/** Reads a pipeline from YAML or JSON text (JSON is YAML). */
export function parsePipelineText(text: string): unknown {
  try {
    return parseYaml(text);
  } catch (err) {
    throw new PipelineError([`not YAML or JSON: ${(err as Error).message}`]);
  }
}

export function readPipelineFile(path: string): Pipeline {
  return checkPipeline(parsePipelineText(readFileSync(path, 'utf8')));
}

/** Checks shape and references; throws PipelineError listing every problem. */
export function checkPipeline(value: unknown): Pipeline {
  if (!validatePipeline(value)) {
    throw new PipelineError((validatePipeline.errors ?? []).map((e) => `${e.instancePath || '(pipeline)'} ${e.message}`));
  }
  const p = value;
  const problems: string[] = [];
  const stageNames = new Set<string>();
  for (const stage of p.stages) {
    if (stageNames.has(stage.name)) problems.push(`stage name ${stage.name} is used twice`);
    stageNames.add(stage.name);
    const names = new Set(stage.tasks.map((t) => t.name));
    if (names.size !== stage.tasks.length) problems.push(`stage ${stage.name}: task names must be unique`);
    for (const t of stage.tasks) {
      for (const d of t.dependsOn ?? []) {
        if (d === t.name) problems.push(`stage ${stage.name}: task ${t.name} depends on itself`);
        else if (!names.has(d)) problems.push(`stage ${stage.name}: task ${t.name} depends on ${d}, which is not a task of this stage`);
      }
    }
  }
  if (problems.length === 0) {
    for (const stage of p.stages) {
      try {
        creationWaves(stage.tasks);
      } catch (err) {
        problems.push(`stage ${stage.name}: ${(err as Error).message}`);
      }
    }
  }
  if (problems.length > 0) throw new PipelineError(problems);
  return p;
}

/**
 * The stage's tasks in waves a dependent never precedes: the queue refuses a task whose
 * dependencies do not exist yet. Throws on a cycle.
 */
export function creationWaves<T extends { name: string; dependsOn?: string[] }>(tasks: T[]): T[][] {
  const waves: T[][] = [];
  const done = new Set<string>();
  let left = tasks;
  while (left.length > 0) {
    const ready = left.filter((t) => (t.dependsOn ?? []).every((d) => done.has(d)));
    if (ready.length === 0) throw new Error(`tasks ${left.map((t) => t.name).join(', ')} depend on each other in a cycle`);
    waves.push(ready);
    for (const t of ready) done.add(t.name);
    left = left.filter((t) => !done.has(t.name));
  }
  return waves;
}

const unitMs: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function durationMs(text: string): number {
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)\s*([a-z]+)/g)) total += Number(n) * unitMs[unit![0]!]!;
  return total;
}

/** A slugid (v4 layout, first bit clear, as slugid.nice makes them) derived from the parts. */
export function derivedSlugid(...parts: string[]): string {
  const b = createHash('sha256').update(parts.join('\0')).digest().subarray(0, 16);
  b[0]! &= 0x7f;
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b.toString('base64url');
}

export const taskGroupIdOf = (pipelineId: string, stage: number) => derivedSlugid('conveyor-pipeline', pipelineId, 'stage', String(stage));
export const taskIdOf = (pipelineId: string, stage: number, task: string) =>
  derivedSlugid('conveyor-pipeline', pipelineId, 'stage', String(stage), 'task', task);

export interface StageTaskDefinition {
  name: string;
  dependsOn?: string[];
  taskId: string;
  definition: Record<string, unknown>;
}

/** The createTask bodies of a stage's tasks, all created at `created`. */
export function stageTasks(p: Pipeline, pipelineId: string, stage: number, schedulerId: string, created: Date): StageTaskDefinition[] {
  const s = p.stages[stage]!;
  const taskGroupId = taskGroupIdOf(pipelineId, stage);
  return s.tasks.map((t) => {
    const f: TaskFields = { ...p.defaults, ...t };
    const deadline = new Date(created.getTime() + durationMs(f.deadline ?? defaultDeadline));
    const definition: Record<string, unknown> = {
      taskQueueId: f.taskQueueId ?? defaultTaskQueueId,
      schedulerId,
      taskGroupId,
      dependencies: (t.dependsOn ?? []).map((d) => taskIdOf(pipelineId, stage, d)),
      routes: f.routes ?? [],
      retries: f.retries ?? 1,
      scopes: f.scopes ?? [],
      payload: f.payload ?? {},
      tags: f.tags ?? {},
      extra: { ...f.extra, conveyorPipeline: { pipelineId, stage: s.name, task: t.name } },
      created: created.toISOString(),
      deadline: deadline.toISOString(),
      metadata: {
        name: `${p.name} / ${s.name} / ${t.name}`.slice(0, 255),
        description: f.description ?? p.description ?? `Task ${t.name} of stage ${s.name} of pipeline ${p.name}`,
        owner: p.owner ?? 'conveyor-scheduler',
        source: p.source ?? 'https://localhost/conveyor/pipelines',
      },
    };
    if (f.projectId) definition.projectId = f.projectId;
    if (f.priority) definition.priority = f.priority;
    if (f.requires) definition.requires = f.requires;
    if (f.expires) definition.expires = new Date(created.getTime() + durationMs(f.expires)).toISOString();
    return { name: t.name, dependsOn: t.dependsOn, taskId: taskIdOf(pipelineId, stage, t.name), definition };
  });
}

/** Every stage's tasks checked against the queue's createTask schema, so a bad pipeline is refused at submission. */
export function checkTaskDefinitions(p: Pipeline, pipelineId: string, schedulerId: string): void {
  const problems: string[] = [];
  p.stages.forEach((s, i) => {
    for (const t of stageTasks(p, pipelineId, i, schedulerId, new Date())) {
      if (!validateTask(structuredClone(t.definition))) {
        for (const e of validateTask.errors ?? []) problems.push(`stage ${s.name}, task ${t.name}: ${e.instancePath || '(task)'} ${e.message}`);
      }
    }
  });
  if (problems.length > 0) throw new PipelineError(problems);
}
