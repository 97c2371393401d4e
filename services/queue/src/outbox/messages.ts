// Pulse message bodies and routing keys, built from the exchange catalogue. A message reports the
// state committed with it, so it is built from the rows the transition just wrote.
import { buildRoutingKey, exchanges, type ExchangeKey } from '@conveyor/pulse';
import { splitQueueId, toStatus, type TaskWithRuns } from '../tasks/status.js';

export interface OutboxMessage {
  /** Exchange name without the prefix, e.g. `task-pending`. */
  exchange: string;
  routingKey: string;
  cc: string[];
  body: Record<string, unknown>;
}

export type TaskExchange = Exclude<ExchangeKey, 'taskGroupResolved' | 'taskGroupSealed'>;

export interface RunFields {
  runId?: number;
  workerGroup?: string | null;
  workerId?: string | null;
  takenUntil?: string;
  artifact?: Record<string, unknown>;
}

/** `status`: toStatus(t), when the caller has it already (it answers with the same object). */
export function taskMessage(key: TaskExchange, t: TaskWithRuns, fields: RunFields = {}, status = toStatus(t)): OutboxMessage {
  const exchange = exchanges[key];
  const body: Record<string, unknown> = { version: 1, status };
  if (fields.runId !== undefined) body.runId = fields.runId;
  if (fields.workerGroup) body.workerGroup = fields.workerGroup;
  if (fields.workerId) body.workerId = fields.workerId;
  if (fields.takenUntil) body.takenUntil = fields.takenUntil;
  if (fields.artifact) body.artifact = fields.artifact;
  else body.task = { tags: t.task.tags };
  const routingKey = buildRoutingKey(exchange, {
    taskId: status.taskId,
    runId: fields.runId,
    workerGroup: fields.workerGroup,
    workerId: fields.workerId,
    ...splitQueueId(status.taskQueueId),
    schedulerId: status.schedulerId,
    taskGroupId: status.taskGroupId,
  });
  return { exchange: exchange.name, routingKey, cc: t.task.routes.map((r) => `route.${r}`), body };
}

export interface GroupFields {
  taskGroupId: string;
  schedulerId: string;
  expires: Date | string;
  sealed?: Date | string | null;
}

export function groupMessage(key: 'taskGroupResolved' | 'taskGroupSealed', g: GroupFields): OutboxMessage {
  const exchange = exchanges[key];
  const body: Record<string, unknown> = {
    version: 1,
    taskGroupId: g.taskGroupId,
    schedulerId: g.schedulerId,
    expires: new Date(g.expires).toISOString(),
  };
  if (g.sealed) body.sealed = new Date(g.sealed).toISOString();
  return {
    exchange: exchange.name,
    routingKey: buildRoutingKey(exchange, { taskGroupId: g.taskGroupId, schedulerId: g.schedulerId }),
    cc: [],
    body,
  };
}
