import { it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestQueue } from './harness/service.js';
it('metrics', async () => {
  const q = await startTestQueue();
  await q.queue().ping();
  const text = await (await fetch(q.rootUrl + '/metrics')).text();
  await q.stop();
  assert.match(text, /conveyor_http_request_duration_seconds_count\{endpoint="ping",status="200"\} 1/);
});
