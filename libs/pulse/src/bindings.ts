// Typed bindings, shaped like taskcluster-client's QueueEvents: `events.taskCompleted({taskGroupId})`
// gives `{exchange, routingKeyPattern}` (words not given become `*`, the reserved tail `#`), and
// carries the exchange's message type so a consumer's handler sees typed payloads.
import type {
  ArtifactCreatedMessage,
  TaskCompletedMessage,
  TaskDefinedMessage,
  TaskExceptionMessage,
  TaskFailedMessage,
  TaskGroupChangedMessage,
  TaskPendingMessage,
  TaskRunningMessage,
} from '@conveyor/schemas';
import { defaultExchangePrefix, exchangeByName, type ExchangeDefinition } from './exchanges.js';

/** Message body by exchange name (without prefix). */
export interface MessageTypes {
  'task-defined': TaskDefinedMessage;
  'task-pending': TaskPendingMessage;
  'task-running': TaskRunningMessage;
  'artifact-created': ArtifactCreatedMessage;
  'task-completed': TaskCompletedMessage;
  'task-failed': TaskFailedMessage;
  'task-exception': TaskExceptionMessage;
  'task-group-resolved': TaskGroupChangedMessage;
  'task-group-sealed': TaskGroupChangedMessage;
}

export type ExchangeName = keyof MessageTypes;

export interface Binding<E extends ExchangeName = ExchangeName> {
  /** Full exchange name, prefix included. */
  exchange: string;
  routingKeyPattern: string;
  /** Exchange name without prefix; types the messages this binding delivers. */
  name: E;
}

/** Words of a task routing key a binding may fix; the others match anything. */
export interface TaskKeyFilter {
  taskId?: string;
  runId?: number | string;
  workerGroup?: string;
  workerId?: string;
  provisionerId?: string;
  workerType?: string;
  schedulerId?: string;
  taskGroupId?: string;
}

export interface GroupKeyFilter {
  taskGroupId?: string;
  schedulerId?: string;
}

/**
 * A pattern from filter values, or a string used verbatim (e.g. `route.index.project.#`).
 * Like taskcluster-client, a value with a dot is refused: it would shift every later word.
 */
export function patternFor(def: ExchangeDefinition, filter: Record<string, unknown> | string | undefined): string {
  if (typeof filter === 'string') return filter;
  const values = filter ?? {};
  return def.routingKey
    .map((w) => {
      if (w.constant) return w.constant;
      const v = values[w.name];
      if (v === undefined || v === null) return w.multipleWords ? '#' : '*';
      const s = String(v);
      if (!w.multipleWords && s.includes('.')) throw new Error(`routing key word ${w.name} cannot contain dots: ${s}`);
      return s;
    })
    .join('.');
}

export class QueueEvents {
  readonly exchangePrefix: string;

  constructor(opts: { exchangePrefix?: string } = {}) {
    this.exchangePrefix = opts.exchangePrefix ?? defaultExchangePrefix;
  }

  /** A binding on any exchange by name, for code that picks the exchange at run time. */
  binding<E extends ExchangeName>(name: E, filter?: Record<string, unknown> | string): Binding<E> {
    const def = exchangeByName(name);
    if (!def) throw new Error(`unknown exchange ${name}`);
    return { exchange: this.exchangePrefix + def.name, routingKeyPattern: patternFor(def, filter), name };
  }

  taskDefined(filter?: TaskKeyFilter | string) {
    return this.binding('task-defined', filter as Record<string, unknown>);
  }
  taskPending(filter?: TaskKeyFilter | string) {
    return this.binding('task-pending', filter as Record<string, unknown>);
  }
  taskRunning(filter?: TaskKeyFilter | string) {
    return this.binding('task-running', filter as Record<string, unknown>);
  }
  artifactCreated(filter?: TaskKeyFilter | string) {
    return this.binding('artifact-created', filter as Record<string, unknown>);
  }
  taskCompleted(filter?: TaskKeyFilter | string) {
    return this.binding('task-completed', filter as Record<string, unknown>);
  }
  taskFailed(filter?: TaskKeyFilter | string) {
    return this.binding('task-failed', filter as Record<string, unknown>);
  }
  taskException(filter?: TaskKeyFilter | string) {
    return this.binding('task-exception', filter as Record<string, unknown>);
  }
  taskGroupResolved(filter?: GroupKeyFilter | string) {
    return this.binding('task-group-resolved', filter as Record<string, unknown>);
  }
  taskGroupSealed(filter?: GroupKeyFilter | string) {
    return this.binding('task-group-sealed', filter as Record<string, unknown>);
  }
}
