// The `conveyor` command: start (everything in one process, the default), api, background,
// migrate. Other capabilities add their own sub-commands (relay, worker, scheduler, listen).
import pino from 'pino';
import { startQueue } from './app.js';
import { clientTokenKey, ConfigError, loadConfig, type Config } from './config.js';
import { clientCommand } from './auth/clients-cli.js';
import { createDb, DatabaseUnreachable, openDatabase } from './db/database.js';
import { startEmbeddedPostgres, type EmbeddedDb } from './db/embedded.js';
import { listenCommand, relayCommand } from './outbox/commands.js';
import { workerCommand } from '@conveyor/generic-worker';
import { pipelineCommand, schedulerCommand } from '@conveyor/scheduler';
import { startLocalStack } from './local-stack.js';
import { limitHeapGrowth } from './heap.js';

export type Command = (config: Config, log: pino.Logger, args: string[]) => Promise<() => Promise<void>>;

/** Sub-commands beyond the queue's own; other packages register here. */
export const extraCommands: Record<string, Command> = {};
extraCommands.relay = relayCommand;
extraCommands.listen = listenCommand;
extraCommands.worker = workerCommand;
extraCommands.scheduler = schedulerCommand;
extraCommands.pipeline = pipelineCommand;

async function withDatabase(config: Config, log: pino.Logger): Promise<EmbeddedDb | undefined> {
  if (config.databaseUrl) return undefined;
  log.warn('DATABASE_URL is unset: starting an embedded PostgreSQL with data under .conveyor/');
  const embedded = await startEmbeddedPostgres();
  config.databaseUrl = embedded.url;
  return embedded;
}

const commands: Record<string, Command> = {
  async start(config, log, args) {
    limitHeapGrowth();
    const embedded = await withDatabase(config, log);
    const queue = await startQueue({ config, logger: log, api: true, loops: true });
    announce(config, log, queue.url);
    // --local (npm start): a generic worker and the scheduler too, for a whole system on one machine
    const local = args.includes('--local');
    const stack = await startLocalStack({ ...config, startWorker: local && config.startWorker, startScheduler: local && config.startScheduler }, log, queue.url).catch(async (err) => {
      await queue.stop();
      await embedded?.stop();
      throw err;
    });
    const lines = [...stack.lines, `  database:      ${embedded ? `embedded PostgreSQL, data in .conveyor/pgdata (${embedded.url})` : 'DATABASE_URL'}`];
    process.stdout.write(lines.join('\n') + '\n');
    return async () => {
      await stack.stop();
      await queue.stop();
      await embedded?.stop();
    };
  },
  async api(config, log) {
    limitHeapGrowth();
    const embedded = await withDatabase(config, log);
    const queue = await startQueue({ config, logger: log, api: true, loops: false });
    announce(config, log, queue.url);
    return async () => {
      await queue.stop();
      await embedded?.stop();
    };
  },
  async background(config, log) {
    const embedded = await withDatabase(config, log);
    const queue = await startQueue({ config, logger: log, api: false, loops: true });
    return async () => {
      await queue.stop();
      await embedded?.stop();
    };
  },
  async migrate(config, log) {
    const embedded = await withDatabase(config, log);
    const { db } = createDb(config.databaseUrl!, 1);
    await openDatabase(db, config, log);
    await db.destroy();
    log.info('migrations applied');
    await embedded?.stop();
    return async () => {};
  },
  async client(config, log, args) {
    // the same key source as the queue (CLIENT_TOKEN_KEY or .conveyor/client-token.key), read
    // before anything starts so a bad key file stops the command at once
    const key = clientTokenKey(config);
    const embedded = await withDatabase(config, log);
    const { db } = createDb(config.databaseUrl!, 1);
    await openDatabase(db, config, log);
    const code = await clientCommand(db, key, args, (s) => process.stdout.write(s + '\n'));
    await db.destroy();
    await embedded?.stop();
    process.exit(code);
  },
};

function announce(config: Config, log: pino.Logger, url: string): void {
  const lines = [
    `Conveyor queue is up.`,
    `  rootUrl:       ${config.rootUrl}   (API under ${config.rootUrl}/api/queue/v1/, listening on ${url})`,
    `  clientId:      ${config.rootClientId}`,
    `  accessToken:   ${config.generatedRootAccessToken ? config.rootAccessToken + '   (generated: set ROOT_ACCESS_TOKEN to keep it)' : '(from ROOT_ACCESS_TOKEN)'}`,
    `  events:        ${config.amqpUrl ? `RabbitMQ, exchanges ${config.exchangePrefix}*` : 'AMQP publishing is OFF (AMQP_URL unset): events stay in the outbox and the HTTP event stream'}`,
  ];
  log.info(lines.join('\n'));
  process.stdout.write(lines.join('\n') + '\n');
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const [name = 'start', ...args] = argv;
  const command = commands[name] ?? extraCommands[name];
  if (!command) {
    process.stderr.write(`unknown command ${name}; commands: ${[...Object.keys(commands), ...Object.keys(extraCommands)].join(', ')}\n`);
    process.exit(2);
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = pino({ level: config.logLevel });
  const stop = await command(config, log, args);
  let signals = 0;
  const onSignal = (sig: string) => {
    signals += 1;
    if (signals > 1) {
      log.warn(`${sig} again: exiting now`);
      process.exit(1);
    }
    log.info(`${sig}: draining (send again to force)`);
    stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    // a database that cannot be used is an operator's matter: the message says where and why
    process.stderr.write(`${err instanceof DatabaseUnreachable ? err.message : (err?.stack ?? err)}\n`);
    process.exit(1);
  });
}
