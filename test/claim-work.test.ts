// claimWork and the deprecated claimTask: batch sizes, priority then FIFO, the long-poll (empty
// timeout and NOTIFY hand-off), task-running messages, the temporary credentials a claim hands
// out, and the scopes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { createTasks, slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { hawkHeader, rejectsWith } from './harness/http.js';
import http from 'node:http';
import { invariantViolations } from './harness/invariants.js';
import { taskMessages } from './harness/messages.js';
import { shiftClock } from './harness/clock.js';
import { waitFor } from './harness/wait.js';
import { claimBatcher } from '../services/queue/src/claims/claim.js';

const inLine = (t: TestQueue, taskQueueId: string): number => t.service.ctx.waiters.inLine(taskQueueId);

describe('claimWork', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1, taskClaimTimeoutSec: 600 });
  });
  after(async () => {
    await q?.stop();
  });

  const worker = (workerId = 'w1', tasks = 1) => ({ workerGroup: 'wg', workerId, tasks });

  const createPending = (taskQueueId: string, n: number, overrides: Record<string, unknown> = {}) =>
    createTasks(q.queue(), taskQueueId, n, overrides);

  /** Resolves once a claimWork long-poll for the queue is waiting in the service. */
  const waiting = (taskQueueId: string) =>
    waitFor(`a claimWork waiting on ${taskQueueId}`, () => inLine(q, taskQueueId) > 0, { everyMs: 2 });

  it('claims up to the requested number, at most 32, and only what is pending', async () => {
    const taskQueueId = uniqueQueue();
    const ids = await createPending(taskQueueId, 40);
    const first = await q.queue().claimWork(taskQueueId, worker('w1', 32));
    assert.equal(first.tasks.length, 32);
    const second = await q.queue().claimWork(taskQueueId, worker('w1', 32));
    assert.equal(second.tasks.length, 8);
    const claimed = [...first.tasks, ...second.tasks].map((c: any) => c.status.taskId);
    assert.deepEqual(new Set(claimed), new Set(ids));
    assert.equal(new Set(claimed).size, 40);
    for (const c of first.tasks) {
      assert.equal(c.status.state, 'running');
      assert.equal(c.runId, 0);
      assert.equal(c.workerGroup, 'wg');
      assert.equal(c.workerId, 'w1');
      assert.equal(c.status.runs[0].workerId, 'w1');
      assert.equal(c.status.runs[0].takenUntil, c.takenUntil);
      assert.equal(c.task.taskQueueId, taskQueueId);
    }
    await rejectsWith(q.queue().claimWork(taskQueueId, worker('w1', 33)), 400, 'InputValidationError');
    await rejectsWith(q.queue().claimWork(taskQueueId, worker('w1', 0)), 400, 'InputValidationError');
    await rejectsWith(q.queue().claimWork(taskQueueId, { workerGroup: 'wg' }), 400, 'InputValidationError');
    await rejectsWith(q.queue().claimWork(taskQueueId, { ...worker(), workerId: 'bad id' }), 400, 'InputValidationError');
    await rejectsWith(q.queue().claimWork('no-slash', worker()), 400, 'InvalidRequestArguments');
    assert.deepEqual(await invariantViolations(q.service.ctx.db, ids), []);
  });

  it('hands out the highest priority first, then the oldest', async () => {
    const taskQueueId = uniqueQueue();
    const order = ['lowest', 'high', 'lowest', 'highest', 'high', 'medium', 'very-low', 'highest'];
    const created: Array<{ taskId: string; priority: string; i: number }> = [];
    for (const [i, priority] of order.entries()) {
      const [taskId] = await createPending(taskQueueId, 1, { priority });
      created.push({ taskId: taskId!, priority, i });
    }
    const rank = ['highest', 'very-high', 'high', 'medium', 'low', 'very-low', 'lowest'];
    const expected = [...created].sort((a, b) => rank.indexOf(a.priority) - rank.indexOf(b.priority) || a.i - b.i);
    // a batch takes the best three, in that order
    const batch = await q.queue().claimWork(taskQueueId, worker('w1', 3));
    assert.deepEqual(batch.tasks.map((c: any) => c.status.taskId), expected.slice(0, 3).map((e) => e.taskId));
    // then one at a time, in order
    for (const e of expected.slice(3)) {
      const { tasks } = await q.queue().claimWork(taskQueueId, worker());
      assert.equal(tasks[0].status.taskId, e.taskId, `expected the ${e.priority} task created ${e.i}th`);
    }
  });

  it('answers an empty queue with no tasks once the long-poll times out', async () => {
    const started = Date.now();
    const { tasks } = await q.queue().claimWork(uniqueQueue(), worker());
    const took = Date.now() - started;
    assert.deepEqual(tasks, []);
    assert.ok(took >= 950 && took < 3000, `took ${took} ms with claimWorkTimeoutSec 1`);
  });

  it('hands a task to a waiting long-poll within milliseconds of it becoming pending', async (t) => {
    // a 20 s long-poll, whose fallback poll is 5 s: only the NOTIFY can answer within a second
    q.config.claimWorkTimeoutSec = 20;
    try {
      const afterCommit: number[] = [];
      const whole: number[] = [];
      for (let i = 0; i < 10; i++) {
        const taskQueueId = uniqueQueue();
        let returnedAt = 0;
        const claiming = q.queue().claimWork(taskQueueId, worker()).then((r: any) => {
          returnedAt = Date.now();
          return r;
        });
        await waiting(taskQueueId);
        const taskId = slugid();
        const before = Date.now();
        await q.queue().createTask(taskId, taskDef({ taskQueueId }));
        const createdAt = Date.now();
        const { tasks } = await claiming;
        assert.equal(tasks[0].status.taskId, taskId);
        // the claim often returns before createTask's own response does
        afterCommit.push(Math.max(0, returnedAt - createdAt));
        whole.push(returnedAt - before);
      }
      afterCommit.sort((a, b) => a - b);
      whole.sort((a, b) => a - b);
      t.diagnostic(`hand-off after createTask answered, ms: ${afterCommit.join(' ')}; createTask start to claim: ${whole.join(' ')}`);
      assert.ok(afterCommit[5]! < 100, `median hand-off after createTask answered: ${afterCommit[5]} ms (${afterCommit.join(', ')})`);
      assert.ok(whole[9]! < 2000, `slowest create-to-claim: ${whole[9]} ms (${whole.join(', ')})`);
    } finally {
      q.config.claimWorkTimeoutSec = 1;
    }
  });

  it('wakes a waiting long-poll for a rerun too', async () => {
    const taskQueueId = uniqueQueue();
    const [taskId] = await createPending(taskQueueId, 1);
    const { tasks } = await q.queue().claimWork(taskQueueId, worker());
    await q.queue({ credentials: tasks[0].credentials }).reportFailed(taskId, 0);
    const claiming = q.queue().claimWork(taskQueueId, worker());
    await waiting(taskQueueId);
    await q.queue().rerunTask(taskId);
    const again = await claiming;
    assert.equal(again.tasks[0].runId, 1);
  });

  describe('many long-polls on one queue', () => {
    const woken = () => q.service.ctx.waiters.stats.woken;

    it('a new task wakes the longest waiting only; a burst fans out from claim to claim and reaches them all', async () => {
      // a 20 s long-poll, whose fallback poll is 5 s: only wakes can answer the burst within 2 s
      q.config.claimWorkTimeoutSec = 20;
      try {
        const taskQueueId = uniqueQueue();
        const got = new Map<string, string[]>();
        const calls: Array<Promise<unknown>> = [];
        for (let i = 0; i < 20; i++) {
          // one at a time, so the line's order is known
          calls.push(q.queue().claimWork(taskQueueId, worker(`w${i}`)).then((r: any) => got.set(`w${i}`, r.tasks.map((c: any) => c.status.taskId))));
          await waitFor(`${i + 1} in line`, () => inLine(q, taskQueueId) === i + 1, { everyMs: 2 });
        }
        for (let round = 1; round <= 2; round++) {
          const before = woken();
          const [taskId] = await createPending(taskQueueId, 1);
          await waitFor(`round ${round}: the task claimed`, () => got.size === round, { everyMs: 2 });
          // the notification's wake, made synchronously: waking the whole line would have made 20
          // at once; the claim took the last pending run, so it wakes no one else
          assert.equal(woken() - before, 1);
          // the longest waiting got it
          assert.deepEqual(got.get(`w${round - 1}`), [taskId], `round ${round}: ${JSON.stringify([...got])}`);
          await waitFor(`round ${round}: the rest in line`, () => inLine(q, taskQueueId) === 20 - round, { everyMs: 2 });
          assert.equal(woken() - before, 1);
        }
        // 18 tasks at once (a few batches, a notification each): each claim that leaves runs
        // pending wakes two more waiters
        const started = Date.now();
        const burst = await Promise.all(Array.from({ length: 18 }, async () => {
          const taskId = slugid();
          await q.queue().createTask(taskId, taskDef({ taskQueueId }));
          return taskId;
        }));
        await Promise.all(calls);
        const took = Date.now() - started;
        assert.ok(took < 2000, `the burst took ${took} ms to reach 18 waiters`);
        const handed = [...got.values()].flat();
        assert.equal(got.size, 20);
        assert.ok([...got.values()].every((t) => t.length === 1), JSON.stringify([...got]));
        assert.deepEqual(handed.slice(2).sort(), [...burst].sort());
        assert.equal(inLine(q, taskQueueId), 0);
      } finally {
        q.config.claimWorkTimeoutSec = 1;
      }
    });

    it('a quarantined long-poll keeps no place in line, so the task goes to the next waiter', async () => {
      q.config.claimWorkTimeoutSec = 3;
      try {
        const taskQueueId = uniqueQueue();
        const [prov, wt] = taskQueueId.split('/') as [string, string];
        await createPending(taskQueueId, 1);
        assert.equal((await q.queue().claimWork(taskQueueId, worker('bad'))).tasks.length, 1);
        await q.queue().quarantineWorker(prov, wt, 'wg', 'bad', { quarantineUntil: taskcluster.fromNowJSON('1 hour') });
        const claims = claimBatcher(q.service.ctx).stats.items;
        const bad = q.queue().claimWork(taskQueueId, worker('bad'));
        // it registered before its (empty) claim; then it finds it is quarantined and leaves
        await waitFor('the quarantined worker looked', () => claimBatcher(q.service.ctx).stats.items > claims, { everyMs: 2 });
        await waitFor('the quarantined worker out of line', () => inLine(q, taskQueueId) === 0, { everyMs: 2 });
        const good = q.queue().claimWork(taskQueueId, worker('good'));
        await waitFor('the next waiter in line', () => inLine(q, taskQueueId) === 1, { everyMs: 2 });
        const started = Date.now();
        const [taskId] = await createPending(taskQueueId, 1);
        assert.deepEqual((await good).tasks.map((c: any) => c.status.taskId), [taskId]);
        // woken: its own last look comes only at the end of its 3 s long-poll
        const took = Date.now() - started;
        assert.ok(took < 2000, `the next waiter got the task after ${took} ms`);
        assert.deepEqual(await bad, { tasks: [] });
      } finally {
        q.config.claimWorkTimeoutSec = 1;
      }
    });
  });

  it('does not hand out a task past its deadline, and leaves its pending row to the deadline resolver', async () => {
    // no background loops here: the deadline resolver must not tidy up before we look
    const still = await startTestQueue({ claimWorkTimeoutSec: 1, enableLoops: false });
    try {
      const taskQueueId = uniqueQueue();
      const taskId = slugid();
      await still.queue().createTask(taskId, taskDef({ taskQueueId, deadline: new Date(Date.now() + 60_000).toISOString() }));
      shiftClock(still, 120_000);
      const { tasks } = await still.queue().claimWork(taskQueueId, worker());
      assert.deepEqual(tasks, []);
      assert.equal((await still.queue().status(taskId)).status.state, 'pending');
      assert.deepEqual(await invariantViolations(still.service.ctx.db, [taskId]), []);
    } finally {
      await still.stop();
    }
  });

  it('commits a task-running message per claim', async () => {
    const taskQueueId = uniqueQueue();
    const [taskId] = await createPending(taskQueueId, 1, { routes: ['index.r'], tags: { t: '1' } });
    const { tasks } = await q.queue().claimWork(taskQueueId, worker('w9'));
    const msgs = await taskMessages(q.service.ctx.db, taskId!);
    assert.deepEqual(msgs.map((m) => m.exchange), ['task-defined', 'task-pending', 'task-running']);
    const running = msgs[2]!;
    assert.equal(running.body.runId, 0);
    assert.equal(running.body.workerGroup, 'wg');
    assert.equal(running.body.workerId, 'w9');
    assert.equal(new Date(running.body.takenUntil).getTime(), new Date(tasks[0].takenUntil).getTime());
    assert.deepEqual(running.body.status, tasks[0].status);
    assert.deepEqual(running.body.task, { tags: { t: '1' } });
    assert.deepEqual(running.row.cc, ['route.index.r']);
  });

  it('sets takenUntil to now + the claim timeout, in whole seconds', async () => {
    const taskQueueId = uniqueQueue();
    await createPending(taskQueueId, 1);
    const before = Date.now();
    const { tasks } = await q.queue().claimWork(taskQueueId, worker());
    const until = new Date(tasks[0].takenUntil).getTime();
    assert.equal(until % 1000, 0);
    assert.ok(until >= before + 600_000 && until <= Date.now() + 601_000, `${tasks[0].takenUntil}`);
  });

  describe('credentials handed out with a claim', () => {
    it('are temporary credentials for this run plus the task scopes, until takenUntil', async () => {
      const taskQueueId = uniqueQueue();
      const [taskId] = await createPending(taskQueueId, 1, { scopes: ['secrets:get:project/x'] });
      const { tasks } = await q.queue().claimWork(taskQueueId, worker('w2'));
      const c = tasks[0];
      const until = new Date(c.takenUntil).getTime();
      assert.equal(c.credentials.clientId, `task-client/${taskId}/0/on/wg/w2/until/${Math.floor(until / 1000)}`);
      const cert = JSON.parse(c.credentials.certificate);
      assert.deepEqual(cert.scopes, [
        `queue:reclaim-task:${taskId}/0`, `queue:resolve-task:${taskId}/0`, `queue:create-artifact:${taskId}/0`, 'secrets:get:project/x',
      ]);
      assert.equal(cert.expiry, until);
      assert.equal(cert.issuer, q.credentials.clientId);
    });

    it('work for reclaim and resolve of that run, and for nothing else', async () => {
      const taskQueueId = uniqueQueue();
      const [taskId, otherId] = await createPending(taskQueueId, 2);
      const { tasks } = await q.queue().claimWork(taskQueueId, worker('w3', 2));
      const mine = tasks.find((c: any) => c.status.taskId === taskId);
      const other = tasks.find((c: any) => c.status.taskId === otherId);
      const wq = q.queue({ credentials: mine.credentials });
      const reclaimed = await wq.reclaimTask(taskId, 0);
      assert.equal(reclaimed.status.state, 'running');
      await rejectsWith(wq.reportCompleted(otherId, 0), 403, 'InsufficientScopes');
      await rejectsWith(wq.reclaimTask(otherId, 0), 403, 'InsufficientScopes');
      await rejectsWith(wq.reportCompleted(taskId, 1), 403, 'InsufficientScopes');
      await rejectsWith(wq.createTask(slugid(), taskDef({ taskQueueId })), 403, 'InsufficientScopes');
      await rejectsWith(wq.cancelTask(taskId), 403, 'InsufficientScopes');
      await rejectsWith(wq.claimWork(taskQueueId, worker('w3')), 403, 'InsufficientScopes');
      await rejectsWith(wq.status(otherId), 403, 'InsufficientScopes');
      const artifact = { storageType: 'reference', expires: new Date(Date.now() + 3600_000).toISOString(), url: 'https://example.com/a', contentType: 'text/plain' };
      assert.equal((await wq.createArtifact(taskId, 0, 'private/a.txt', artifact)).storageType, 'reference');
      await rejectsWith(wq.createArtifact(otherId, 0, 'private/a.txt', artifact), 403, 'InsufficientScopes');
      // the reclaimed credentials work too, and resolve the run
      const wq2 = q.queue({ credentials: reclaimed.credentials });
      assert.equal((await wq2.reportCompleted(taskId, 0)).status.state, 'completed');
      await q.queue({ credentials: other.credentials }).reportCompleted(otherId, 0);
    });
  });

  it('hands out credentials that still work for a task with hundreds of scopes (a large Hawk header)', async () => {
    const taskQueueId = uniqueQueue();
    // as many as createTask accepts (its limit keeps them within the server's header limit)
    const scope = (i: number) => `secrets:get:project/some-fairly-long-project-name/secret-${String(i).padStart(5, '0')}`;
    const scopes = Array.from({ length: Math.floor((180 * 1024) / (scope(0).length + 3)) }, (_, i) => scope(i));
    const [taskId] = await createPending(taskQueueId, 1, { scopes });
    const { tasks } = await q.queue().claimWork(taskQueueId, worker());
    assert.ok(tasks[0].credentials.certificate.length > 170_000);
    const wq = q.queue({ credentials: tasks[0].credentials });
    const reclaimed = await wq.reclaimTask(taskId, 0);
    assert.equal((await q.queue({ credentials: reclaimed.credentials }).reportCompleted(taskId, 0)).status.state, 'completed');
  });

  it('needs claim-work for the queue and worker-id for the worker', async () => {
    const taskQueueId = uniqueQueue();
    const scopes = [`queue:claim-work:${taskQueueId}`, 'queue:worker-id:wg/w1'];
    await rejectsWith(q.queue({ authorizedScopes: [scopes[0]] }).claimWork(taskQueueId, worker()), 403, 'InsufficientScopes', /worker-id/);
    await rejectsWith(q.queue({ authorizedScopes: [scopes[1]] }).claimWork(taskQueueId, worker()), 403, 'InsufficientScopes', /claim-work/);
    await rejectsWith(q.queue({ authorizedScopes: scopes }).claimWork(taskQueueId, worker('w2')), 403, 'InsufficientScopes');
    await createPending(taskQueueId, 1);
    const { tasks } = await q.queue({ authorizedScopes: scopes }).claimWork(taskQueueId, worker());
    assert.equal(tasks.length, 1);
    const anon = new taskcluster.Queue({ rootUrl: q.rootUrl, retries: 0 });
    await rejectsWith(anon.claimWork(taskQueueId, worker()), 403, 'InsufficientScopes');
  });

  describe('claimTask (deprecated)', () => {
    it('claims a specific pending run, answers the same worker again, and refuses others with 409', async () => {
      const taskQueueId = uniqueQueue();
      const [taskId, otherId] = await createPending(taskQueueId, 2);
      const claim = await q.queue().claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w1' });
      assert.equal(claim.status.state, 'running');
      assert.equal(claim.runId, 0);
      assert.equal(claim.workerId, 'w1');
      assert.equal(claim.task.taskQueueId, taskQueueId);
      const again = await q.queue().claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w1' });
      assert.equal(again.takenUntil, claim.takenUntil);
      assert.deepEqual(again.status, claim.status);
      await rejectsWith(q.queue().claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w2' }), 409, 'RequestConflict');
      await rejectsWith(q.queue().claimTask(taskId, 1, { workerGroup: 'wg', workerId: 'w1' }), 404, 'ResourceNotFound');
      await rejectsWith(q.queue().claimTask(slugid(), 0, { workerGroup: 'wg', workerId: 'w1' }), 404, 'ResourceNotFound');
      // claimWork does not hand out the claimed run again
      const { tasks } = await q.queue().claimWork(taskQueueId, worker('w3', 4));
      assert.deepEqual(tasks.map((c: any) => c.status.taskId), [otherId]);
      await q.queue({ credentials: claim.credentials }).reportCompleted(taskId, 0);
      await rejectsWith(q.queue().claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w1' }), 409, 'RequestConflict');
      assert.deepEqual(await invariantViolations(q.service.ctx.db, [taskId!, otherId!]), []);
    });

    it('needs claim-task for the queue and worker-id for the worker', async () => {
      const taskQueueId = uniqueQueue();
      const [taskId] = await createPending(taskQueueId, 1);
      const scopes = [`queue:claim-task:${taskQueueId}`, 'queue:worker-id:wg/w1'];
      await rejectsWith(q.queue({ authorizedScopes: [scopes[0]] }).claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w1' }), 403, 'InsufficientScopes');
      await rejectsWith(q.queue({ authorizedScopes: [scopes[1]] }).claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w1' }), 403, 'InsufficientScopes');
      const claim = await q.queue({ authorizedScopes: scopes }).claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w1' });
      assert.equal(claim.status.state, 'running');
    });
  });

  describe('a long-poll whose client went away', () => {
    let long: TestQueue;
    before(async () => {
      long = await startTestQueue({ claimWorkTimeoutSec: 60 });
    });
    after(async () => {
      await long?.stop();
    });

    it('stops waiting at once and claims nothing for it', async () => {
      const taskQueueId = uniqueQueue();
      const url = `${long.rootUrl}/api/queue/v1/claim-work/${taskQueueId}`;
      const body = JSON.stringify(worker('gone'));
      const req = http.request(url, {
        method: 'POST',
        headers: { authorization: hawkHeader(url, 'POST', { credentials: long.credentials }), 'content-type': 'application/json' },
      });
      req.on('error', () => {});
      req.end(body);
      const waiters = () => inLine(long, taskQueueId);
      await waitFor('the long-poll waiting', () => waiters() > 0, { everyMs: 2 });
      req.destroy();
      // released by the disconnect, long before its 60 s would end
      await waitFor('the long-poll released', () => waiters() === 0, { everyMs: 2, timeoutMs: 10_000 });
      const [taskId] = await createTasks(long.queue(), taskQueueId, 1);
      assert.equal((await long.queue().status(taskId!)).status.state, 'pending');
      const claimed = await long.queue().claimWork(taskQueueId, worker('here'));
      assert.deepEqual(claimed.tasks.map((c: any) => [c.status.taskId, c.workerId]), [[taskId, 'here']]);
    });
  });
});
