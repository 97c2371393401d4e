// Lists the SQL statements each call of one lifecycle sends (round trips to PostgreSQL).
import { logStatements } from './statement-log.js';
import { startTestQueue } from '../../test/harness/service.js';
import { LeanClient } from './lean-client.js';
import { taskDefinition, type Job } from './workload.js';

const log = logStatements();

const q = await startTestQueue({ enableLoops: false });
const client = new LeanClient(q.rootUrl, 1);
const job = { taskQueueId: 'bench/count' } as Job;
const show = (name: string) => {
  process.stdout.write(`\n${name}: ${log.length} statements\n${log.map((l) => `  ${l}`).join('\n')}\n`);
  log.length = 0;
};
for (let i = 0; i < 2; i++) {
  log.length = 0;
  const taskId = (await import('slugid')).nice();
  await client.call('PUT', `/task/${taskId}`, q.credentials, taskDefinition(job, undefined));
  if (i) show('createTask');
  const claim = await client.call<any>('POST', `/claim-work/bench/count`, q.credentials, { workerGroup: 'g', workerId: 'w', tasks: 1 });
  if (i) show('claimWork');
  const c = claim.tasks[0];
  await client.call('POST', `/task/${c.status.taskId}/runs/${c.runId}/completed`, c.credentials);
  if (i) show('reportCompleted');
}
client.close();
await q.stop();
