// `{status, task}` entries of the task listings (listTaskGroup, listDependentTasks), keyset-paged on
// task id: a page is one index range scan, however deep.
import type { Db } from '../db/database.js';
import { page, pageLimit } from '../http/paging.js';
import { loadTasks, toDefinition, toStatus } from '../tasks/status.js';
import { tokenKey } from '../workers/keyset.js';

export interface TaskEntry {
  status: ReturnType<typeof toStatus>;
  task: Record<string, unknown>;
}

export interface Paging {
  limit?: string;
  continuationToken?: string;
}

/** The last task id of the previous page ('' for the first), and the page size. */
export function pageStart(query: Paging): { after: string; limit: number } {
  return { after: tokenKey(query.continuationToken, ['text'])?.[0] ?? '', limit: pageLimit(query) };
}

/** Loads the tasks of `ids` (fetched with LIMIT limit+1, in order) as one page of entries. */
export async function entriesPage(db: Db, ids: string[], limit: number): Promise<{ tasks: TaskEntry[]; continuationToken?: string }> {
  const { rows, continuationToken } = page(ids, limit, (id) => [id]);
  const byId = new Map((await loadTasks(db, rows)).map((t) => [t.task.task_id, t]));
  const tasks: TaskEntry[] = [];
  for (const id of rows) {
    const t = byId.get(id);
    // an edge can outlive its dependent for a moment during expiration
    if (t) tasks.push({ status: toStatus(t), task: toDefinition(t.task) });
  }
  return continuationToken ? { tasks, continuationToken } : { tasks };
}
