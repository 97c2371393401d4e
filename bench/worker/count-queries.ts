// Lists the SQL statements the queue sends for what the generic worker does per task besides the
// bare lifecycle: createArtifact (s3) and the PUT of a small log to its putUrl, then a second PUT
// to the same putUrl (a live log re-uploaded while the task runs).
import http from 'node:http';
import { QueueClient } from '@conveyor/client';
import { uploadArtifact } from '@conveyor/worker';
import { logStatements } from '../lifecycle/statement-log.js';
import { startTestQueue } from '../../test/harness/service.js';

const log = logStatements();

const q = await startTestQueue({ enableLoops: false });
const agent = new http.Agent({ keepAlive: true });
const queue = new QueueClient({ rootUrl: q.rootUrl, credentials: q.credentials, agent, retries: 0 });
const show = (name: string) => {
  process.stdout.write(`\n${name}: ${log.length} statements\n${log.map((l) => `  ${l}`).join('\n')}\n`);
  log.length = 0;
};
const now = Date.now();
for (let i = 0; i < 2; i++) {
  const taskId = (await import('slugid')).nice();
  await queue.createTask(taskId, {
    taskQueueId: 'bench/count', created: new Date(now).toISOString(), deadline: new Date(now + 3600_000).toISOString(), payload: {},
    metadata: { name: 'count', description: 'count', owner: 'bench@example.com', source: 'https://example.com/bench' },
  });
  const claim = await queue.claimWork('bench/count', { workerGroup: 'g', workerId: 'w', tasks: 1 });
  const c = claim.tasks[0];
  const asRun = queue.withCredentials(c.credentials);
  const cache = new Map();
  const target = { queue: asRun, taskId, runId: c.runId, name: 'public/logs/live.log', contentType: 'text/plain; charset=utf-8', expires: new Date(now + 3600_000) };
  log.length = 0;
  await uploadArtifact(target, 'one line of log\n', cache);
  if (i) show('createArtifact + PUT (first upload)');
  await uploadArtifact(target, 'one line of log\nand another\n', cache);
  if (i) show('PUT again (re-upload to the same putUrl)');
  await asRun.reportCompleted(taskId, c.runId);
  if (i) show('reportCompleted');
}
agent.destroy();
await q.stop();
