// Submits examples/task.json (or the file given) to the local queue and prints its status and log.
//   ROOT_ACCESS_TOKEN=<token printed by npm start> node examples/submit-task.mjs [task.json]
import { readFileSync } from 'node:fs';
import taskcluster from 'taskcluster-client';

const rootUrl = process.env.ROOT_URL ?? 'http://localhost:8080';
const queue = new taskcluster.Queue({
  rootUrl,
  credentials: { clientId: process.env.ROOT_CLIENT_ID ?? 'root', accessToken: process.env.ROOT_ACCESS_TOKEN },
});
const definition = JSON.parse(readFileSync(process.argv[2] ?? new URL('./task.json', import.meta.url), 'utf8'));
const taskId = taskcluster.slugid();
await queue.createTask(taskId, {
  ...definition,
  created: taskcluster.fromNowJSON('0 seconds'),
  deadline: taskcluster.fromNowJSON('1 hour'),
});
console.log(`created task ${taskId} on ${definition.taskQueueId}`);
let status;
do {
  await new Promise((r) => setTimeout(r, 250));
  ({ status } = await queue.status(taskId));
} while (['unscheduled', 'pending', 'running'].includes(status.state));
console.log(`resolved: ${status.state}/${status.runs.at(-1).reasonResolved}`);
const log = await fetch(`${rootUrl}/api/queue/v1/task/${taskId}/artifacts/public/logs/live.log`);
if (log.ok) console.log(`--- public/logs/live.log ---\n${await log.text()}`);
