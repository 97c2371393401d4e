// Task definitions for tests: valid by default, every field overridable.
import taskcluster from 'taskcluster-client';

export const slugid = (): string => taskcluster.slugid();

export function taskDef(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    taskQueueId: 'test-prov/test-wt',
    created: taskcluster.fromNowJSON('0 seconds'),
    deadline: taskcluster.fromNowJSON('1 day'),
    payload: {},
    metadata: { name: 'test task', description: 'a task made by a test', owner: 'tests@example.com', source: 'https://example.com/tests' },
    ...overrides,
  };
}

/** A unique task queue id, so tests sharing a service do not claim each other's tasks. */
export function uniqueQueue(): string {
  return `test-prov/wt-${Math.random().toString(36).slice(2, 10)}`;
}

/** Creates `n` tasks in a task queue, one after the other (so in FIFO order); returns their ids. */
export async function createTasks(queue: any, taskQueueId: string, n: number, overrides: Record<string, unknown> = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const taskId = slugid();
    await queue.createTask(taskId, taskDef({ taskQueueId, ...overrides }));
    ids.push(taskId);
  }
  return ids;
}
