// Configuration: one table of keys (environment variable, parser, default, meaning). Everything
// else (the validated Config object, .env.example, the README table) comes from this table.
import { randomBytes } from 'node:crypto';
import { keyFromFile, parseTokenKey } from './auth/token-cipher.js';

type Parser<T> = (raw: string) => T;

interface Key<T> {
  env: string;
  doc: string;
  parse: Parser<T>;
  /** Default when the variable is unset; a function sees the values parsed so far. */
  default?: T | ((c: Record<string, unknown>) => T);
  /** The default as the docs show it, when the parsed value is not what a user would write. */
  defaultDoc?: string;
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> => (raw) => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`must be an integer from ${min} to ${max}`);
  return n;
};
const str: Parser<string> = (raw) => {
  if (raw === '') throw new Error('must not be empty');
  return raw;
};
const url: Parser<string> = (raw) => {
  try {
    new URL(raw);
  } catch {
    throw new Error('must be a URL');
  }
  return raw.replace(/\/+$/, '');
};
const bool: Parser<boolean> = (raw) => {
  if (/^(1|true|yes)$/i.test(raw)) return true;
  if (/^(0|false|no)$/i.test(raw)) return false;
  throw new Error('must be true or false');
};
const oneOf = <T extends string>(...values: T[]): Parser<T> => (raw) => {
  if (!(values as string[]).includes(raw)) throw new Error(`must be one of ${values.join(', ')}`);
  return raw as T;
};

export const configKeys = {
  port: { env: 'PORT', doc: 'HTTP port of the API', parse: int(0, 65535), default: 8080 },
  rootUrl: {
    env: 'ROOT_URL', doc: 'Public base URL; clients use it as their rootUrl',
    parse: url, default: (c: Record<string, unknown>) => `http://localhost:${String(c.port)}`,
  },
  databaseUrl: {
    env: 'DATABASE_URL', doc: 'PostgreSQL URL; unset runs an embedded PostgreSQL under .conveyor/',
    parse: str, default: undefined as string | undefined,
  },
  amqpUrl: {
    env: 'AMQP_URL', doc: 'RabbitMQ URL; unset keeps events in the outbox and the HTTP event stream only',
    parse: str, default: undefined as string | undefined,
  },
  rootClientId: { env: 'ROOT_CLIENT_ID', doc: 'Client id of the root client (scope *)', parse: str, default: 'root' },
  rootAccessToken: {
    env: 'ROOT_ACCESS_TOKEN', doc: 'Access token of the root client; generated and printed when unset outside production',
    parse: str, default: undefined as string | undefined,
  },
  clientTokenKey: {
    env: 'CLIENT_TOKEN_KEY',
    doc: 'Key the access tokens of the clients stored in PostgreSQL are encrypted with: 32 random bytes, base64url; required when NODE_ENV=production, otherwise kept in .conveyor/client-token.key when unset (made on first use). Stored clients must be re-created after changing it',
    parse: parseTokenKey, default: undefined as Buffer | undefined,
  },
  exchangePrefix: {
    env: 'EXCHANGE_PREFIX', doc: 'Prefix of every exchange name',
    parse: str, default: 'exchange/taskcluster-queue/v1/',
  },
  taskClaimTimeoutSec: {
    env: 'TASK_CLAIM_TIMEOUT', doc: 'Seconds a claim lasts before it must be reclaimed', parse: int(1), default: 1200,
  },
  claimWorkTimeoutSec: {
    env: 'CLAIM_WORK_TIMEOUT', doc: 'Seconds a claimWork long-poll waits for work', parse: int(0, 25), default: 20,
  },
  maxTaskDeadlineDays: {
    env: 'MAX_TASK_DEADLINE_DAYS', doc: 'Furthest a task deadline may lie in the future', parse: int(1, 365), default: 5,
  },
  resolverIntervalMs: {
    env: 'RESOLVER_INTERVAL_MS', doc: 'Poll interval of the background resolvers when idle', parse: int(10), default: 1000,
  },
  expirationIntervalMs: {
    env: 'EXPIRATION_INTERVAL_MS', doc: 'Interval of the expiration loop', parse: int(100), default: 60_000,
  },
  expirationGraceSec: {
    env: 'EXPIRATION_GRACE_SEC', doc: 'Seconds past their expires before tasks, groups, edges, artifacts, workers and task queues are deleted (and resolved pipelines, once all their task groups are gone)',
    parse: int(0), default: 1800,
  },
  outboxRetentionSec: {
    env: 'OUTBOX_RETENTION_SEC', doc: 'Seconds published outbox rows (all rows when AMQP_URL is unset) are kept for event-stream replay before deletion',
    parse: int(0), default: 24 * 3600,
  },
  dependencyBatchSize: {
    env: 'DEPENDENCY_BATCH_SIZE', doc: 'Dependents handled per transaction when a task resolves (the rest by the dependency loop)',
    parse: int(1, 10_000), default: 500,
  },
  maxArtifactBytes: {
    env: 'MAX_ARTIFACT_BYTES', doc: 'Largest blob artifact accepted', parse: int(0), default: 5 * 1024 ** 3,
  },
  artifactChunkBytes: {
    env: 'ARTIFACT_CHUNK_BYTES', doc: 'Size of the rows blob artifacts are stored in (see bench/README.md for the measurements)',
    parse: int(64 * 1024, 64 * 1024 ** 2), default: 1024 ** 2,
  },
  anonymousScopes: {
    env: 'ANONYMOUS_SCOPES', doc: 'Comma-separated scopes every caller has, even without credentials',
    parse: (raw: string) => raw.split(',').map((s) => s.trim()).filter(Boolean),
    default: ['queue:get-artifact:public/*'],
  },
  dbWaitSec: {
    env: 'DB_WAIT_SEC', doc: 'Seconds to wait at start for PostgreSQL to accept connections (containers started together may bring it up later); 0 fails at once',
    parse: int(0, 3600), default: 30,
  },
  dbPoolSize: { env: 'DB_POOL_SIZE', doc: 'PostgreSQL connections per process (the shared transactions of the hot calls use a pool of their own: one connection per lane, at most 8 and at most this many)', parse: int(1, 500), default: 20 },
  production: {
    env: 'NODE_ENV', doc: 'production forbids generated credentials', parse: (raw: string) => raw === 'production', default: false,
    defaultDoc: '(unset)',
  },
  logLevel: {
    env: 'LOG_LEVEL', doc: 'pino log level',
    parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'), default: 'info' as const,
  },
  enableLoops: { env: 'CONVEYOR_LOOPS', doc: 'Run the background loops in this process', parse: bool, default: true },
  relayBatchSize: {
    env: 'RELAY_BATCH_SIZE', doc: 'Outbox rows the relay publishes per batch (one confirm wait, one update)', parse: int(1, 10_000), default: 1000,
  },
  relayPollIntervalMs: {
    env: 'RELAY_POLL_INTERVAL_MS', doc: 'Outbox poll of the relay when no NOTIFY arrives; standby relays retry the lock at twice this', parse: int(10), default: 1000,
  },
  amqpReconnectMaxMs: {
    env: 'AMQP_RECONNECT_MAX_MS', doc: 'Longest wait between reconnect attempts to RabbitMQ (backoff from 100 ms)', parse: int(100), default: 5000,
  },
  startWorker: {
    env: 'START_WORKER', doc: '`start --local` (npm start) also runs a generic worker on local/generic; it runs task commands on this host',
    parse: bool, default: true,
  },
  startScheduler: {
    env: 'START_SCHEDULER', doc: '`start --local` (npm start) also runs the pipeline scheduler (API on SCHEDULER_PORT)',
    parse: bool, default: true,
  },
} satisfies Record<string, Key<unknown>>;

