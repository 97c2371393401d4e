// The two servers http-cost.ts compares:
//   bare      fastify 5 with the service's server options and three routes that answer canned
//             bodies of the real size: the floor any fastify service pays per request here.
//   conveyor  the service's own buildServer (Hawk, scopes, schema validation, temporary
//             credentials, metrics hook, the real endpoint table) with the SQL-backed handlers of
//             createTask, claimWork and reportCompleted replaced by stubs that authorize as the
//             real ones do and answer the same bodies. The difference is what is ours outside SQL.
// `root` (a checkout, default this one) lets --baseline load another checkout's server code.
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Fastify, { LogController } from 'fastify';
import pino from 'pino';
import * as slugid from 'slugid';

const thisCheckout = fileURLToPath(new URL('../../', import.meta.url));
const log = pino({ level: 'warn', base: { service: 'queue' } });

interface RunShape {
  runId: number;
  state: string;
  reasonCreated: string;
  scheduled: string;
  [k: string]: unknown;
}

function status(taskId: string, state: string, run: RunShape) {
  const deadline = new Date(Date.now() + 3600_000).toISOString();
  return {
    taskId, provisionerId: 'bench', workerType: 'x', taskQueueId: 'bench/x', schedulerId: '-', projectId: 'none',
    taskGroupId: taskId, deadline, expires: new Date(Date.now() + 365 * 86400_000).toISOString(), retriesLeft: 5, state,
    runs: [run],
  };
}

function definition(taskId: string) {
  const now = Date.now();
  return {
    provisionerId: 'bench', workerType: 'x', taskQueueId: 'bench/x', schedulerId: '-', projectId: 'none', taskGroupId: taskId,
    dependencies: [], requires: 'all-completed', routes: [], priority: 'lowest', retries: 5,
    created: new Date(now).toISOString(), deadline: new Date(now + 3600_000).toISOString(),
    expires: new Date(now + 365 * 86400_000).toISOString(), scopes: [], payload: { command: ['true'] },
    metadata: { name: 'bench task', owner: 'bench@example.com', source: 'https://example.com/bench', description: 'bench/lifecycle' },
    tags: {}, extra: {},
  };
}

const pendingRun = (): RunShape => ({ runId: 0, state: 'pending', reasonCreated: 'scheduled', scheduled: new Date().toISOString() });

type Creds = { clientId: string; accessToken: string; certificate: string };

function claimBody(taskId: string, workerGroup: string, workerId: string, credentials: (takenUntil: Date) => Creds) {
  const takenUntil = new Date(Math.ceil((Date.now() + 1200_000) / 1000) * 1000);
  const run = { ...pendingRun(), state: 'running', workerGroup, workerId, takenUntil: takenUntil.toISOString(), started: new Date().toISOString() };
  return {
    tasks: [{
      status: status(taskId, 'running', run), runId: 0, workerGroup, workerId, takenUntil: run.takenUntil,
      task: definition(taskId), credentials: credentials(takenUntil),
    }],
  };
}

function completedBody(taskId: string) {
  const run = {
    ...pendingRun(), reasonResolved: 'completed', state: 'completed', workerGroup: 'bench', workerId: 'w1',
    takenUntil: new Date().toISOString(), started: new Date().toISOString(), resolved: new Date().toISOString(),
  };
  return { status: status(taskId, 'completed', run) };
}

export async function bareApp(accessToken: string) {
  const app = Fastify({
    loggerInstance: log,
    bodyLimit: 10 * 1024 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 2048, ignoreDuplicateSlashes: false },
    keepAliveTimeout: 65_000,
    http: { maxHeaderSize: 256 * 1024 },
  });
  const prefix = '/api/queue/v1';
  const fake = { clientId: 'task-client/x', accessToken, certificate: '' };
  app.put<{ Params: { taskId: string } }>(`${prefix}/task/:taskId`, async (req) => ({ status: status(req.params.taskId, 'pending', pendingRun()) }));
  app.post<{ Body: { workerGroup: string; workerId: string } }>(`${prefix}/claim-work/*`, async (req) =>
    // the generator signs reportCompleted with these; the bare server checks nothing
    claimBody(slugid.nice(), req.body.workerGroup, req.body.workerId, () => ({ ...fake, clientId: 'root' })),
  );
  app.post<{ Params: { taskId: string } }>(`${prefix}/task/:taskId/runs/:runId/completed`, async (req) => completedBody(req.params.taskId));
  return app;
}

export async function conveyorApp(accessToken: string, root = thisCheckout) {
  const src = (p: string) => import(pathToFileURL(join(resolve(root), 'services/queue/src', p)).href);
  const [{ buildServer }, { Authenticator }, { endpoints }, { metricsRoutes }, { taskCredentials }, { prioritiesAtOrAbove }] = await Promise.all([
    src('http/server.ts'), src('auth/authenticate.ts'), src('http/routes.ts'), src('meta/metrics.ts'),
    src('claims/credentials.ts'), src('tasks/priority.ts'),
  ]);
  const ctx = {
    log,
    clock: { now: () => new Date() },
    issuer: { clientId: 'root', accessToken },
    config: { claimWorkTimeoutSec: 20 },
  };
  type Req = {
    params: Record<string, string>;
    body: any;
    authorize(p?: Record<string, unknown>): void;
  };
  // what the real handlers do besides SQL (authorize with body values, close listeners), then a
  // canned body of the real shape
  const stubs: Record<string, (req: Req) => Promise<unknown>> = {
    createTask: async (req) => {
      const b = req.body;
      const [provisionerId, workerType] = String(b.taskQueueId).split('/');
      req.authorize({
        scopes: b.scopes, routes: b.routes, projectId: b.projectId, schedulerId: b.schedulerId,
        priorities: prioritiesAtOrAbove(b.priority), provisionerId, workerType,
      });
      return { status: status(req.params.taskId!, 'pending', pendingRun()) };
    },
    claimWork: async (req) => {
      const { workerGroup, workerId } = req.body;
      req.authorize({ workerGroup, workerId });
      // (the real handler's long-poll plumbing, close listeners and abort signals, is left out:
      // under inject 'close' comes before 'finish' and would abort every call)
      const taskId = slugid.nice();
      return claimBody(taskId, workerGroup, workerId, (takenUntil) =>
        taskCredentials(ctx, { taskId, runId: 0, workerGroup, workerId, takenUntil, scopes: [] }),
      );
    },
    reportCompleted: async (req) => {
      req.authorize();
      return completedBody(req.params.taskId!);
    },
  };
  const table = (endpoints as Array<{ name: string }>).filter((e) => e.name in stubs).map((e) => ({ ...e, handler: stubs[e.name] }));
  const authenticator = new Authenticator({
    lookupClient: async (id: string) => (id === 'root' ? { accessToken, scopes: ['*'] } : undefined),
    anonymousScopes: [],
  });
  return buildServer({ ctx, authenticator, endpoints: table, plugins: [metricsRoutes] });
}

