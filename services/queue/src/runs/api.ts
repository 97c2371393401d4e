// Endpoints that move runs: schedule, rerun, cancel, reclaim and the three reports.
import { taskCredentials } from '../claims/credentials.js';
import { claimUntil } from '../claims/claim.js';
import { endpoint, type ApiRequest } from '../http/endpoint.js';
import { ApiError } from '../http/errors.js';
import { taskMessage } from '../outbox/messages.js';
import { mustLoad } from '../tasks/api.js';
import { isResolvedState, taskState, toStatus } from '../tasks/status.js';
import { changeUnresolved } from './after-resolved.js';
import { resolveRun, resolveUnscheduled, type Resolution } from './resolve.js';
import { checkReport, conflict, runOf } from './run-checks.js';
import { submitReport, type ReportItem } from './report-batch.js';
import { addPendingRun } from './schedule.js';
import { assertBeforeDeadline, withLockedTask } from './with-task.js';

const maxRuns = 50;

const schedulerScopes = (verb: string) => ({
  AnyOf: [
    `queue:${verb}:<schedulerId>/<taskGroupId>/<taskId>`,
    `queue:${verb}-in-project:<projectId>`,
    { AllOf: [`queue:${verb}`, 'assume:scheduler-id:<schedulerId>/<taskGroupId>'] },
  ],
});

/** 404, then authorize with the task's own ids (Taskcluster's order for these endpoints). */
async function loadAndAuthorize(req: ApiRequest<{ taskId: string }>): Promise<void> {
  const { task } = await mustLoad(req, req.params.taskId);
  req.authorize({ schedulerId: task.scheduler_id, taskGroupId: task.task_group_id, projectId: task.project_id });
}

/** reportException: one transaction of its own (exceptions are rare, and a retry adds a run). */
async function report(req: ApiRequest<{ taskId: string; runId: string }>, res: Resolution) {
  const { ctx } = req;
  const runId = Number(req.params.runId);
  // the scopes need only URL parameters (checked before the handler); withLockedTask 404s
  req.authorize();
  return withLockedTask(ctx, req.params.taskId, async (trx, t, emit) => {
    if (checkReport(t, runId, res) === 'resolve') emit(...(await resolveRun(ctx, trx, t, runId, res)).messages);
    return { status: toStatus(t) };
  });
}

/** reportCompleted / reportFailed: served in batches shared with concurrent reports. */
function batchedReport(req: ApiRequest<{ taskId: string; runId: string }>, res: ReportItem['res']) {
  // the scopes need only URL parameters (checked before the handler); the batch 404s
  req.authorize();
  return submitReport(req.ctx, { taskId: req.params.taskId, runId: Number(req.params.runId), res });
}

const resolveScopes = 'queue:resolve-task:<taskId>/<runId>';

