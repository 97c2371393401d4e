// The exchange catalogue: name, routing-key words in order, message schema. The queue's outbox
// writer, the relay, the consumer library and the exchange reference all read this one table.

export interface RoutingKeyWord {
  name: string;
  /** Longest value allowed in this word (AMQP routing keys are limited to 255 bytes). */
  maxSize: number;
  required: boolean;
  /** Only the last word may span several dot-separated words. */
  multipleWords?: boolean;
  /** A word that is always this constant (routingKeyKind). */
  constant?: string;
}

export interface ExchangeDefinition {
  name: string;
  title: string;
  schema: string;
  routingKey: RoutingKeyWord[];
  /** Task exchanges carry CC `route.<r>` per task route; group exchanges do not. */
  kind: 'task' | 'group';
}

const word = (name: string, maxSize: number, required: boolean): RoutingKeyWord => ({ name, maxSize, required });

function taskKey(required: { runId: boolean; worker: boolean }): RoutingKeyWord[] {
  return [
    { name: 'routingKeyKind', maxSize: 7, required: true, constant: 'primary' },
    word('taskId', 22, true),
    word('runId', 3, required.runId),
    word('workerGroup', 38, required.worker),
    word('workerId', 38, required.worker),
    word('provisionerId', 38, true),
    word('workerType', 38, true),
    word('schedulerId', 38, true),
    word('taskGroupId', 22, true),
    { name: 'reserved', maxSize: 1, required: false, multipleWords: true },
  ];
}

const groupKey: RoutingKeyWord[] = [
  { name: 'routingKeyKind', maxSize: 7, required: true, constant: 'primary' },
  word('taskGroupId', 22, true),
  word('schedulerId', 38, true),
  { name: 'reserved', maxSize: 1, required: false, multipleWords: true },
];

export const exchanges = {
  taskDefined: {
    name: 'task-defined', title: 'Task Defined Messages', schema: 'v1/task-defined-message.json',
    routingKey: taskKey({ runId: false, worker: false }), kind: 'task',
  },
  taskPending: {
    name: 'task-pending', title: 'Task Pending Messages', schema: 'v1/task-pending-message.json',
    routingKey: taskKey({ runId: true, worker: false }), kind: 'task',
  },
  taskRunning: {
    name: 'task-running', title: 'Task Running Messages', schema: 'v1/task-running-message.json',
    routingKey: taskKey({ runId: true, worker: true }), kind: 'task',
  },
  artifactCreated: {
    name: 'artifact-created', title: 'Artifact Creation Messages', schema: 'v1/artifact-created-message.json',
    routingKey: taskKey({ runId: true, worker: true }), kind: 'task',
  },
  taskCompleted: {
    name: 'task-completed', title: 'Task Completed Messages', schema: 'v1/task-completed-message.json',
    routingKey: taskKey({ runId: true, worker: true }), kind: 'task',
  },
  taskFailed: {
    name: 'task-failed', title: 'Task Failed Messages', schema: 'v1/task-failed-message.json',
    routingKey: taskKey({ runId: false, worker: false }), kind: 'task',
  },
  taskException: {
    name: 'task-exception', title: 'Task Exception Messages', schema: 'v1/task-exception-message.json',
    routingKey: taskKey({ runId: false, worker: false }), kind: 'task',
  },
  taskGroupResolved: {
    name: 'task-group-resolved', title: 'Task Group Resolved Messages', schema: 'v1/task-group-changed-message.json',
    routingKey: groupKey, kind: 'group',
  },
  taskGroupSealed: {
    name: 'task-group-sealed', title: 'Task Group Sealed Messages', schema: 'v1/task-group-changed-message.json',
    routingKey: groupKey, kind: 'group',
  },
} as const satisfies Record<string, ExchangeDefinition>;

export type ExchangeKey = keyof typeof exchanges;

export const defaultExchangePrefix = 'exchange/taskcluster-queue/v1/';

/**
 * The routing key of a message: the words in order, `_` for an absent value. Values are checked
 * against their size and must not contain dots (they would shift every later word).
 */
export function buildRoutingKey(
  exchange: ExchangeDefinition,
  values: Record<string, string | number | undefined | null>,
): string {
  return exchange.routingKey
    .map((w) => {
      if (w.constant) return w.constant;
      const v = values[w.name];
      if (v === undefined || v === null || v === '') {
        if (w.required) throw new Error(`routing key word ${w.name} is required for ${exchange.name}`);
        return '_';
      }
      const s = String(v);
      if (!w.multipleWords && s.includes('.')) throw new Error(`routing key word ${w.name} may not contain '.'`);
      if (s.length > w.maxSize) throw new Error(`routing key word ${w.name} is longer than ${w.maxSize}`);
      return s;
    })
    .join('.');
}

/**
 * A binding pattern like taskcluster-client's QueueEvents: words not given become `*`, the
 * multi-word tail becomes `#`.
 */
export function bindingPattern(
  exchange: ExchangeDefinition,
  values: Record<string, string | number | undefined | null> = {},
): string {
  return exchange.routingKey
    .map((w) => {
      if (w.constant) return w.constant;
      const v = values[w.name];
      if (v === undefined || v === null) return w.multipleWords ? '#' : '*';
      return String(v);
    })
    .join('.');
}

export function exchangeByName(name: string): ExchangeDefinition | undefined {
  return Object.values(exchanges).find((e) => e.name === name);
}
