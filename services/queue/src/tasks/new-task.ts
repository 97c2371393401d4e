// What a new task commits besides its rows: task-defined (the task as stored, with no run yet) and,
// when it is scheduled at once, task-pending with its first run. Built from the rows about to be
// written, by both ways a task is created (create.ts alone, create-batch.ts together with others).
import { taskMessage, type OutboxMessage } from '../outbox/messages.js';
import { toStatus, type RunRow, type TaskRow, type TaskStatus, type TaskWithRuns } from './status.js';

export function newTaskMessages(row: TaskRow, run: RunRow | undefined): { messages: OutboxMessage[]; status: TaskStatus } {
  const t: TaskWithRuns = { task: row, runs: [] };
  // the answer reports the state of the last message: one status object for both
  if (!run) {
    const status = toStatus(t);
    return { messages: [taskMessage('taskDefined', t, {}, status)], status };
  }
  const messages = [taskMessage('taskDefined', t)];
  t.runs.push(run);
  const status = toStatus(t);
  messages.push(taskMessage('taskPending', t, { runId: run.run_id }, status));
  return { messages, status };
}
