// The scheduler service: its HTTP API, and what wakes pipelines up — task-group-resolved from
// RabbitMQ on a durable queue (or, without AMQP_URL, from the queue's HTTP event stream, resumed
// from the last event id it stored), plus a reconcile loop over running pipelines that makes up
// for anything missed (a message that arrived while a stage was still being submitted, a restart).
import { QueueClient } from '@conveyor/client';
import { consume, followEventStream, QueueEvents, type Consumer } from '@conveyor/pulse';
import { encryptPlainTokens } from '../../queue/src/auth/clients.js';
import { clientTokenKey, type Config } from '../../queue/src/config.js';
import { createDb, openDatabase } from '../../queue/src/db/database.js';
import { buildSchedulerApi, schedulerApiPrefix } from './api.js';
import { advance, type Logger, type SchedulerCtx } from './progress.js';

export interface SchedulerOptions {
  /** The queue's configuration: database, AMQP, exchange prefix, root client (for Hawk checks). */
  queueConfig: Config;
  /** Where the queue API is, and the scheduler's credentials for it. */
  rootUrl: string;
  credentials: { clientId: string; accessToken: string };
  schedulerId?: string;
  /** HTTP port of the scheduler API (0: any free port). */
  port?: number;
  reconcileIntervalMs?: number;
  log: Logger;
}

export interface Scheduler {
  ctx: SchedulerCtx;
  /** Base URL of the scheduler API (…/api/scheduler/v1). */
  url: string;
  /** Runs advance() for the pipeline, once at a time per pipeline; resolves when it is done. */
  kick(pipelineId: string): Promise<void>;
  /** One pass over every running pipeline. */
  reconcile(): Promise<number>;
  stop(): Promise<void>;
}

export async function startScheduler(o: SchedulerOptions): Promise<Scheduler> {
  const schedulerId = o.schedulerId ?? 'conveyor-scheduler';
  const { db } = createDb(o.queueConfig.databaseUrl!, 5);
  await openDatabase(db, o.queueConfig, o.log);
  // it authenticates against the queue's clients, so it may be the first of a new version to start
  await encryptPlainTokens(db, clientTokenKey(o.queueConfig), o.log);
  const s: SchedulerCtx = { db, schedulerId, log: o.log, queue: new QueueClient({ rootUrl: o.rootUrl, credentials: o.credentials }) };

  const inFlight = new Map<string, Promise<void>>();
  const again = new Set<string>();
  const kick = (pipelineId: string): Promise<void> => {
    const running = inFlight.get(pipelineId);
    if (running) {
      again.add(pipelineId);
      return running;
    }
    const run = (async () => {
      do {
        again.delete(pipelineId);
        try {
          await advance(s, pipelineId);
        } catch (err) {
          // the queue or the database is away: the reconcile loop tries again
          o.log.warn({ err, pipelineId }, 'could not advance pipeline; will retry');
        }
      } while (again.has(pipelineId));
    })().finally(() => inFlight.delete(pipelineId));
    inFlight.set(pipelineId, run);
    return run;
  };

  const onGroupResolved = async (taskGroupId: string) => {
    const stage = await db.selectFrom('scheduler_stages').select('pipeline_id').where('task_group_id', '=', taskGroupId).executeTakeFirst();
    if (stage) await kick(stage.pipeline_id);
  };

  const reconcile = async () => {
    const rows = await db.selectFrom('scheduler_pipelines').select('pipeline_id').where('state', '=', 'running').where('scheduler_id', '=', schedulerId).execute();
    for (let i = 0; i < rows.length; i += 8) await Promise.all(rows.slice(i, i + 8).map((r) => kick(r.pipeline_id)));
    return rows.length;
  };

  let consumer: Consumer | undefined;
  let stream: ReturnType<typeof followEventStream> | undefined;
  const binding = new QueueEvents({ exchangePrefix: o.queueConfig.exchangePrefix }).taskGroupResolved({ schedulerId });
  if (o.queueConfig.amqpUrl) {
    consumer = await consume({
      url: o.queueConfig.amqpUrl,
      bindings: [binding],
      // durable: messages published while the scheduler is down wait for it
      queueName: `queue/conveyor-scheduler/${schedulerId}/task-group-resolved`,
      handler: (m) => onGroupResolved(m.payload.taskGroupId),
      log: o.log,
    });
  } else {
    const cursor = `event-stream/${schedulerId}`;
    const saved = await db.selectFrom('scheduler_cursors').select('last_event_id').where('name', '=', cursor).executeTakeFirst();
    stream = followEventStream({
      rootUrl: o.rootUrl,
      exchanges: ['task-group-resolved'],
      routingKeyPatterns: [binding.routingKeyPattern],
      lastEventId: saved?.last_event_id,
      onEvent: async (e) => {
        await onGroupResolved((e.payload as { taskGroupId: string }).taskGroupId);
        await db
          .insertInto('scheduler_cursors')
          .values({ name: cursor, last_event_id: e.messageId })
          .onConflict((oc) => oc.column('name').doUpdateSet({ last_event_id: e.messageId }))
          .execute();
      },
      onError: (err) => o.log.warn({ err }, 'event stream interrupted; reconnecting'),
    });
  }

  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let loop: Promise<unknown> = Promise.resolve();
  const tick = () => {
    loop = reconcile()
      .catch((err) => o.log.warn({ err }, 'reconcile pass failed'))
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, o.reconcileIntervalMs ?? 5000);
      });
  };
  tick();

  const app = await buildSchedulerApi({ s, queueConfig: o.queueConfig, kick: (id) => void kick(id) });
  const address = await app.listen({ port: o.port ?? 8081, host: '0.0.0.0' });
  const url = `http://localhost:${new URL(address).port}${schedulerApiPrefix}`;

  let stopping: Promise<void> | undefined;
  return {
    ctx: s,
    url,
    kick,
    reconcile,
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        clearTimeout(timer);
        await app.close();
        await consumer?.stop();
        await stream?.stop();
        await loop;
        await Promise.all(inFlight.values());
        await db.destroy();
      })()),
  };
}
