// `conveyor relay`: the outbox relay alone (scale it apart from the API; replicas stand by).
// `conveyor listen <exchange>[,<exchange>…] [pattern…]`: tails events for people, from RabbitMQ when
// AMQP_URL is set, else from the HTTP event stream at ROOT_URL (`--sse` forces the stream).
import { consume, exchangeByName, exchanges, followEventStream, QueueEvents, type ExchangeName } from '@conveyor/pulse';
import type pino from 'pino';
import type { Config } from '../config.js';
import { createDb, openDatabase } from '../db/database.js';
import type { Command } from '../main.js';
import { OutboxRelay } from './relay.js';

export const relayCommand: Command = async (config: Config, log: pino.Logger) => {
  if (!config.amqpUrl || !config.databaseUrl) {
    process.stderr.write('conveyor relay needs AMQP_URL and DATABASE_URL\n');
    process.exit(2);
  }
  const { db } = createDb(config.databaseUrl, 1);
  await openDatabase(db, config, log);
  await db.destroy();
  const relay = new OutboxRelay({ config, log }).start();
  log.info({ exchangePrefix: config.exchangePrefix }, 'outbox relay started (one per database is active; others stand by)');
  return () => relay.stop();
};

const usage = `usage: conveyor listen <exchange>[,<exchange>...|all] [pattern ...] [--sse] [--json]
  exchange  task-defined, task-pending, task-running, artifact-created, task-completed, task-failed,
            task-exception, task-group-resolved, task-group-sealed (or all)
  pattern   AMQP topic pattern over the routing key or a CC route (default #), e.g.
            primary.<taskId>.#   primary.*.*.*.*.<provisionerId>.<workerType>.#   route.index.#
  --sse     read GET <ROOT_URL>/api/queue/v1/events even when AMQP_URL is set
  --json    print each message as one JSON line instead of a summary`;

interface Printable {
  messageId: string;
  exchange: string;
  routingKey: string;
  routes: string[];
  payload: any;
}

function summary(m: Printable): string {
  const p = m.payload ?? {};
  const s = p.status;
  const name = m.exchange.slice(m.exchange.lastIndexOf('/') + 1);
  const parts = [new Date().toISOString(), name.padEnd(19)];
  if (s) {
    parts.push(`task=${s.taskId}`, `state=${s.state}`);
    if (p.runId !== undefined) parts.push(`run=${p.runId}`);
    if (p.workerId) parts.push(`worker=${p.workerGroup}/${p.workerId}`);
    if (p.artifact) parts.push(`artifact=${p.artifact.name}`);
    parts.push(`queue=${s.taskQueueId}`);
  } else {
    parts.push(`group=${p.taskGroupId}`, `scheduler=${p.schedulerId}`);
  }
  if (m.routes.length) parts.push(`routes=${m.routes.join(',')}`);
  return parts.join(' ');
}

export const listenCommand: Command = async (config: Config, log: pino.Logger, args: string[]) => {
  const flags = new Set(args.filter((a) => a.startsWith('--')));
  const [which, ...patterns] = args.filter((a) => !a.startsWith('--'));
  if (!which || flags.has('--help')) {
    process.stderr.write(usage + '\n');
    process.exit(which ? 0 : 2);
  }
  const names = which === 'all' ? Object.values(exchanges).map((e) => e.name) : which.split(',');
  for (const n of names) {
    if (!exchangeByName(n)) {
      process.stderr.write(`unknown exchange ${n}\n${usage}\n`);
      process.exit(2);
    }
  }
  const keys = patterns.length ? patterns : ['#'];
  const print = (m: Printable) => process.stdout.write((flags.has('--json') ? JSON.stringify(m) : summary(m)) + '\n');

  if (config.amqpUrl && !flags.has('--sse')) {
    const events = new QueueEvents({ exchangePrefix: config.exchangePrefix });
    const consumer = await consume({
      url: config.amqpUrl,
      bindings: names.flatMap((n) => keys.map((k) => events.binding(n as ExchangeName, k))),
      handler: (m) => void print(m),
      log,
    });
    process.stderr.write(`listening on RabbitMQ (${names.join(', ')}; ${keys.join(' ')}); Ctrl-C stops\n`);
    return () => consumer.stop();
  }
  const stream = followEventStream({
    rootUrl: config.rootUrl,
    exchanges: which === 'all' ? [] : names,
    routingKeyPatterns: keys,
    onEvent: (e) => void print(e),
    onOpen: () => process.stderr.write(`listening on ${config.rootUrl}/api/queue/v1/events (${names.join(', ')}; ${keys.join(' ')}); Ctrl-C stops\n`),
    onError: (err) => log.warn({ err: err.message }, 'event stream interrupted; reconnecting'),
  });
  return () => stream.stop();
};
