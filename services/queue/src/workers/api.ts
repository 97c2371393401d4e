// Task queues and workers: counts and listings of a queue's pending and claimed runs, the task
// queue records, the deprecated provisioner / worker-type views derived from them, and the worker
// records (list, get, quarantine, declare). In the reference order of taskcluster-client 87.
import { endpoint, type ApiRequest } from '../http/endpoint.js';
import { ApiError } from '../http/errors.js';
import { pageLimit } from '../http/paging.js';
import { splitQueueId } from '../tasks/status.js';
import { claimedCount, listClaimed, listPending, pendingCount } from './queue-contents.js';
import * as records from './records.js';
import * as queues from './task-queues.js';

const paging = ['continuationToken', 'limit'];

function listOpts(req: ApiRequest) {
  return { limit: pageLimit(req.query), continuationToken: req.query.continuationToken };
}

function withToken<T extends object>(body: T, continuationToken: string | undefined): T & { continuationToken?: string } {
  return continuationToken ? { ...body, continuationToken } : body;
}

function workerKey(params: Record<string, string>): records.WorkerKey {
  return {
    taskQueueId: `${params.provisionerId}/${params.workerType}`,
    workerGroup: params.workerGroup!,
    workerId: params.workerId!,
  };
}

function notFound(what: string): never {
  throw new ApiError('ResourceNotFound', `${what} not found (or expired)`);
}

/** A schema-valid date-time that JavaScript cannot represent (e.g. a leap second) is still a 400. */
function parseDate(value: string, field: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new ApiError('InputError', `${field} '${value}' is not a date this service can store`);
  return d;
}

function bodyProperties(body: unknown): string[] {
  return body && typeof body === 'object' && !Array.isArray(body) ? Object.keys(body) : [];
}

/** declareProvisioner / declareWorkerType: gone from Taskcluster, still in the 87 client. */
function removed(name: string): (req: ApiRequest) => Promise<never> {
  return async (req) => {
    req.authorize({ properties: bodyProperties(req.body) });
    throw new ApiError(
      'InputError',
      `${name} was removed from the Taskcluster Queue API and Conveyor does not implement it: provisioners and ` +
        'worker types are derived from task queues, which are recorded when workers call claimWork or declareWorker.',
    );
  };
}

