// The load-generator process: forked by run.ts with one job, runs it, sends the result back over
// IPC. Separate from both the service and the orchestrator, so its CPU is its own.
import { runHandoff, runLean, runOfficial, type Job, type JobResult, type WindowHooks } from './workload.js';

const runners: Record<Job['kind'], (job: Job, hooks: WindowHooks) => Promise<JobResult>> = {
  lean: runLean,
  official: runOfficial,
  handoff: runHandoff,
};

const hooks: WindowHooks = {
  start: () => process.send!({ window: 'start' }),
  end: () => process.send!({ window: 'end' }),
};

// The orchestrator gone (killed by a timeout, say) closes the IPC channel: stop too, or the load
// loops would go on against a service that no longer answers, at a full core each.
process.once('disconnect', () => process.exit(1));

process.once('message', (job: Job) => {
  runners[job.kind](job, hooks).then(
    (result) => process.send!({ result }, () => process.exit(0)),
    (err) => process.send!({ error: String((err as Error)?.stack ?? err) }, () => process.exit(1)),
  );
});
