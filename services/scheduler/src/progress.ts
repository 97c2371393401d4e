// Moving a pipeline forward. Every step is safe to repeat and to run from several places at once
// (a task-group-resolved message, the reconcile loop, another scheduler replica):
//   1. the stage row (with the `created` of its tasks) is committed before any task is submitted;
//   2. submitting creates tasks with derived ids and that `created` — a repeat is idempotent —
//      then seals the group;
//   3. the verdict is read from the queue (task statuses), never from the message that woke us;
//   4. concluding a stage is one transaction with its precondition (the pipeline still on this
//      stage, the stage still submitted) that also writes the next stage's row.
// So a crash anywhere repeats at most an idempotent call: no stage is lost or run twice.
import { QueueError, type QueueClient } from '@conveyor/client';
import type { Db } from '../../queue/src/db/database.js';
import { creationWaves, stageTasks, taskGroupIdOf, type Pipeline, type StageTaskDefinition } from './pipeline.js';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface SchedulerCtx {
  db: Db;
  /** A queue client with the scheduler's own credentials. */
  queue: QueueClient;
  schedulerId: string;
  log: Logger;
}

type PipelineRow = { pipeline_id: string; definition: Record<string, unknown>; state: string; stage: number };
type StageRow = { stage: number; task_group_id: string; state: string; created: Date };

export interface TaskOutcome {
  name: string;
  taskId: string;
  state: string;
  reasonResolved?: string;
}

/** createTask refuses a `created` more than 15 minutes from now; resubmit before that. */
const resubmitWithinMs = 10 * 60 * 1000;
const createConcurrency = 8;

const unresolved = new Set(['unscheduled', 'pending', 'running']);

async function loadPipeline(s: SchedulerCtx, pipelineId: string): Promise<PipelineRow | undefined> {
  return s.db.selectFrom('scheduler_pipelines').select(['pipeline_id', 'definition', 'state', 'stage']).where('pipeline_id', '=', pipelineId).executeTakeFirst();
}

async function ensureStage(s: SchedulerCtx, p: PipelineRow): Promise<StageRow> {
  await s.db
    .insertInto('scheduler_stages')
    .values({ pipeline_id: p.pipeline_id, stage: p.stage, task_group_id: taskGroupIdOf(p.pipeline_id, p.stage), state: 'submitting', created: new Date() })
    .onConflict((oc) => oc.columns(['pipeline_id', 'stage']).doNothing())
    .execute();
  const row = await s.db
    .selectFrom('scheduler_stages')
    .select(['stage', 'task_group_id', 'state', 'created'])
    .where('pipeline_id', '=', p.pipeline_id)
    .where('stage', '=', p.stage)
    .executeTakeFirstOrThrow();
  return { ...row, created: new Date(row.created) };
}

/** Creates one task; returns why it cannot be, or undefined once it exists in its group. */
async function createOne(s: SchedulerCtx, t: StageTaskDefinition): Promise<string | undefined> {
  try {
    await s.queue.createTask(t.taskId, t.definition);
    return undefined;
  } catch (err) {
    if (!(err instanceof QueueError) || err.statusCode >= 500) throw err;
    if (err.statusCode === 409) {
      // ours from an earlier attempt with another `created` (the ids are derived from the pipeline)
      const existing = await s.queue.task(t.taskId).catch(() => undefined);
      if (existing?.taskGroupId === t.definition.taskGroupId) return undefined;
    }
    return `task ${t.name} could not be created (${err.code}): ${err.message.split('\n')[0]}`;
  }
}

/** Creates the stage's tasks and seals its group; returns why it cannot, or undefined. */
async function submitStage(s: SchedulerCtx, p: PipelineRow, stage: StageRow): Promise<string | undefined> {
  let created = stage.created;
  if (Date.now() - created.getTime() > resubmitWithinMs) {
    created = new Date();
    await s.db.updateTable('scheduler_stages').set({ created }).where('pipeline_id', '=', p.pipeline_id).where('stage', '=', stage.stage).execute();
  }
  const tasks = stageTasks(p.definition as unknown as Pipeline, p.pipeline_id, stage.stage, s.schedulerId, created);
  const problems: string[] = [];
  for (const wave of creationWaves(tasks)) {
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(createConcurrency, wave.length) }, async () => {
        while (next < wave.length) {
          const problem = await createOne(s, wave[next++]!);
          if (problem) problems.push(problem);
        }
      }),
    );
    if (problems.length > 0) return problems.join('; ');
  }
  try {
    await s.queue.sealTaskGroup(stage.task_group_id);
  } catch (err) {
    if (!(err instanceof QueueError) || err.statusCode >= 500) throw err;
    return `task group ${stage.task_group_id} could not be sealed (${err.code}): ${err.message.split('\n')[0]}`;
  }
  await s.db
    .updateTable('scheduler_stages')
    .set({ state: 'submitted', submitted: new Date() })
    .where('pipeline_id', '=', p.pipeline_id)
    .where('stage', '=', stage.stage)
    .where('state', '=', 'submitting')
    .execute();
  s.log.info({ pipelineId: p.pipeline_id, stage: stage.stage, taskGroupId: stage.task_group_id, tasks: tasks.length }, 'stage submitted');
  return undefined;
}

