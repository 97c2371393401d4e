// Temporary credentials handed to a worker with each claim: valid until takenUntil, limited to
// this run plus the task's own scopes.
import { createTemporaryCredentials } from '../auth/certificate.js';
import type { Ctx } from '../context.js';

export function taskCredentials(ctx: Ctx, c: { taskId: string; runId: number; workerGroup: string; workerId: string; takenUntil: Date; scopes: string[] }) {
  const now = ctx.clock.now();
  return createTemporaryCredentials({
    issuer: ctx.issuer,
    clientId: `task-client/${c.taskId}/${c.runId}/on/${c.workerGroup}/${c.workerId}/until/${Math.floor(c.takenUntil.getTime() / 1000)}`,
    scopes: [
      `queue:reclaim-task:${c.taskId}/${c.runId}`,
      `queue:resolve-task:${c.taskId}/${c.runId}`,
      `queue:create-artifact:${c.taskId}/${c.runId}`,
      ...c.scopes,
    ],
    // a little slack for clock skew between queue and worker
    start: new Date(now.getTime() - 5 * 60 * 1000),
    expiry: c.takenUntil,
  });
}
