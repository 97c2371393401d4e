// What a new task commits besides its rows: task-defined (the task as stored, with no run yet) and,
// when it is scheduled at once, task-pending with its first run. Built from the rows about to be
// written, by both ways a task is created (create.ts alone, create-batch.ts together with others).
import { taskMessage, type OutboxMessage } from '../outbox/messages.js';
import { toStatus, type RunRow, type TaskRow, type TaskStatus, type TaskWithRuns } from './status.js';

export function newTaskMessages(row: TaskRow, run: RunRow | undefined): { messages: OutboxMessage[]; status: TaskStatus } {
  const t: TaskWithRuns = { task: row, runs: [] };
  const messages = [taskMessage('taskDefined', t)];
  if (!run) return { messages, status: messages[0]!.body.status as TaskStatus };
  t.runs.push(run);
  // the answer reports the state task-pending reports: one status object for both
  const status = toStatus(t);
  messages.push(taskMessage('taskPending', t, { runId: run.run_id }, status));
  return { messages, status };
}
