// listDependentTasks: the tasks that depend on a task, with their status, keyset-paged.
import { sql } from 'kysely';
import { entriesPage, pageStart } from '../groups/entries.js';
import { endpoint } from '../http/endpoint.js';
import { mustLoad } from '../tasks/api.js';

export const dependencyEndpoints = [
  endpoint({
    name: 'listDependentTasks', method: 'GET', route: '/task/<taskId>/dependents', query: ['continuationToken', 'limit'],
    output: 'v1/list-dependent-tasks-response.json',
    scopes: 'queue:list-dependent-tasks:<taskId>',
    stability: 'stable', category: 'Tasks', title: 'List Dependent Tasks',
    description: 'The tasks that list this task in their dependencies, with their status, ordered by taskId, a page at a time.',
    handler: async (req) => {
      const { taskId } = req.params;
      const { after, limit } = pageStart(req.query);
      await mustLoad(req, taskId);
      const ids = await sql<{ dependent_task_id: string }>`
        SELECT dependent_task_id FROM task_dependencies WHERE required_task_id = ${taskId} AND dependent_task_id > ${after}
        ORDER BY dependent_task_id LIMIT ${limit + 1}`.execute(req.ctx.db);
      return { taskId, ...(await entriesPage(req.ctx.db, ids.rows.map((r) => r.dependent_task_id), limit)) };
    },
  }),
];
