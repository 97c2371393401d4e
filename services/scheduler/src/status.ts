// A pipeline's status for people and the CLI: every stage with its task group and tasks; the
// running stage's task states come live from the queue, finished stages from their recorded outcome.
import type { Pipeline } from './pipeline.js';
import { stageOutcome, type SchedulerCtx, type TaskOutcome } from './progress.js';
import { taskGroupIdOf, taskIdOf } from './pipeline.js';

export interface PipelineStatus {
  pipelineId: string;
  name: string;
  state: string;
  reason?: string;
  submittedBy: string;
  created: string;
  resolved?: string;
  stages: Array<{ name: string; state: string; taskGroupId: string; tasks: TaskOutcome[] }>;
}

export async function pipelineStatus(s: SchedulerCtx, pipelineId: string): Promise<PipelineStatus | undefined> {
  const p = await s.db.selectFrom('scheduler_pipelines').selectAll().where('pipeline_id', '=', pipelineId).executeTakeFirst();
  if (!p) return undefined;
  const rows = await s.db.selectFrom('scheduler_stages').selectAll().where('pipeline_id', '=', pipelineId).execute();
  const byStage = new Map(rows.map((r) => [r.stage, r]));
  const def = p.definition as unknown as Pipeline;
  const stages = await Promise.all(
    def.stages.map(async (stage, i) => {
      const row = byStage.get(i);
      let tasks: TaskOutcome[];
      if (row?.outcome && (row.outcome as unknown[]).length > 0) {
        tasks = row.outcome as unknown as TaskOutcome[];
      } else if (row && row.state !== 'failed') {
        tasks = await stageOutcome(s, p, i).catch(() => notStarted(pipelineId, i, stage.tasks));
      } else {
        tasks = notStarted(pipelineId, i, stage.tasks);
      }
      return { name: stage.name, state: row?.state ?? 'waiting', taskGroupId: taskGroupIdOf(pipelineId, i), tasks };
    }),
  );
  return {
    pipelineId,
    name: p.name,
    state: p.state,
    ...(p.reason ? { reason: p.reason } : {}),
    submittedBy: p.submitted_by,
    created: new Date(p.created).toISOString(),
    ...(p.resolved ? { resolved: new Date(p.resolved).toISOString() } : {}),
    stages,
  };
}

function notStarted(pipelineId: string, stage: number, tasks: Array<{ name: string }>): TaskOutcome[] {
  return tasks.map((t) => ({ name: t.name, taskId: taskIdOf(pipelineId, stage, t.name), state: 'not-submitted' }));
}
