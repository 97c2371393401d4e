// Every endpoint needs exactly the scopes its declaration says. For each endpoint in the route
// table with a scope template, a fresh fixture is prepared, the template is rendered with the
// fixture's values (renderExpression, as the server does), and every minimal scope set that
// satisfies it is tried: with the whole set the call gets past authorization (not 401/403), and
// with any one scope of it removed it is a 403 InsufficientScopes. Endpoints added later are
// covered by the same loop; the test fails until it knows how to build their bodies.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { endpoints } from '../services/queue/src/http/routes.js';
import { routeParams, type Endpoint } from '../services/queue/src/http/endpoint.js';
import { renderExpression, satisfies, type ScopeExpression } from '../services/queue/src/auth/scopes.js';
import { prioritiesAtOrAbove } from '../services/queue/src/tasks/priority.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { rawRequest } from './harness/http.js';
import { waitFor } from './harness/wait.js';

/** Endpoints left out, and why. Keep this list short. */
const skipped: Record<string, string> = {
  declareProvisioner: 'removed from Taskcluster: always a 400 before any scope check',
  declareWorkerType: 'removed from Taskcluster: always a 400 before any scope check',
};

/** Answers other than success that a caller with the right scopes gets from the generic fixture. */
const expectedRefusals: Record<string, number[]> = {
  finishArtifact: [400], // object artifacts are not stored: always 400 InputError, after the scope check
};

/** Request bodies by input schema. */
const bodies: Record<string, (f: Fixture) => Record<string, unknown>> = {
  'v1/create-task-request.json': (f) => taskDef({
    taskQueueId: f.taskQueueId, schedulerId: f.schedulerId, projectId: f.projectId, priority: 'medium',
    scopes: ['fixture:scope-a'], routes: ['fixture.route'],
  }),
  'v1/tasks-request.json': (f) => ({ taskIds: [f.taskId, f.otherTaskId] }),
  'v1/task-exception-request.json': () => ({ reason: 'malformed-payload' }),
  'v1/claim-work-request.json': (f) => ({ workerGroup: f.workerGroup, workerId: f.workerId, tasks: 1 }),
  'v1/task-claim-request.json': (f) => ({ workerGroup: f.workerGroup, workerId: f.workerId }),
  'v1/post-artifact-request.json': () => ({
    storageType: 'reference', expires: new Date(Date.now() + 3600_000).toISOString(), url: 'https://example.com/log', contentType: 'text/plain',
  }),
  'v1/finish-artifact-request.json': () => ({ uploadId: slugid() }),
  'v1/quarantine-worker-request.json': () => ({ quarantineUntil: new Date(Date.now() + 3600_000).toISOString() }),
  'v1/update-worker-request.json': () => ({ expires: new Date(Date.now() + 86400_000).toISOString() }),
};

interface Fixture {
  taskId: string;
  otherTaskId: string;
  runId: string;
  taskGroupId: string;
  schedulerId: string;
  projectId: string;
  taskQueueId: string;
  provisionerId: string;
  workerType: string;
  workerGroup: string;
  workerId: string;
  name: string;
}

/** Every set of scopes that satisfies `expr` with nothing to spare. */
function minimalScopeSets(expr: ScopeExpression): string[][] {
  const sets = (e: ScopeExpression): string[][] => {
    if (typeof e === 'string') return [[e]];
    if ('AnyOf' in e) return e.AnyOf.flatMap(sets);
    return e.AllOf.reduce<string[][]>((acc, child) => acc.flatMap((a) => sets(child).map((b) => [...new Set([...a, ...b])])), [[]]);
  };
  const all = sets(expr).map((s) => s.sort());
  return all.filter((s, i) => !all.some((o, j) => j !== i && o.length < s.length && o.every((x) => s.includes(x))));
}

