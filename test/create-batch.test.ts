// createTask calls in flight together share one transaction (tasks/create-batch.ts); the unusual
// ones (repeats, conflicts, other schedulers, sealed groups, dependencies, large tasks) are answered
// by the single path. Every answer, stored row and outbox row must be what one call at a time gives.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import taskcluster from 'taskcluster-client';
import { sql } from 'kysely';
import { createBatcher, createBatchOptions } from '../services/queue/src/tasks/create-batch.js';
import { pendingChannel } from '../services/queue/src/runs/schedule.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { invariantViolations, tableCounts } from './harness/invariants.js';
import { taskMessages } from './harness/messages.js';
import { waitFor } from './harness/wait.js';

interface Answer {
  code: number;
  status?: any;
  message?: string;
}

async function answer(p: Promise<any>): Promise<Answer> {
  try {
    return { code: 200, status: (await p).status };
  } catch (err: any) {
    if (!err.statusCode) throw err;
    return { code: err.statusCode, message: err.message };
  }
}

interface Call {
  taskId: string;
  def: Record<string, unknown>;
}

const sameSchedulerConflict = (scheduler: string) => new RegExp(`contains tasks with schedulerId ${scheduler};`);

describe('createTask in shared transactions', () => {
  let q: TestQueue;
  let observer: pg.Client;
  const db = () => q.service.ctx.db;
  const queue = () => q.queue();
  /** The createTask calls not yet answered, and the refusals so far, for reach's failure message. */
  const inFlight = new Set<string>();
  const refused: string[] = [];
  let calls = 0;
  const create = (c: Call) => {
    const label = `#${++calls} ${c.taskId}`;
    inFlight.add(label);
    return answer(queue().createTask(c.taskId, c.def))
      .then((a) => {
        if (a.code !== 200) refused.push(`${label}: ${a.code} ${a.message?.split('\n')[0]}`);
        return a;
      })
      .finally(() => inFlight.delete(label));
  };

  before(async () => {
    q = await startTestQueue({ enableLoops: false });
    observer = new pg.Client({ connectionString: q.database.url });
    await observer.connect();
  });
  after(async () => {
    await observer?.end();
    await q?.stop();
  });

  /** Backends of this database waiting for a lock. */
  async function lockWaiters(): Promise<number> {
    const r = await observer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    return r.rows[0].n;
  }

  /**
   * A transaction of the test's own holding a lock while `during` runs; released when it returns
   * `release()` or throws (so a failing check does not leave the service stuck behind it).
   */
  async function whileLocked<T>(
    statement: string,
    values: unknown[],
    during: (release: () => Promise<void>) => Promise<T>,
    end: 'COMMIT' | 'ROLLBACK' = 'COMMIT',
  ): Promise<T> {
    const c = new pg.Client({ connectionString: q.database.url });
    await c.connect();
    await c.query('BEGIN');
    await c.query(statement, values);
    let open = true;
    const release = async () => {
      if (!open) return;
      open = false;
      await c.query(end);
      await c.end();
    };
    try {
      return await during(release);
    } finally {
      await release();
    }
  }

  /**
   * Waits for a state the service reaches after HTTP calls (generously: the test process is the
   * service too, but within the client's 30 s request timeout, so that a stall fails here, with
   * the state below, rather than as a bare request timeout).
   */
  async function reach(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
    try {
      await waitFor(what, check, { timeoutMs: 20_000 });
    } catch (err) {
      const batcher = createBatcher(q.service.ctx);
      const backends = await observer.query(`SELECT pid, state, wait_event_type, wait_event, left(query, 60) AS query
        FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
      throw new Error(`${(err as Error).message} (queued ${batcher.queued}, stats ${JSON.stringify(batcher.stats)}, ` +
        `calls unanswered ${inFlight.size}: ${[...inFlight].join(', ')}; refused ${JSON.stringify(refused)}; backends ${JSON.stringify(backends.rows)})`);
    }
  }

  /** Every message and row of a task created just now, checked against the answer it got. */
  async function assertStored(taskId: string, status: any, def: Record<string, unknown>, scheduled = true) {
    assert.equal(status.taskId, taskId);
    assert.deepEqual((await queue().status(taskId)).status, status);
    const task = await queue().task(taskId);
    for (const k of ['taskGroupId', 'schedulerId', 'payload', 'taskQueueId'] as const) {
      if (def[k] !== undefined) assert.deepEqual(task[k], def[k], `${taskId}: ${k}`);
    }
    const messages = await taskMessages(db(), taskId);
    const defined = { version: 1, status: { ...status, state: 'unscheduled', runs: [] }, task: { tags: {} } };
    if (scheduled) {
      assert.equal(status.state, 'pending');
      assert.deepEqual(messages.map((m) => [m.exchange, m.body]), [
        ['task-defined', defined],
        ['task-pending', { version: 1, status, runId: 0, task: { tags: {} } }],
      ]);
    } else {
      assert.equal(status.state, 'unscheduled');
      assert.deepEqual(messages.map((m) => [m.exchange, m.body]), [['task-defined', defined]]);
    }
    const rows = await sql<{ pending: number; deadlines: number }>`
      SELECT (SELECT count(*)::int FROM pending WHERE task_id = ${taskId}) AS pending,
        (SELECT count(*)::int FROM task_deadlines WHERE task_id = ${taskId}) AS deadlines`.execute(db());
    assert.deepEqual(rows.rows[0], { pending: scheduled ? 1 : 0, deadlines: 1 }, taskId);
  }

  async function assertNotStored(taskId: string) {
    assert.equal(await (await db().selectFrom('tasks').select('task_id').where('task_id', '=', taskId).executeTakeFirst()), undefined, taskId);
    assert.deepEqual(await taskMessages(db(), taskId), [], taskId);
  }

  async function group(taskGroupId: string) {
    return db().selectFrom('task_groups').selectAll().where('task_group_id', '=', taskGroupId).executeTakeFirstOrThrow();
  }

  it('serves a batch holding repeats, conflicts, two schedulers for a new group and a sealed group exactly as one call at a time', async () => {
    const batcher = createBatcher(q.service.ctx);
    const queueA = uniqueQueue();
    const queueB = uniqueQueue();

    // what exists before
    const existing: Call = { taskId: slugid(), def: taskDef({ taskQueueId: queueA }) };
    const existingStatus = (await create(existing)).status;
    const groupA = slugid();
    await create({ taskId: slugid(), def: taskDef({ taskGroupId: groupA, schedulerId: 'sched-a' }) });
    const sealedGroup = slugid();
    const sealedTask: Call = { taskId: slugid(), def: taskDef({ taskGroupId: sealedGroup, schedulerId: 'sched-s' }) };
    await create(sealedTask);
    await queue().sealTaskGroup(sealedGroup);
    const blockGroup = slugid();
    await create({ taskId: slugid(), def: taskDef({ taskGroupId: blockGroup }) });

    const notified = new Set<string>();
    const listener = new pg.Client({ connectionString: q.database.url });
    await listener.connect();
    listener.on('notification', (n) => notified.add(n.payload ?? ''));
    await listener.query(`LISTEN ${pendingChannel}`);

    const dup: Call = { taskId: slugid(), def: taskDef({ taskQueueId: queueA }) };
    const contestedId = slugid();
    const contested = [1, 2].map((n): Call => ({ taskId: contestedId, def: taskDef({ taskQueueId: queueB, payload: { n } }) }));
    const newGroup = slugid();
    const bySched = (s: string) => [1, 2].map((): Call => ({ taskId: slugid(), def: taskDef({ taskGroupId: newGroup, schedulerId: s }) }));
    const schedX = bySched('sched-x');
    const schedY = bySched('sched-y');
    const groupAOk: Call = { taskId: slugid(), def: taskDef({ taskGroupId: groupA, schedulerId: 'sched-a' }) };
    const groupAOther: Call = { taskId: slugid(), def: taskDef({ taskGroupId: groupA, schedulerId: 'sched-b' }) };
    const intoSealed: Call = { taskId: slugid(), def: taskDef({ taskGroupId: sealedGroup, schedulerId: 'sched-s' }) };
    const existingOther: Call = { taskId: existing.taskId, def: { ...existing.def, payload: { other: true } } };
    const sharedGroup = slugid();
    // expiries 11 down to 2 days, all past taskDef's 1-day deadline: an expiry of exactly '1 day' is
    // computed before taskDef computes the deadline, and a millisecond tick between them made it
    // an earlier one (a rightful 400 that kept the call out of the batch)
    const shared = Array.from({ length: 10 }, (_, i): Call => ({
      taskId: slugid(),
      def: taskDef({ taskGroupId: sharedGroup, taskQueueId: queueB, expires: taskcluster.fromNowJSON(`${11 - i} days`) }),
    }));
    const plain = Array.from({ length: 10 }, (_, i): Call => ({ taskId: slugid(), def: taskDef({ taskQueueId: i % 2 ? queueA : queueB }) }));
    const batched = [dup, dup, ...contested, ...schedX, ...schedY, groupAOk, groupAOther, intoSealed, sealedTask, existing, existingOther, ...shared, ...plain];
    // the single path from the start
    const dependent: Call = { taskId: slugid(), def: taskDef({ dependencies: [existing.taskId] }) };
    const large: Call = { taskId: slugid(), def: taskDef({ taskQueueId: queueA, payload: { blob: 'x'.repeat(70 * 1024) } }) };

    const countsBefore = await tableCounts(db());
    // every lane busy with a call stuck on a group row the test holds: the wave queues behind them
    const { blockers, batchesBefore, answers, alone } = await whileLocked(
      'SELECT 1 FROM task_groups WHERE task_group_id = $1 FOR UPDATE', [blockGroup], async () => {
        const blockers: Array<{ call: Call; answer: Promise<Answer> }> = [];
        for (let i = 1; i <= createBatchOptions.lanes; i++) {
          const call = { taskId: slugid(), def: taskDef({ taskGroupId: blockGroup }) };
          blockers.push({ call, answer: create(call) });
          await reach(`${i} blocked lanes`, async () => (await lockWaiters()) === i);
        }
        const batchesBefore = batcher.stats.batches;
        // concurrent requests reach the server in any order; the plain tasks go one at a time, each
        // once the one before is queued, so the order the pending check below expects is the arrival order
        const others = batched.length - plain.length;
        const answers = batched.slice(0, others).map(create);
        await reach('the first calls queued', () => batcher.queued === others);
        for (const c of plain) {
          answers.push(create(c));
          const n = answers.length;
          await reach(`${n} calls queued`, () => batcher.queued === n);
        }
        const alone = [dependent, large].map(create);
        await reach('the wave queued behind the busy lanes', () => batcher.queued === batched.length);
        return { blockers, batchesBefore, answers, alone };
      });
    const got = await Promise.all(answers);
    const [dependentAnswer, largeAnswer] = await Promise.all(alone);
    const at = (c: Call, n = 0) => got.filter((_, i) => batched[i] === c)[n]!;

    for (const b of blockers) {
      const a = await b.answer;
      assert.equal(a.code, 200, a.message);
      await assertStored(b.call.taskId, a.status, b.call.def);
    }
    assert.equal(batcher.stats.batches - batchesBefore, 1, 'the wave was one batch');

    // an identical repeat in the same batch: both 200 with the same status, one task
    assert.equal(at(dup).code, 200);
    assert.deepEqual(at(dup, 1), at(dup));
    await assertStored(dup.taskId, at(dup).status, dup.def);

    // two bodies under one taskId: one wins, the other gets the single path's 409
    const contestedAnswers = contested.map((c) => at(c));
    const winner = contestedAnswers.findIndex((a) => a.code === 200);
    assert.notEqual(winner, -1, JSON.stringify(contestedAnswers));
    const loser = contestedAnswers[1 - winner]!;
    assert.equal(loser.code, 409);
    assert.match(loser.message!, new RegExp(`taskId ${contestedId} already used by another task with a different definition`));
    await assertStored(contestedId, contestedAnswers[winner]!.status, contested[winner]!.def);

    // a new group claimed by two schedulers in one batch: one scheduler gets it
    const xWon = at(schedX[0]!).code === 200;
    const [won, lost, wonBy] = xWon ? [schedX, schedY, 'sched-x'] : [schedY, schedX, 'sched-y'];
    for (const c of won) await assertStored(c.taskId, at(c).status, c.def);
    for (const c of lost) {
      assert.equal(at(c).code, 409);
      assert.match(at(c).message!, sameSchedulerConflict(wonBy));
      await assertNotStored(c.taskId);
    }
    assert.deepEqual([(await group(newGroup)).scheduler_id, (await group(newGroup)).unresolved], [wonBy, 2]);

    // an existing group: its scheduler joins, another is refused
    await assertStored(groupAOk.taskId, at(groupAOk).status, groupAOk.def);
    assert.equal(at(groupAOther).code, 409);
    assert.match(at(groupAOther).message!, sameSchedulerConflict('sched-a'));
    await assertNotStored(groupAOther.taskId);
    assert.equal((await group(groupA)).unresolved, 2);

    // a sealed group refuses a new task; the repeat of one it holds is still 200
    assert.equal(at(intoSealed).code, 409);
    assert.match(at(intoSealed).message!, /is sealed; no tasks can be added to it/);
    await assertNotStored(intoSealed.taskId);
    assert.equal(at(sealedTask).code, 200);
    assert.equal(at(sealedTask).status.taskId, sealedTask.taskId);
    assert.equal((await group(sealedGroup)).unresolved, 1);

    // a task created before: the identical repeat answers its status, another body a 409
    assert.deepEqual(at(existing), { code: 200, status: existingStatus });
    assert.equal(at(existingOther).code, 409);
    assert.equal((await taskMessages(db(), existing.taskId)).length, 2, 'nothing more for the existing task');

    // many tasks of one group: counted once each, the group's expiry the latest of theirs
    for (const c of shared) await assertStored(c.taskId, at(c).status, c.def);
    const sharedRow = await group(sharedGroup);
    assert.equal(sharedRow.unresolved, 10);
    assert.equal(new Date(sharedRow.expires).toISOString(), new Date(shared[0]!.def.expires as string).toISOString());
    for (const c of plain) await assertStored(c.taskId, at(c).status, c.def);
    // pending in request order (claimWork is FIFO within a priority)
    const seqs = await db().selectFrom('pending').select(['task_id', 'seq']).where('task_id', 'in', plain.map((c) => c.taskId)).execute();
    const bySeq = seqs.sort((a, b) => Number(a.seq) - Number(b.seq)).map((r) => r.task_id);
    assert.deepEqual(bySeq, plain.map((c) => c.taskId));

    assert.equal(dependentAnswer!.code, 200, dependentAnswer!.message);
    await assertStored(dependent.taskId, dependentAnswer!.status, dependent.def, false);
    assert.equal(largeAnswer!.code, 200, largeAnswer!.message);
    await assertStored(large.taskId, largeAnswer!.status, large.def);

    const created = 1 + 1 + won.length + 1 + shared.length + plain.length + 2 + blockers.length;
    const countsAfter = await tableCounts(db());
    assert.equal(countsAfter.tasks - countsBefore.tasks, created);
    assert.equal(countsAfter.runs - countsBefore.runs, created - 1);
    assert.equal(countsAfter.outbox - countsBefore.outbox, 2 * created - 1);
    assert.equal(countsAfter.task_deadlines - countsBefore.task_deadlines, created);
    assert.equal(countsAfter.task_dependencies - countsBefore.task_dependencies, 1);
    await reach('a NOTIFY for each queue', () => notified.has(queueA) && notified.has(queueB));
    await listener.end();
    assert.deepEqual(await invariantViolations(db()), []);
  });

  it('a group another batch takes for another scheduler meanwhile: the batch undoes itself and the single path answers', async () => {
    const batcher = createBatcher(q.service.ctx);
    const taskGroupId = slugid();
    const first: Call = { taskId: slugid(), def: taskDef({ taskGroupId, schedulerId: 'sched-a' }) };
    const second: Call = { taskId: slugid(), def: taskDef({ taskGroupId, schedulerId: 'sched-b' }) };
    const fallbacks = batcher.stats.fallbacks;
    // The second batch's statement reads the groups (no such group yet) and then waits to insert
    // its task: the test's own transaction holds an uncommitted task row with the same taskId.
    // Meanwhile the first batch stores the group for sched-a. Once the test's row is rolled back,
    // the second's task goes in, its group upsert is refused, and the statement aborts itself.
    const placeholder = `INSERT INTO tasks SELECT (jsonb_populate_record(NULL::tasks, to_jsonb(t) || jsonb_build_object('task_id', $1::text))).*
      FROM tasks t LIMIT 1`;
    const { secondAnswer } = await whileLocked(placeholder, [second.taskId], async () => {
      const secondAnswer = create(second);
      await reach('the second batch waiting', async () => (await lockWaiters()) === 1);
      const a = await create(first);
      assert.equal(a.code, 200, a.message);
      await assertStored(first.taskId, a.status, first.def);
      return { secondAnswer };
    }, 'ROLLBACK');
    const b = await secondAnswer;
    assert.equal(b.code, 409);
    assert.match(b.message!, sameSchedulerConflict('sched-a'));
    await assertNotStored(second.taskId);
    assert.equal((await group(taskGroupId)).unresolved, 1);
    assert.equal(batcher.stats.fallbacks, fallbacks, 'answered without the one-by-one fallback');
    assert.deepEqual(await invariantViolations(db()), []);
  });

  it('a storm of 240 concurrent calls of every kind: each answered as alone, nothing stored for a refusal', async () => {
    const batcher = createBatcher(q.service.ctx);
    const before = { ...batcher.stats };
    const taskQueueId = uniqueQueue();
    const def = (o: Record<string, unknown> = {}) => taskDef({ taskQueueId, ...o });
    const sealedGroup = slugid();
    await create({ taskId: slugid(), def: def({ taskGroupId: sealedGroup }) });
    await queue().sealTaskGroup(sealedGroup);
    const takenGroup = slugid();
    await create({ taskId: slugid(), def: def({ taskGroupId: takenGroup, schedulerId: 'owner' }) });

    const plain = Array.from({ length: 90 }, (): Call => ({ taskId: slugid(), def: def() }));
    const repeated = Array.from({ length: 20 }, (): Call => ({ taskId: slugid(), def: def() }));
    const contested = Array.from({ length: 10 }, () => slugid()).map((taskId) => [1, 2].map((n): Call => ({ taskId, def: def({ payload: { n } }) })));
    const splitGroups = Array.from({ length: 5 }, () => slugid()).map((taskGroupId) =>
      ['x', 'y'].map((s) => Array.from({ length: 4 }, (): Call => ({ taskId: slugid(), def: def({ taskGroupId, schedulerId: `sched-${s}` }) }))));
    const sharedGroup = slugid();
    const shared = Array.from({ length: 30 }, (): Call => ({ taskId: slugid(), def: def({ taskGroupId: sharedGroup }) }));
    const sealed = Array.from({ length: 10 }, (): Call => ({ taskId: slugid(), def: def({ taskGroupId: sealedGroup }) }));
    const taken = Array.from({ length: 10 }, (): Call => ({ taskId: slugid(), def: def({ taskGroupId: takenGroup, schedulerId: 'intruder' }) }));
    const calls = [
      ...plain, ...repeated, ...repeated, ...contested.flat(), ...splitGroups.flat(2), ...shared, ...sealed, ...taken,
    ].sort(() => Math.random() - 0.5);
    assert.equal(calls.length, 240);
    const countsBefore = await tableCounts(db());
    const got = new Map<Call, Answer[]>();
    await Promise.all(calls.map(async (c) => {
      const a = await create(c);
      got.set(c, [...(got.get(c) ?? []), a]);
    }));
    const only = (c: Call) => got.get(c)![0]!;

    let created = 0;
    for (const c of [...plain, ...shared]) {
      assert.equal(only(c).code, 200, only(c).message);
      await assertStored(c.taskId, only(c).status, c.def);
      created += 1;
    }
    for (const c of repeated) {
      const [a, b] = got.get(c)!;
      assert.equal(a!.code, 200, a!.message);
      assert.deepEqual(b, a);
      await assertStored(c.taskId, a!.status, c.def);
      created += 1;
    }
    for (const pair of contested) {
      const codes = pair.map((c) => only(c).code).sort();
      assert.deepEqual(codes, [200, 409]);
      const w = pair.find((c) => only(c).code === 200)!;
      await assertStored(w.taskId, only(w).status, w.def);
      created += 1;
    }
    for (const [xs, ys] of splitGroups) {
      const xWon = only(xs![0]!).code === 200;
      const [won, lost] = xWon ? [xs!, ys!] : [ys!, xs!];
      for (const c of won) {
        assert.equal(only(c).code, 200, only(c).message);
        await assertStored(c.taskId, only(c).status, c.def);
        created += 1;
      }
      for (const c of lost) {
        assert.equal(only(c).code, 409);
        assert.match(only(c).message!, sameSchedulerConflict(won[0]!.def.schedulerId as string));
        await assertNotStored(c.taskId);
      }
      assert.equal((await group(won[0]!.def.taskGroupId as string)).unresolved, 4);
    }
    for (const c of sealed) {
      assert.equal(only(c).code, 409);
      assert.match(only(c).message!, /is sealed/);
      await assertNotStored(c.taskId);
    }
    for (const c of taken) {
      assert.equal(only(c).code, 409);
      assert.match(only(c).message!, sameSchedulerConflict('owner'));
      await assertNotStored(c.taskId);
    }
    assert.equal((await group(sharedGroup)).unresolved, 30);
    assert.equal((await group(takenGroup)).unresolved, 1);
    const countsAfter = await tableCounts(db());
    assert.equal(countsAfter.tasks - countsBefore.tasks, created);
    assert.equal(countsAfter.pending - countsBefore.pending, created);
    assert.equal(countsAfter.outbox - countsBefore.outbox, 2 * created);
    assert.deepEqual(await invariantViolations(db()), []);
    // the point of it all: calls shared transactions
    assert.ok(batcher.stats.items - before.items > batcher.stats.batches - before.batches, JSON.stringify({ before, after: batcher.stats }));
  });
});