export const runEndpoints = [
  endpoint({
    name: 'scheduleTask', method: 'POST', route: '/task/<taskId>/schedule', output: 'v1/task-status-response.json',
    scopes: schedulerScopes('schedule-task'),
    stability: 'stable', category: 'Tasks', title: 'Schedule Defined Task',
    description: 'Make an unscheduled task pending even though its dependencies are unresolved. A task with runs is left as it is.',
    handler: async (req) => {
      await loadAndAuthorize(req);
      return withLockedTask(req.ctx, req.params.taskId, async (trx, t, emit) => {
        assertBeforeDeadline(req.ctx, t);
        if (t.runs.length === 0) {
          const run = await addPendingRun(req.ctx, trx, t, 'scheduled');
          emit(taskMessage('taskPending', t, { runId: run.run_id }));
        }
        return { status: toStatus(t) };
      });
    },
  }),
  endpoint({
    name: 'rerunTask', method: 'POST', route: '/task/<taskId>/rerun', output: 'v1/task-status-response.json',
    scopes: schedulerScopes('rerun-task'),
    stability: 'stable', category: 'Tasks', title: 'Rerun a Resolved Task',
    description: 'Add a new pending run to a resolved (or unscheduled) task. A pending or running task is left as it is.',
    handler: async (req) => {
      await loadAndAuthorize(req);
      return withLockedTask(req.ctx, req.params.taskId, async (trx, t, emit) => {
        assertBeforeDeadline(req.ctx, t);
        const state = taskState(t.runs);
        if (state === 'pending' || state === 'running') return { status: toStatus(t) };
        if (t.runs.length >= maxRuns) {
          throw new ApiError('RequestConflict', `Maximum number of runs reached (${maxRuns}) for task ${t.task.task_id}`);
        }
        const retriesLeft = Math.min(t.task.retries, maxRuns - 1 - t.runs.length);
        if (retriesLeft !== t.task.retries_left) {
          t.task.retries_left = retriesLeft;
          await trx.updateTable('tasks').set({ retries_left: retriesLeft }).where('task_id', '=', t.task.task_id).execute();
        }
        if (isResolvedState(state)) emit(...(await changeUnresolved(trx, t.task.task_group_id, 1)));
        const run = await addPendingRun(req.ctx, trx, t, 'rerun');
        emit(taskMessage('taskPending', t, { runId: run.run_id }));
        return { status: toStatus(t) };
      });
    },
  }),
  endpoint({
    name: 'cancelTask', method: 'POST', route: '/task/<taskId>/cancel', output: 'v1/task-status-response.json',
    scopes: schedulerScopes('cancel-task'),
    stability: 'stable', category: 'Tasks', title: 'Cancel Task',
    description: 'Resolve the task as exception/canceled. A resolved task is left as it is; its worker learns of the cancel from reclaimTask (409).',
    handler: async (req) => {
      await loadAndAuthorize(req);
      return withLockedTask(req.ctx, req.params.taskId, async (trx, t, emit) => {
        assertBeforeDeadline(req.ctx, t);
        const state = taskState(t.runs);
        if (state === 'unscheduled') {
          emit(...(await resolveUnscheduled(req.ctx, trx, t, 'canceled')));
        } else if (state === 'pending' || state === 'running') {
          const outcome = await resolveRun(req.ctx, trx, t, t.runs.length - 1, { state: 'exception', reason: 'canceled' });
          emit(...outcome.messages);
        }
        return { status: toStatus(t) };
      });
    },
  }),
  endpoint({
    name: 'reclaimTask', method: 'POST', route: '/task/<taskId>/runs/<runId>/reclaim', output: 'v1/task-reclaim-response.json',
    scopes: 'queue:reclaim-task:<taskId>/<runId>',
    stability: 'stable', category: 'Worker Interface', title: 'Reclaim task',
    description: 'Extend the claim of a running run and get fresh credentials. 409 once the run is no longer running: the worker should stop.',
    handler: async (req) => {
      const { ctx } = req;
      const runId = Number(req.params.runId);
      // the scopes need only URL parameters (checked before the handler); withLockedTask 404s
      req.authorize();
      return withLockedTask(ctx, req.params.taskId, async (trx, t) => {
        const run = runOf(t, runId);
        assertBeforeDeadline(ctx, t);
        if (run.state !== 'running' || runId !== t.runs.length - 1) throw conflict(t, runId, 'it cannot be reclaimed');
        const takenUntil = claimUntil(ctx);
        await trx.updateTable('runs').set({ taken_until: takenUntil }).where('task_id', '=', run.task_id).where('run_id', '=', runId).execute();
        run.taken_until = takenUntil;
        return {
          status: toStatus(t),
          runId,
          workerGroup: run.worker_group,
          workerId: run.worker_id,
          takenUntil: takenUntil.toISOString(),
          credentials: taskCredentials(ctx, {
            taskId: run.task_id, runId, workerGroup: run.worker_group!, workerId: run.worker_id!, takenUntil, scopes: t.task.scopes,
          }),
        };
      });
    },
  }),
  endpoint({
    name: 'reportCompleted', method: 'POST', route: '/task/<taskId>/runs/<runId>/completed', output: 'v1/task-status-response.json',
    scopes: resolveScopes,
    stability: 'stable', category: 'Worker Interface', title: 'Report Run Completed',
    description: 'Resolve a running run as completed.',
    handler: (req) => batchedReport(req, { state: 'completed', reason: 'completed' }),
  }),
  endpoint({
    name: 'reportFailed', method: 'POST', route: '/task/<taskId>/runs/<runId>/failed', output: 'v1/task-status-response.json',
    scopes: resolveScopes,
    stability: 'stable', category: 'Worker Interface', title: 'Report Run Failed',
    description: 'Resolve a running run as failed (the task ran and did not succeed).',
    handler: (req) => batchedReport(req, { state: 'failed', reason: 'failed' }),
  }),
  endpoint({
    name: 'reportException', method: 'POST', route: '/task/<taskId>/runs/<runId>/exception',
    input: 'v1/task-exception-request.json', output: 'v1/task-status-response.json',
    scopes: resolveScopes,
    stability: 'stable', category: 'Worker Interface', title: 'Report Task Exception',
    description: 'Resolve a running run as exception. worker-shutdown and intermittent-task are retried while retries remain.',
    handler: async (req) => {
      const reason = (req.body as { reason: string }).reason;
      const retry = reason === 'worker-shutdown' ? 'retry' : reason === 'intermittent-task' ? 'task-retry' : undefined;
      const runId = Number(req.params.runId);
      // the reason of an exception is immutable: a different one for a run already resolved is a conflict
      const t = await mustLoad(req, req.params.taskId);
      const run = t.runs[runId];
      if (run?.state === 'exception' && run.reason_resolved !== reason) {
        req.authorize();
        throw new ApiError('RequestConflict', `Run ${runId} of task ${req.params.taskId} was already resolved as exception/${run.reason_resolved}`);
      }
      return report(req, { state: 'exception', reason, retry });
    },
  }),
];
