// Task group endpoints: read a group and its tasks, seal it, cancel it.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Db } from '../db/database.js';
import type { TaskGroupsTable } from '../db/tables.js';
import { endpoint } from '../http/endpoint.js';
import { ApiError } from '../http/errors.js';
import { groupMessage } from '../outbox/messages.js';
import { writeOutbox } from '../outbox/write.js';
import type { Selectable } from 'kysely';
import { cancelGroup } from './cancel.js';
import { entriesPage, pageStart } from './entries.js';

type GroupRow = Selectable<TaskGroupsTable>;

async function mustLoadGroup(db: Db, taskGroupId: string): Promise<GroupRow> {
  const g = await db.selectFrom('task_groups').selectAll().where('task_group_id', '=', taskGroupId).executeTakeFirst();
  if (!g) throw new ApiError('ResourceNotFound', `Task group ${taskGroupId} not found`, { taskGroupId });
  return g;
}

function groupJson(g: GroupRow) {
  return {
    taskGroupId: g.task_group_id,
    schedulerId: g.scheduler_id,
    expires: new Date(g.expires).toISOString(),
    ...(g.sealed ? { sealed: new Date(g.sealed).toISOString() } : {}),
  };
}

/**
 * Sets `sealed` once; only that first call announces task-group-sealed (a repeat changes nothing
 * and says nothing, where Taskcluster re-publishes). createTask locks the group row to check it,
 * so sealing and creating are atomic with each other.
 */
async function seal(ctx: Ctx, taskGroupId: string): Promise<GroupRow> {
  return ctx.db.transaction().execute(async (trx) => {
    const sealed = await trx
      .updateTable('task_groups')
      .set({ sealed: ctx.clock.now() })
      .where('task_group_id', '=', taskGroupId)
      .where('sealed', 'is', null)
      .returningAll()
      .executeTakeFirst();
    if (!sealed) return trx.selectFrom('task_groups').selectAll().where('task_group_id', '=', taskGroupId).executeTakeFirstOrThrow();
    const g = groupJson(sealed);
    await writeOutbox(trx, ctx.config.exchangePrefix, [groupMessage('taskGroupSealed', { ...g, sealed: sealed.sealed })]);
    return sealed;
  });
}

export const groupEndpoints = [
  endpoint({
    name: 'listTaskGroup', method: 'GET', route: '/task-group/<taskGroupId>/list', query: ['continuationToken', 'limit'],
    output: 'v1/list-task-group-response.json',
    scopes: 'queue:list-task-group:<taskGroupId>',
    stability: 'stable', category: 'Task Groups', title: 'List Task Group',
    description: 'The tasks of a group with their status, ordered by taskId, a page at a time (limit ≤ 1000, continuationToken).',
    handler: async (req) => {
      const { taskGroupId } = req.params;
      const { after, limit } = pageStart(req.query);
      const g = await mustLoadGroup(req.ctx.db, taskGroupId);
      const ids = await sql<{ task_id: string }>`
        SELECT task_id FROM tasks WHERE task_group_id = ${taskGroupId} AND task_id > ${after}
        ORDER BY task_id LIMIT ${limit + 1}`.execute(req.ctx.db);
      return { ...groupJson(g), ...(await entriesPage(req.ctx.db, ids.rows.map((r) => r.task_id), limit)) };
    },
  }),
  endpoint({
    name: 'cancelTaskGroup', method: 'POST', route: '/task-group/<taskGroupId>/cancel', output: 'v1/cancel-task-group-response.json',
    scopes: 'queue:cancel-task-group:<schedulerId>/<taskGroupId>',
    stability: 'experimental', category: 'Task Groups', title: 'Cancel Task Group',
    description:
      'Cancel every unresolved task of a sealed group (exception/canceled, with its task-exception event); tasks past their deadline are left to it. ' +
      'An unsealed group is a 409: seal it first, so no task can join while it is being cancelled. A repeat cancels nothing more.',
    handler: async (req) => {
      const { taskGroupId } = req.params;
      const g = await mustLoadGroup(req.ctx.db, taskGroupId);
      // Taskcluster answers this before checking scopes
      if (!g.sealed) {
        throw new ApiError('RequestConflict', `Task group ${taskGroupId} is not sealed; seal it with sealTaskGroup before cancelling it`, {
          taskGroupId,
        });
      }
      req.authorize({ schedulerId: g.scheduler_id });
      return { taskGroupId, ...(await cancelGroup(req.ctx, taskGroupId)) };
    },
  }),
  endpoint({
    name: 'getTaskGroup', method: 'GET', route: '/task-group/<taskGroupId>', output: 'v1/task-group-response.json',
    scopes: 'queue:list-task-group:<taskGroupId>',
    stability: 'stable', category: 'Task Groups', title: 'Get Task Group',
    description: 'The group: its schedulerId, expires and, once sealed, when.',
    handler: async (req) => groupJson(await mustLoadGroup(req.ctx.db, req.params.taskGroupId)),
  }),
  endpoint({
    name: 'sealTaskGroup', method: 'POST', route: '/task-group/<taskGroupId>/seal', output: 'v1/task-group-response.json',
    scopes: 'queue:seal-task-group:<schedulerId>/<taskGroupId>',
    stability: 'experimental', category: 'Task Groups', title: 'Seal Task Group',
    description: 'Seal the group: createTask into it is a 409 from now on. The first seal publishes task-group-sealed; a repeat returns the group as it is.',
    handler: async (req) => {
      const { taskGroupId } = req.params;
      const g = await mustLoadGroup(req.ctx.db, taskGroupId);
      req.authorize({ schedulerId: g.scheduler_id });
      return groupJson(await seal(req.ctx, taskGroupId));
    },
  }),
];
