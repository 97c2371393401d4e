// Endpoints that define and read tasks.
import { endpoint, type ApiRequest } from '../http/endpoint.js';
import { ApiError } from '../http/errors.js';
import { decodeToken, encodeToken, pageLimit } from '../http/paging.js';
import { createTask } from './create.js';
import { loadTask, loadTasks, toDefinition, toStatus } from './status.js';

async function mustLoad(req: { ctx: { db: any } }, taskId: string) {
  const t = await loadTask(req.ctx.db, taskId);
  if (!t) throw new ApiError('ResourceNotFound', `Task ${taskId} not found`, { taskId });
  return t;
}

/**
 * `tasks` and `statuses` page through the requested ids in the order given (the token is the
 * offset of the next id); unknown ids are left out of a page, so a page may come back short.
 */
async function pageOfTasks(req: ApiRequest<Record<string, string>, { taskIds: string[] }, { limit?: string; continuationToken?: string }>) {
  const limit = pageLimit(req.query);
  const token = decodeToken(req.query.continuationToken);
  const offset = token ? token[0] : 0;
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0 || (token && token.length !== 1)) {
    throw new ApiError('InvalidRequestArguments', 'continuationToken is not valid; pass the token from the previous page unchanged');
  }
  const ids = req.body.taskIds.slice(offset, offset + limit);
  const byId = new Map((await loadTasks(req.ctx.db, ids)).map((t) => [t.task.task_id, t]));
  const found = [...new Set(ids)].flatMap((id) => byId.get(id) ?? []);
  const next = offset + limit;
  return { found, continuationToken: next < req.body.taskIds.length ? encodeToken([next]) : undefined };
}

export const taskEndpoints = [
  endpoint({
    name: 'createTask', method: 'PUT', route: '/task/<taskId>',
    input: 'v1/create-task-request.json', output: 'v1/task-status-response.json',
    scopes: {
      AllOf: [
        { for: 'scope', in: 'scopes', each: '<scope>' },
        { for: 'route', in: 'routes', each: 'queue:route:<route>' },
        'queue:create-task:project:<projectId>',
        'queue:scheduler-id:<schedulerId>',
        { AnyOf: [{ for: 'priority', in: 'priorities', each: 'queue:create-task:<priority>:<provisionerId>/<workerType>' }] },
      ],
    },
    stability: 'stable', category: 'Tasks', title: 'Create New Task',
    description: 'Create a task; an identical repeat returns its status, a different definition under the same taskId is a 409.',
    handler: createTask,
  }),
  endpoint({
    name: 'task', method: 'GET', route: '/task/<taskId>', output: 'v1/task.json',
    scopes: 'queue:get-task:<taskId>',
    stability: 'stable', category: 'Tasks', title: 'Get Task Definition',
    description: 'The task definition with every default filled in.',
    handler: async (req) => toDefinition((await mustLoad(req, req.params.taskId)).task),
  }),
  endpoint({
    name: 'status', method: 'GET', route: '/task/<taskId>/status', output: 'v1/task-status-response.json',
    scopes: 'queue:status:<taskId>',
    stability: 'stable', category: 'Tasks', title: 'Get task status',
    description: 'The task status structure: state and run history.',
    handler: async (req) => ({ status: toStatus(await mustLoad(req, req.params.taskId)) }),
  }),
  endpoint({
    name: 'tasks', method: 'POST', route: '/tasks', query: ['continuationToken', 'limit'],
    input: 'v1/tasks-request.json', output: 'v1/tasks-response.json',
    scopes: { AllOf: [{ for: 'taskId', in: 'taskIds', each: 'queue:get-task:<taskId>' }] },
    stability: 'experimental', category: 'Tasks', title: 'Get Multiple Task Definitions',
    description: 'Definitions of several tasks; unknown taskIds are left out.',
    handler: async (req) => {
      req.authorize({ taskIds: req.body.taskIds });
      const { found, continuationToken } = await pageOfTasks(req);
      return { tasks: found.map((t) => ({ taskId: t.task.task_id, task: toDefinition(t.task) })), ...(continuationToken ? { continuationToken } : {}) };
    },
  }),
  endpoint({
    name: 'statuses', method: 'POST', route: '/tasks/status', query: ['continuationToken', 'limit'],
    input: 'v1/tasks-request.json', output: 'v1/tasks-statuses-response.json',
    scopes: { AllOf: [{ for: 'taskId', in: 'taskIds', each: 'queue:status:<taskId>' }] },
    stability: 'experimental', category: 'Tasks', title: 'Get Multiple Task Statuses',
    description: 'Statuses of several tasks; unknown taskIds are left out.',
    handler: async (req) => {
      req.authorize({ taskIds: req.body.taskIds });
      const { found, continuationToken } = await pageOfTasks(req);
      return { statuses: found.map((t) => ({ taskId: t.task.task_id, status: toStatus(t) })), ...(continuationToken ? { continuationToken } : {}) };
    },
  }),
];

export { mustLoad };