type Keys = typeof configKeys;
export type Config = {
  -readonly [K in keyof Keys]: Keys[K] extends { parse: Parser<infer T> } ? T : never;
} & { generatedRootAccessToken: boolean };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
}

/** Parse the environment (plus overrides, for tests); every problem is reported at once. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, key] of Object.entries(configKeys) as [string, Key<unknown>][]) {
    if (name in overrides) {
      out[name] = (overrides as Record<string, unknown>)[name];
      continue;
    }
    const raw = env[key.env];
    if (raw !== undefined && raw !== '') {
      try {
        out[name] = key.parse(raw);
      } catch (err) {
        problems.push(`${key.env}=${JSON.stringify(raw)}: ${(err as Error).message}`);
      }
    } else {
      out[name] = typeof key.default === 'function' ? (key.default as (c: unknown) => unknown)(out) : key.default;
    }
  }
  const config = out as Config;
  config.generatedRootAccessToken = false;
  if (!config.rootAccessToken) {
    if (config.production) problems.push('ROOT_ACCESS_TOKEN: required when NODE_ENV=production');
    config.rootAccessToken = randomBytes(32).toString('base64url');
    config.generatedRootAccessToken = true;
  }
  // set but malformed is already a problem of its own
  if (config.production && !config.clientTokenKey && !env[configKeys.clientTokenKey.env]) {
    problems.push('CLIENT_TOKEN_KEY: required when NODE_ENV=production (32 random bytes, base64url)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * The key stored client tokens are encrypted with: CLIENT_TOKEN_KEY or, outside production, the
 * key file under `dataRoot` (read or made once, then kept in config so every user of this config
 * — queue, scheduler, the client command — encrypts with the same key).
 */
export function clientTokenKey(config: Config, dataRoot?: string): Buffer {
  if (config.clientTokenKey) return config.clientTokenKey;
  // loadConfig refuses this; a hand-built config must not fall back to a key on local disk
  if (config.production) throw new ConfigError(['CLIENT_TOKEN_KEY: required when NODE_ENV=production']);
  return (config.clientTokenKey = keyFromFile(dataRoot));
}