export const workerEndpoints = [
  endpoint({
    name: 'listProvisioners', method: 'GET', route: '/provisioners', query: paging,
    output: 'v1/list-provisioners-response.json', scopes: 'queue:list-provisioners',
    stability: 'deprecated', category: 'Worker Metadata', title: 'Get a list of all active provisioners',
    description: 'The provisioner ids of unexpired task queues (a task queue id is `<provisionerId>/<workerType>`).',
    handler: async (req) => {
      const { rows, continuationToken } = await queues.listProvisioners(req.ctx.db, req.ctx.clock.now(), listOpts(req));
      return withToken({ provisioners: rows.map(queues.provisionerJson) }, continuationToken);
    },
  }),
  endpoint({
    name: 'getProvisioner', method: 'GET', route: '/provisioners/<provisionerId>',
    output: 'v1/provisioner-response.json', scopes: 'queue:get-provisioner:<provisionerId>',
    stability: 'deprecated', category: 'Worker Metadata', title: 'Get an active provisioner',
    description: 'A provisioner synthesised from its unexpired task queues; 404 when it has none.',
    handler: async (req) => {
      const row = await queues.getProvisioner(req.ctx.db, req.params.provisionerId, req.ctx.clock.now());
      return row ? queues.provisionerJson(row) : notFound(`Provisioner ${req.params.provisionerId}`);
    },
  }),
  endpoint({
    name: 'declareProvisioner', method: 'PUT', route: '/provisioners/<provisionerId>',
    scopes: { AllOf: [{ each: 'queue:declare-provisioner:<provisionerId>#<property>', for: 'property', in: 'properties' }] },
    stability: 'deprecated', category: 'Worker Metadata', title: 'Update a provisioner (removed)',
    description: 'Removed from Taskcluster; always answers 400 InputError saying so.',
    handler: removed('declareProvisioner'),
  }),
  endpoint({
    name: 'pendingTasks', method: 'GET', route: '/pending/<taskQueueId>', wildcard: 'taskQueueId',
    output: 'v1/pending-tasks-response.json', scopes: 'queue:pending-count:<taskQueueId>',
    stability: 'deprecated', category: 'Worker Metadata', title: 'Get Number of Pending Tasks',
    description: 'The number of pending runs of a task queue (deprecated: use taskQueueCounts).',
    handler: async (req) => {
      const { taskQueueId } = req.params;
      return { ...splitQueueId(taskQueueId), taskQueueId, pendingTasks: await pendingCount(req.ctx.db, taskQueueId) };
    },
  }),
  endpoint({
    name: 'taskQueueCounts', method: 'GET', route: '/task-queues/<taskQueueId>/counts',
    output: 'v1/task-queue-counts-response.json',
    scopes: { AllOf: ['queue:pending-count:<taskQueueId>', 'queue:claimed-count:<taskQueueId>'] },
    stability: 'stable', category: 'Worker Metadata', title: 'Get Number of Pending and Claimed Tasks',
    description: 'Pending runs, and running runs whose claim has not expired, of a task queue.',
    handler: async (req) => {
      const { taskQueueId } = req.params;
      const [pendingTasks, claimedTasks] = await Promise.all([
        pendingCount(req.ctx.db, taskQueueId),
        claimedCount(req.ctx.db, taskQueueId, req.ctx.clock.now()),
      ]);
      return { taskQueueId, pendingTasks, claimedTasks };
    },
  }),
  endpoint({
    name: 'listPendingTasks', method: 'GET', route: '/task-queues/<taskQueueId>/pending', query: paging,
    output: 'v1/list-pending-tasks-response.json', scopes: 'queue:pending-list:<taskQueueId>',
    stability: 'experimental', category: 'Worker Metadata', title: 'List Pending Tasks',
    description: 'Pending runs of a task queue with their task definitions, in insertion order (not claim order).',
    handler: async (req) => listPending(req.ctx.db, req.params.taskQueueId, listOpts(req)),
  }),
  endpoint({
    name: 'listClaimedTasks', method: 'GET', route: '/task-queues/<taskQueueId>/claimed', query: paging,
    output: 'v1/list-claimed-tasks-response.json', scopes: 'queue:claimed-list:<taskQueueId>',
    stability: 'experimental', category: 'Worker Metadata', title: 'List Claimed Tasks',
    description: 'Running runs of a task queue whose claim has not expired, with their task definitions, oldest claim first.',
    handler: async (req) => listClaimed(req.ctx.db, req.params.taskQueueId, req.ctx.clock.now(), listOpts(req)),
  }),
  endpoint({
    name: 'listWorkerTypes', method: 'GET', route: '/provisioners/<provisionerId>/worker-types', query: paging,
    output: 'v1/list-workertypes-response.json', scopes: 'queue:list-worker-types:<provisionerId>',
    stability: 'deprecated', category: 'Worker Metadata', title: 'Get a list of all active worker-types',
    description: 'The unexpired task queues of a provisioner, as worker types.',
    handler: async (req) => {
      const opts = { ...listOpts(req), provisionerId: req.params.provisionerId };
      const { rows, continuationToken } = await queues.listTaskQueues(req.ctx.db, req.ctx.clock.now(), opts);
      return withToken({ workerTypes: rows.map(queues.workerTypeJson) }, continuationToken);
    },
  }),
  endpoint({
    name: 'getWorkerType', method: 'GET', route: '/provisioners/<provisionerId>/worker-types/<workerType>',
    output: 'v1/workertype-response.json', scopes: 'queue:get-worker-type:<provisionerId>/<workerType>',
    stability: 'deprecated', category: 'Worker Metadata', title: 'Get a worker-type',
    description: 'An unexpired task queue, as a worker type.',
    handler: async (req) => {
      const taskQueueId = `${req.params.provisionerId}/${req.params.workerType}`;
      const row = await queues.getTaskQueue(req.ctx.db, taskQueueId, req.ctx.clock.now());
      return row ? { ...queues.workerTypeJson(row), actions: [] } : notFound(`Worker type ${taskQueueId}`);
    },
  }),
  endpoint({
    name: 'declareWorkerType', method: 'PUT', route: '/provisioners/<provisionerId>/worker-types/<workerType>',
    scopes: { AllOf: [{ each: 'queue:declare-worker-type:<provisionerId>/<workerType>#<property>', for: 'property', in: 'properties' }] },
    stability: 'deprecated', category: 'Worker Metadata', title: 'Update a worker-type (removed)',
    description: 'Removed from Taskcluster; always answers 400 InputError saying so.',
    handler: removed('declareWorkerType'),
  }),
  endpoint({
    name: 'listTaskQueues', method: 'GET', route: '/task-queues', query: paging,
    output: 'v1/list-taskqueues-response.json', scopes: 'queue:list-task-queues',
    stability: 'stable', category: 'Worker Metadata', title: 'Get a list of all active task queues',
    description: 'Unexpired task queues, by id.',
    handler: async (req) => {
      const { rows, continuationToken } = await queues.listTaskQueues(req.ctx.db, req.ctx.clock.now(), listOpts(req));
      return withToken({ taskQueues: rows.map(queues.taskQueueJson) }, continuationToken);
    },
  }),
  endpoint({
    // a trailing wildcard, so `/task-queues/prov/wt` works as well as the client's `prov%2Fwt`
    name: 'getTaskQueue', method: 'GET', route: '/task-queues/<taskQueueId>', wildcard: 'taskQueueId',
    output: 'v1/taskqueue-response.json', scopes: 'queue:get-task-queue:<taskQueueId>',
    stability: 'stable', category: 'Worker Metadata', title: 'Get a task queue',
    description: 'An unexpired task queue; 404 otherwise.',
    handler: async (req) => {
      const row = await queues.getTaskQueue(req.ctx.db, req.params.taskQueueId, req.ctx.clock.now());
      return row ? queues.taskQueueJson(row) : notFound(`Task queue ${req.params.taskQueueId}`);
    },
  }),
  endpoint({
    name: 'listWorkers', method: 'GET', route: '/provisioners/<provisionerId>/worker-types/<workerType>/workers',
    query: [...paging, 'quarantined'],
    output: 'v1/list-workers-response.json', scopes: 'queue:list-workers:<provisionerId>/<workerType>',
    stability: 'deprecated', category: 'Worker Metadata', title: 'Get a list of all active workers of a workerType',
    description: 'Workers of a task queue by workerGroup and workerId; expired workers are left out unless quarantined. ' +
      '`quarantined=true|false` keeps only workers that are (not) quarantined now.',
    handler: async (req) => {
      const { quarantined } = req.query;
      const opts = { ...listOpts(req), quarantined: quarantined === undefined ? undefined : quarantined === 'true' };
      const taskQueueId = `${req.params.provisionerId}/${req.params.workerType}`;
      const { rows, continuationToken } = await records.listWorkers(req.ctx.db, taskQueueId, req.ctx.clock.now(), opts);
      return withToken({ workers: rows.map(records.workerListItem) }, continuationToken);
    },
  }),
  endpoint({
    name: 'getWorker', method: 'GET',
    route: '/provisioners/<provisionerId>/worker-types/<workerType>/workers/<workerGroup>/<workerId>',
    output: 'v1/worker-response.json', scopes: 'queue:get-worker:<provisionerId>/<workerType>/<workerGroup>/<workerId>',
    stability: 'deprecated', category: 'Worker Metadata', title: 'Get a worker',
    description: 'A worker: its last 20 claims, quarantine and its history, first claim, last activity.',
    handler: async (req) => {
      const key = workerKey(req.params);
      const row = await records.getWorker(req.ctx.db, key, req.ctx.clock.now());
      return row ? records.workerJson(row) : notFound(`Worker ${key.workerGroup}/${key.workerId} of ${key.taskQueueId}`);
    },
  }),
  endpoint({
    name: 'quarantineWorker', method: 'PUT',
    route: '/provisioners/<provisionerId>/worker-types/<workerType>/workers/<workerGroup>/<workerId>',
    input: 'v1/quarantine-worker-request.json', output: 'v1/worker-response.json',
    scopes: { AllOf: ['queue:quarantine-worker:<provisionerId>/<workerType>/<workerGroup>/<workerId>'] },
    stability: 'experimental', category: 'Worker Metadata', title: 'Quarantine a worker',
    description: 'A quarantined worker gets no tasks from claimWork until `quarantineUntil`; a past time lifts the ' +
      'quarantine. Each change is kept in `quarantineDetails`. 404 for a worker with no record.',
    handler: async (req) => {
      const key = workerKey(req.params);
      const { quarantineUntil, quarantineInfo = '' } = req.body as { quarantineUntil: string; quarantineInfo?: string };
      const row = await records.quarantineWorker(req.ctx.db, key, req.ctx.clock.now(), {
        clientId: req.clientId ?? 'anonymous',
        quarantineUntil: parseDate(quarantineUntil, 'quarantineUntil'),
        quarantineInfo,
      });
      return row ? records.workerJson(row) : notFound(`Worker ${key.workerGroup}/${key.workerId} of ${key.taskQueueId}`);
    },
  }),
  endpoint({
    name: 'declareWorker', method: 'PUT', route: '/provisioners/<provisionerId>/worker-types/<workerType>/<workerGroup>/<workerId>',
    input: 'v1/update-worker-request.json', output: 'v1/worker-response.json',
    scopes: {
      AllOf: [{ each: 'queue:declare-worker:<provisionerId>/<workerType>/<workerGroup>/<workerId>#<property>', for: 'property', in: 'properties' }],
    },
    stability: 'experimental', category: 'Worker Metadata', title: 'Declare a worker',
    description: 'Creates the worker (and its task queue) or extends its expiry; an earlier `expires` than the ' +
      'current one is ignored. Needs a `#<property>` scope for each property in the body.',
    handler: async (req) => {
      req.authorize({ properties: bodyProperties(req.body) });
      const expires = parseDate((req.body as { expires: string }).expires, 'expires');
      return records.workerJson(await records.declareWorker(req.ctx.db, workerKey(req.params), req.ctx.clock.now(), expires));
    },
  }),
];