describe('every endpoint needs exactly its scopes', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });

  /** A running task (with an artifact) and a pending one in a sealed group, a worker, a queue. */
  async function prepare(): Promise<Fixture> {
    const taskQueueId = uniqueQueue();
    const [provisionerId, workerType] = taskQueueId.split('/') as [string, string];
    const f: Fixture = {
      taskId: slugid(), otherTaskId: slugid(), runId: '0', taskGroupId: slugid(), schedulerId: 'fixture-sched', projectId: 'fixture-proj',
      taskQueueId, provisionerId, workerType, workerGroup: 'fixture-wg', workerId: 'fixture-w', name: 'private/logs/live.log',
    };
    const queue = q.queue();
    const def = { taskQueueId, taskGroupId: f.taskGroupId, schedulerId: f.schedulerId, projectId: f.projectId };
    await queue.createTask(f.taskId, taskDef(def));
    const { tasks } = await queue.claimWork(taskQueueId, { workerGroup: f.workerGroup, workerId: f.workerId, tasks: 1 });
    assert.equal(tasks.length, 1);
    await queue.createTask(f.otherTaskId, taskDef(def));
    await queue.createArtifact(f.taskId, 0, f.name, bodies['v1/post-artifact-request.json']!(f));
    await queue.sealTaskGroup(f.taskGroupId);
    // the queue's "last seen" row is written in the background
    await waitFor('the task queue row', async () => {
      const row = await q.service.ctx.db.selectFrom('task_queues').select('task_queue_id').where('task_queue_id', '=', taskQueueId).executeTakeFirst();
      return !!row;
    });
    return f;
  }

  function request(e: Endpoint, f: Fixture, body: Record<string, unknown> | undefined, authorizedScopes: string[]) {
    const values = f as unknown as Record<string, string>;
    const path = '/api/queue/v1' + e.route.replace(/<([a-zA-Z]+)>/g, (_m, p: string) => {
      assert.ok(p in values, `${e.name}: no fixture value for URL parameter <${p}>`);
      return encodeURIComponent(values[p]!);
    });
    return rawRequest(q.rootUrl, { method: e.method, path, credentials: q.credentials, authorizedScopes, ...(body ? { body } : {}) });
  }

  const covered = endpoints.filter((e) => e.scopes !== null);

  it('covers the whole route table', () => {
    assert.ok(covered.length >= 30, `${covered.length} endpoints with scopes`);
    for (const name of Object.keys(skipped)) assert.ok(endpoints.some((e) => e.name === name), `skipped ${name} is not an endpoint`);
  });

  for (const e of covered) {
    if (skipped[e.name]) {
      it(`${e.name}: skipped — ${skipped[e.name]}`, { skip: skipped[e.name] }, () => {});
      continue;
    }
    it(`${e.name}`, async () => {
      const f = await prepare();
      let body: Record<string, unknown> | undefined;
      if (e.input) {
        const make = bodies[e.input];
        assert.ok(make, `${e.name}: no body fixture for ${e.input}; add one to \`bodies\` in test/scopes.test.ts`);
        body = make(f);
      }
      // the values the handler renders the template with: URL params, the body, the stored task
      const values: Record<string, unknown> = {
        ...f,
        names: [f.name],
        properties: body ? Object.keys(body) : [],
        ...(body && Array.isArray(body.taskIds) ? { taskIds: body.taskIds } : {}),
        ...(body && e.input === 'v1/create-task-request.json'
          ? { scopes: body.scopes, routes: body.routes, priorities: prioritiesAtOrAbove(body.priority as string) }
          : {}),
      };
      for (const p of routeParams(e.route)) assert.ok(p in values, `${e.name}: no fixture value for <${p}>`);
      const expression = renderExpression(e.scopes!, values);
      const anonymous = q.config.anonymousScopes;
      const sets = minimalScopeSets(expression);
      assert.ok(sets.length > 0);

      // without any one scope of a minimal set: 403 (nothing changes, so do these first)
      for (const set of sets) {
        for (const missing of set) {
          const fewer = set.filter((s) => s !== missing);
          assert.equal(satisfies([...fewer, ...anonymous], expression), false, `${e.name}: ${missing} is not needed in ${JSON.stringify(set)}`);
          const res = await request(e, f, body, fewer);
          assert.equal(res.status, 403, `${e.name} without ${missing} (with ${JSON.stringify(fewer)}): ${res.status} ${res.text.slice(0, 300)}`);
          assert.equal(res.body.code, 'InsufficientScopes');
        }
      }
      // with a whole minimal set: past authorization
      const allowed = expectedRefusals[e.name] ?? [];
      for (const set of sets) {
        const res = await request(e, f, body, set);
        const ok = (res.status >= 200 && res.status < 400) || res.status === 409 || allowed.includes(res.status);
        assert.ok(ok, `${e.name} with ${JSON.stringify(set)}: ${res.status} ${res.text.slice(0, 300)}`);
      }
    });
  }
});