/** The stage's task states from the queue. */
export async function stageOutcome(s: SchedulerCtx, p: PipelineRow, stage: number): Promise<TaskOutcome[]> {
  const tasks = stageTasks(p.definition as unknown as Pipeline, p.pipeline_id, stage, s.schedulerId, new Date());
  const found = new Map<string, { state: string; runs: Array<{ reasonResolved?: string }> }>();
  for (let i = 0; i < tasks.length; i += 1000) {
    const { statuses } = await s.queue.statuses(tasks.slice(i, i + 1000).map((t) => t.taskId));
    for (const st of statuses) found.set(st.taskId, st.status);
  }
  return tasks.map((t) => {
    const st = found.get(t.taskId);
    if (!st) return { name: t.name, taskId: t.taskId, state: 'missing' };
    const reasonResolved = st.runs[st.runs.length - 1]?.reasonResolved;
    return { name: t.name, taskId: t.taskId, state: st.state, ...(reasonResolved ? { reasonResolved } : {}) };
  });
}

type Verdict = { kind: 'waiting' } | { kind: 'completed'; outcome: TaskOutcome[] } | { kind: 'failed'; outcome: TaskOutcome[]; reason: string };

/**
 * Completed when every task completed. Failed as soon as one task is resolved and not completed
 * (failed, exception without a retry pending): waiting for the rest would not change the verdict,
 * and all-completed dependents of a failed task would wait for their deadline.
 */
function verdictOf(outcome: TaskOutcome[], stageName: string): Verdict {
  const bad = outcome.filter((t) => !unresolved.has(t.state) && t.state !== 'completed');
  if (bad.length > 0) {
    const what = bad.map((t) => `task ${t.name} (${t.taskId}) ${t.state === 'missing' ? 'no longer exists' : `${t.state}${t.reasonResolved && t.reasonResolved !== t.state ? `/${t.reasonResolved}` : ''}`}`);
    return { kind: 'failed', outcome, reason: `stage ${stageName}: ${what.join('; ')}` };
  }
  if (outcome.some((t) => unresolved.has(t.state))) return { kind: 'waiting' };
  return { kind: 'completed', outcome };
}

/** Records the verdict (and starts the next stage's row) if nobody did yet; true if this call did. */
async function conclude(s: SchedulerCtx, p: PipelineRow, stage: StageRow, v: Exclude<Verdict, { kind: 'waiting' }>, from: string[]): Promise<boolean> {
  const stages = (p.definition as unknown as Pipeline).stages;
  return s.db.transaction().execute(async (trx) => {
    const now = new Date();
    const locked = await trx.selectFrom('scheduler_pipelines').select(['state', 'stage']).where('pipeline_id', '=', p.pipeline_id).forUpdate().executeTakeFirst();
    if (!locked || locked.state !== 'running' || locked.stage !== stage.stage) return false;
    const moved = await trx
      .updateTable('scheduler_stages')
      .set({ state: v.kind, resolved: now, outcome: JSON.stringify(v.outcome) })
      .where('pipeline_id', '=', p.pipeline_id)
      .where('stage', '=', stage.stage)
      .where('state', 'in', from)
      .executeTakeFirst();
    if (moved.numUpdatedRows !== 1n) return false;
    const pipeline = trx.updateTable('scheduler_pipelines').where('pipeline_id', '=', p.pipeline_id);
    if (v.kind === 'failed') {
      await pipeline.set({ state: 'failed', reason: v.reason, updated: now, resolved: now }).execute();
    } else if (stage.stage + 1 < stages.length) {
      await pipeline.set({ stage: stage.stage + 1, updated: now }).execute();
      await trx
        .insertInto('scheduler_stages')
        .values({ pipeline_id: p.pipeline_id, stage: stage.stage + 1, task_group_id: taskGroupIdOf(p.pipeline_id, stage.stage + 1), state: 'submitting', created: now })
        .execute();
    } else {
      await pipeline.set({ state: 'completed', updated: now, resolved: now }).execute();
    }
    return true;
  });
}

/** Does whatever the pipeline needs next; returns when it waits on the queue or is resolved. */
export async function advance(s: SchedulerCtx, pipelineId: string): Promise<void> {
  for (;;) {
    const p = await loadPipeline(s, pipelineId);
    if (!p || p.state !== 'running') return;
    const def = p.definition as unknown as Pipeline;
    const stage = await ensureStage(s, p);
    const stageName = def.stages[stage.stage]!.name;
    if (stage.state === 'submitting') {
      const problem = await submitStage(s, p, stage);
      if (problem) {
        const reason = `stage ${stageName}: ${problem}`;
        if (await conclude(s, p, stage, { kind: 'failed', outcome: [], reason }, ['submitting'])) {
          s.log.warn({ pipelineId, stage: stage.stage, reason }, 'pipeline failed');
        }
        return;
      }
    }
    const v = verdictOf(await stageOutcome(s, p, stage.stage), stageName);
    if (v.kind === 'waiting') return;
    if (!(await conclude(s, p, stage, v, ['submitted']))) return;
    if (v.kind === 'failed') {
      s.log.warn({ pipelineId, stage: stage.stage, reason: v.reason }, 'pipeline failed');
      // what is still running of the stage would only keep workers busy
      await s.queue.request('POST', `/task-group/${stage.task_group_id}/cancel`).catch((err: unknown) => {
        s.log.warn({ err, taskGroupId: stage.task_group_id }, 'could not cancel the rest of a failed stage');
      });
      return;
    }
    s.log.info({ pipelineId, stage: stage.stage }, 'stage completed');
  }
}
