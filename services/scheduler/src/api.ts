// The scheduler's HTTP API under /api/scheduler/v1: submit a pipeline (PUT, idempotent like
// createTask: the client picks the id), read one, list recent ones. Hawk-authenticated against the
// queue's clients (same database), errors in Taskcluster's format. Submitting needs
// scheduler:create-pipeline:<name> and, for every task, the scopes createTask would ask of the
// submitter — the scheduler creates the tasks with its own credentials, so it must not let anyone
// create tasks they could not create themselves.
import { isDeepStrictEqual } from 'node:util';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { Authenticator } from '../../queue/src/auth/authenticate.js';
import { clientLookup } from '../../queue/src/auth/clients.js';
import { assertScopes, type ScopeExpression } from '../../queue/src/auth/scopes.js';
import type { Config } from '../../queue/src/config.js';
import { ApiError } from '../../queue/src/http/errors.js';
import { slugidPattern } from '../../queue/src/http/params.js';
import { prioritiesAtOrAbove } from '../../queue/src/tasks/priority.js';
import { checkPipeline, checkTaskDefinitions, defaultTaskQueueId, PipelineError, type Pipeline } from './pipeline.js';
import type { SchedulerCtx } from './progress.js';
import { pipelineStatus } from './status.js';

export const schedulerApiPrefix = '/api/scheduler/v1';

/** What createTask would require of the submitter, for every task of the pipeline (schedulerId aside). */
export function submitScopes(p: Pipeline): ScopeExpression {
  const all: ScopeExpression[] = [`scheduler:create-pipeline:${p.name}`];
  for (const s of p.stages) {
    for (const t of s.tasks) {
      const f = { ...p.defaults, ...t };
      const queueId = f.taskQueueId ?? defaultTaskQueueId;
      all.push(
        ...(f.scopes ?? []),
        ...(f.routes ?? []).map((r) => `queue:route:${r}`),
        `queue:create-task:project:${f.projectId ?? 'none'}`,
        { AnyOf: prioritiesAtOrAbove(f.priority ?? 'lowest').map((pr) => `queue:create-task:${pr}:${queueId}`) },
      );
    }
  }
  return { AllOf: all };
}

function hostPort(req: FastifyRequest): { host: string; port: number } {
  const header = String(req.headers['x-forwarded-host'] ?? req.headers.host ?? 'localhost');
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(header);
  const forwarded = req.headers['x-forwarded-port'];
  return { host: m?.[1] ?? header, port: forwarded ? Number(String(forwarded).split(',')[0]) : m?.[2] ? Number(m[2]) : 80 };
}

export interface ApiOptions {
  s: SchedulerCtx;
  queueConfig: Config;
  /** Called after a new pipeline is stored, to start it. */
  kick(pipelineId: string): void;
}

export async function buildSchedulerApi({ s, queueConfig, kick }: ApiOptions): Promise<FastifyInstance> {
  const authenticator = new Authenticator({ lookupClient: clientLookup(s.db, queueConfig, s.log), anonymousScopes: queueConfig.anonymousScopes });
  const app = Fastify({ logger: false, bodyLimit: 5 * 1024 * 1024 });
  const who = async (req: FastifyRequest) =>
    authenticator.authenticate({ method: req.method, url: req.url, ...hostPort(req), authorization: req.headers.authorization });
  const pipelineIdOf = (req: FastifyRequest) => {
    const id = (req.params as { pipelineId: string }).pipelineId;
    if (!slugidPattern.test(id)) throw new ApiError('InvalidRequestArguments', `pipelineId ${id} is not a slugid`);
    return id;
  };

  app.get(`${schedulerApiPrefix}/ping`, async () => ({ alive: true, uptime: process.uptime() }));

  app.put(`${schedulerApiPrefix}/pipeline/:pipelineId`, async (req, reply) => {
    const auth = await who(req);
    const pipelineId = pipelineIdOf(req);
    let p: Pipeline;
    try {
      p = checkPipeline(req.body);
      checkTaskDefinitions(p, pipelineId, s.schedulerId);
    } catch (err) {
      if (err instanceof PipelineError) throw new ApiError('InputValidationError', err.message, { problems: err.problems });
      throw err;
    }
    assertScopes(auth.scopes, submitScopes(p), auth.clientId);
    const now = new Date();
    const inserted = await s.db
      .insertInto('scheduler_pipelines')
      .values({
        pipeline_id: pipelineId, name: p.name, definition: JSON.stringify(p), scheduler_id: s.schedulerId,
        submitted_by: auth.clientId ?? 'anonymous', state: 'running', created: now, updated: now,
      })
      .onConflict((oc) => oc.column('pipeline_id').doNothing())
      .returning('pipeline_id')
      .executeTakeFirst();
    if (!inserted) {
      const existing = await s.db.selectFrom('scheduler_pipelines').select('definition').where('pipeline_id', '=', pipelineId).executeTakeFirstOrThrow();
      if (!isDeepStrictEqual(existing.definition, JSON.parse(JSON.stringify(p)))) {
        throw new ApiError('RequestConflict', `pipeline ${pipelineId} already exists with a different definition`, { pipelineId });
      }
    } else {
      kick(pipelineId);
    }
    reply.code(inserted ? 201 : 200);
    return pipelineStatus(s, pipelineId);
  });

  app.get(`${schedulerApiPrefix}/pipeline/:pipelineId`, async (req) => {
    const auth = await who(req);
    const pipelineId = pipelineIdOf(req);
    assertScopes(auth.scopes, `scheduler:get-pipeline:${pipelineId}`, auth.clientId);
    const status = await pipelineStatus(s, pipelineId);
    if (!status) throw new ApiError('ResourceNotFound', `pipeline ${pipelineId} not found`, { pipelineId });
    return status;
  });

  app.get(`${schedulerApiPrefix}/pipelines`, async (req) => {
    const auth = await who(req);
    assertScopes(auth.scopes, 'scheduler:list-pipelines', auth.clientId);
    const rows = await s.db
      .selectFrom('scheduler_pipelines')
      .select(['pipeline_id', 'name', 'state', 'stage', 'reason', 'created', 'resolved'])
      .orderBy('created', 'desc')
      .limit(100)
      .execute();
    return {
      pipelines: rows.map((r) => ({
        pipelineId: r.pipeline_id, name: r.name, state: r.state, stage: r.stage, reason: r.reason ?? undefined,
        created: new Date(r.created).toISOString(), resolved: r.resolved ? new Date(r.resolved).toISOString() : undefined,
      })),
    };
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(req, 'ResourceNotFound', `No such endpoint: ${req.method} ${req.url.split('?')[0]}`));
  });
  app.setErrorHandler((err: unknown, req, reply) => {
    if (err instanceof ApiError) {
      if (err.code === 'AuthenticationFailed') reply.header('www-authenticate', 'hawk');
      reply.code(err.statusCode).send(errorBody(req, err.code, err.message, err.details));
      return;
    }
    const fe = err as { statusCode?: number; message?: string };
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      reply.code(400).send(errorBody(req, 'MalformedPayload', fe.message ?? 'Malformed request'));
      return;
    }
    s.log.error({ err }, 'scheduler API error');
    reply.code(500).send(errorBody(req, 'InternalServerError', 'Internal Server Error'));
  });
  return app;
}

function errorBody(req: FastifyRequest, code: string, message: string, details: Record<string, unknown> = {}) {
  return {
    code,
    message,
    requestInfo: { method: req.method, params: req.params ?? {}, payload: req.body ?? {}, time: new Date().toISOString() },
    ...(Object.keys(details).length > 0 ? { details } : {}),
  };
}
