// The preconditions the worker-interface calls check on a locked task: which run is meant, and
// whether a report resolves it, repeats an earlier report, or conflicts. The single-task path
// (withLockedTask) and the batched reports (report-batch.ts) decide with these same functions, so
// a report answers the same whichever path served it.
import { ApiError } from '../http/errors.js';
import type { TaskWithRuns } from '../tasks/status.js';
import type { Resolution } from './resolve.js';

export function runOf(t: TaskWithRuns, runId: number) {
  const run = t.runs[runId];
  if (!run) throw new ApiError('ResourceNotFound', `Run ${runId} of task ${t.task.task_id} not found`);
  return run;
}

export function conflict(t: TaskWithRuns, runId: number, what: string): ApiError {
  const run = t.runs[runId]!;
  const latest = runId === t.runs.length - 1;
  return new ApiError(
    'RequestConflict',
    `Run ${runId} of task ${t.task.task_id} is ${latest ? run.state : `not the latest run (run ${t.runs.length - 1} is)`}; ${what}`,
    { taskId: t.task.task_id, runId },
  );
}

/**
 * What a report does to run `runId`: 'resolve' it (it is the latest run and running), or answer
 * as a 'repeat' of the report that resolved it so (a retried request answers as the first did).
 * Throws the 404 of an unknown run or the 409 of any other case.
 */
export function checkReport(t: TaskWithRuns, runId: number, res: Resolution): 'resolve' | 'repeat' {
  const run = runOf(t, runId);
  if (run.state === res.state && run.reason_resolved === res.reason) return 'repeat';
  if (run.state !== 'running' || runId !== t.runs.length - 1) throw conflict(t, runId, `it cannot be resolved as ${res.reason}`);
  return 'resolve';
}
